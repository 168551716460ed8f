//! Which characters a value the directory stores may hold: names, titles, departments,
//! sites, telephone numbers, anchors and agent ids are single lines of visible text.
//! The policy (controls, line breaks, format and other invisible characters refused; the
//! zero-width (non-)joiner kept between two letters of a non-Latin script, a variation
//! selector after one) is [`nhs_model::text`], the one the agent applies before it
//! sends a value; this module turns a refusal into the SCIM error.
//!
//! Pure: no I/O.

use super::error::ApiError;
use nhs_model::text::first_refused;

/// Refuse a value for `attr` (its SCIM path, for the error) holding a refused character,
/// naming the attribute and the code point (its position counted from 1, in characters).
pub fn check(attr: &str, value: &str) -> Result<(), ApiError> {
    match first_refused(value) {
        None => Ok(()),
        Some((i, c, why)) => Err(ApiError::invalid_value(format!(
            "invalid_value: {attr} holds U+{:04X} at character {}, {why}; stored values \
             may not hold control or invisible characters",
            u32::from(c),
            i + 1
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_names_the_attribute_and_the_code_point() {
        let e = check("name.givenName", "Jo\u{200B}hn").unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.scim_type, Some("invalidValue"));
        assert!(
            e.detail
                .starts_with("invalid_value: name.givenName holds U+200B at character 3"),
            "{e}"
        );
        assert!(check("title", "Staff Nurse").is_ok());
        // The shared policy's exceptions hold here too: a Persian name with its ZWNJ.
        assert!(check("name.familyName", "علی\u{200C}زاده").is_ok());
        assert!(check("name.familyName", "Jo\u{200C}hn").is_err());
    }
}
