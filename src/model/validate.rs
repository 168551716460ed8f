//! NHS Directory value rules: what a value must look like before it is sent.
//! Mandatory fields are from DESIGN.md ("Mandatory to provision"); the mobile rule (UK
//! only, E.164) from the same section, the UK mobile ranges from Ofcom's National
//! Telephone Numbering Plan (see [`super::gbphone::is_uk_mobile`]).
//!
//! Text is checked for what a reader cannot see: control, format and other invisible
//! characters, by the policy the directory stores by ([`nhs_model::text`]: a zero-width
//! (non-)joiner between two letters of a non-Latin script, as in the Persian "علی‌زاده",
//! and a variation selector after such a letter are kept), and a combining mark with
//! nothing to combine with. Names are also checked
//! for Latin, Greek and Cyrillic letters mixed in one name ("Jаne" with a Cyrillic а),
//! which look alike but are not the same name: the directory is how people find the
//! right recipient among namesakes (AUP §3.2.5, seed 002_523999ec1e783f26.txt). The
//! Unicode data comes from maintained crates (`unicode-general-category`,
//! `unicode-security` for UTS #39 script sets and look-alikes, `unicode-script`,
//! `unicode_names2` to name a character), not from tables of our own.

use super::{Field, RejectReason};
use nhs_model::text::first_refused;
use phonenumber::country::Id as Country;
use unicode_general_category::{GeneralCategory, get_general_category};
use unicode_script::{Script, UnicodeScript};
use unicode_security::{MixedScript, is_potential_mixed_script_confusable_char as is_lookalike};

/// A value that failed a rule: the reason code and a human detail.
pub type Invalid = (RejectReason, String);

/// A character as the Unicode standard names it: `U+200B ZERO WIDTH SPACE`.
pub fn describe(c: char) -> String {
    match unicode_names2::name(c) {
        Some(n) => format!("U+{:04X} {n}", c as u32),
        None => format!("U+{:04X}", c as u32),
    }
}

fn is_combining_mark(c: char) -> bool {
    matches!(
        get_general_category(c),
        GeneralCategory::NonspacingMark
            | GeneralCategory::SpacingMark
            | GeneralCategory::EnclosingMark
    )
}

/// Collapse runs of whitespace (incl. tab, newline, CR, NEL and the line separators) to
/// one space and trim; then refuse what the directory would refuse to store
/// ([`nhs_model::text::first_refused`]: other control characters, invisible and format
/// characters outside the places a script needs them) and a combining mark that starts
/// the value or a word (it has no letter to sit on); enforce the field's length limit.
/// Unicode is otherwise kept as written.
pub fn clean_text(field: Field, raw: &str) -> Result<String, Invalid> {
    // Most values are already clean (single spaces, no edges): copy those as they are.
    let collapsed = raw.starts_with(char::is_whitespace)
        || raw.ends_with(char::is_whitespace)
        || raw
            .chars()
            .zip(raw.chars().skip(1))
            .any(|(a, b)| a.is_whitespace() && (a != ' ' || b.is_whitespace()));
    let v = if collapsed {
        raw.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        raw.to_string()
    };
    // Checked after collapsing, so the policy sees what would be stored (a joiner's
    // neighbours included).
    if let Some((_, c, _)) = first_refused(&v) {
        let detail = if c.is_control() {
            format!("{field} contains a control character (U+{:04X})", c as u32)
        } else {
            format!(
                "{field} contains {}, an invisible or formatting character",
                describe(c)
            )
        };
        return Err((RejectReason::InvalidValue, detail));
    }
    if !v.is_ascii()
        && let Some(c) = v
            .split(' ')
            .filter_map(|w| w.chars().next())
            .find(|&c| is_combining_mark(c))
    {
        return Err((
            RejectReason::InvalidValue,
            format!("{field} has {} with no letter before it", describe(c)),
        ));
    }
    let n = if v.is_ascii() {
        v.len()
    } else {
        v.chars().count()
    };
    if n > field.max_len() {
        return Err((
            RejectReason::InvalidValue,
            format!(
                "{field} is {n} characters; the limit is {}",
                field.max_len()
            ),
        ));
    }
    Ok(v)
}

/// The scripts whose letters imitate each other (UTS #39 "moderately restrictive" allows
/// Latin with any one other script except these two).
const LOOKALIKE_SCRIPTS: [Script; 3] = [Script::Latin, Script::Greek, Script::Cyrillic];

/// A name must not mix Latin, Greek and Cyrillic letters: "Jаne" with a Cyrillic а looks
/// like Jane and is not. A name wholly in one script (Дмитрий, Ελένη, 王, محمد), or in
/// Latin with any other script but those two, is fine; so are digits, spaces,
/// apostrophes and hyphens, which belong to every script.
pub fn name(field: Field, v: &str) -> Result<(), Invalid> {
    if v.is_ascii() || v.is_single_script() {
        return Ok(());
    }
    let mut count = [0usize; 3];
    let mut shown: [Option<char>; 3] = [None; 3];
    for c in v.chars() {
        let Some(i) = LOOKALIKE_SCRIPTS.iter().position(|s| *s == c.script()) else {
            continue;
        };
        count[i] += 1;
        // Name the script's first look-alike letter here, else its first letter.
        match shown[i] {
            Some(s) if is_lookalike(s) || !is_lookalike(c) => {}
            _ => shown[i] = Some(c),
        }
    }
    let used: Vec<usize> = (0..3).filter(|&i| count[i] > 0).collect();
    if used.len() < 2 {
        return Ok(());
    }
    // The script with fewest letters is the odd one out (Latin last on a tie).
    let (Some(&odd), Some(&main)) = (
        used.iter().min_by_key(|&&i| (count[i], i == 0)),
        used.iter().max_by_key(|&&i| (count[i], i == 0)),
    ) else {
        return Ok(());
    };
    let c = shown[odd].map(describe).unwrap_or_default();
    Err((
        RejectReason::InvalidValue,
        format!(
            "{field} mixes {} and {} letters, which look alike: {c}",
            LOOKALIKE_SCRIPTS[main].full_name(),
            LOOKALIKE_SCRIPTS[odd].full_name()
        ),
    ))
}

/// Parse a phone number as a UK number (national or international form).
fn parse_phone(v: &str) -> Option<phonenumber::PhoneNumber> {
    if !written_as_a_number(v) {
        return None;
    }
    phonenumber::parse(Some(Country::GB), v).ok()
}

/// Is `v` written the way people write a number: digits with spaces, hyphens, dots,
/// slashes or parentheses between them, one `+` at the very start, and at most an
/// extension at the end (`ext 1234`, `x1234`, `#1234`)? The phonenumber crate is more
/// forgiving: it reads letters as a keypad does (`07700 9OO123` becomes +447700966123,
/// someone else's number) and skips a doubled `+`; a value that needs such guessing is
/// not taken as a number.
fn written_as_a_number(v: &str) -> bool {
    let t = v.trim();
    let lower = t.to_ascii_lowercase();
    // Split off an extension: a marker, then digits to the end.
    let body = ["extension", "extn", "ext.", "ext", "x", "#"]
        .iter()
        .find_map(|m| {
            let i = lower.rfind(m)?;
            let digits = lower[i + m.len()..].trim_start_matches([' ', '.', ':']);
            (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| t[..i].trim_end())
        })
        .unwrap_or(t);
    let number = body.strip_prefix('+').unwrap_or(body);
    number.bytes().any(|b| b.is_ascii_digit())
        && number
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b' ' | b'-' | b'.' | b'(' | b')' | b'/'))
}

/// The number's type; `Unknown` means not a valid number. (Computed once: validity
/// checks in the phonenumber crate compute it again, and it is the costly part.)
fn number_type(n: &phonenumber::PhoneNumber) -> phonenumber::Type {
    n.number_type(&phonenumber::metadata::DATABASE)
}

fn e164(n: &phonenumber::PhoneNumber) -> String {
    n.format().mode(phonenumber::Mode::E164).to_string()
}

/// Build the phone-number metadata now (it is otherwise built on first use).
pub fn load_phone_metadata() {
    super::gbphone::load();
}

/// The national significant number of a +44 number, if it has no leading zero.
fn uk_nsn(n: &phonenumber::PhoneNumber) -> Option<String> {
    (n.code().value() == 44 && n.national().zeros() == 0).then(|| n.national().value().to_string())
}

/// Mobile: must be a UK mobile number; stored as E.164.
///
/// A UK mobile is recognised by its structure (+44 7, ten digits, in a mobile range:
/// [`super::gbphone::is_uk_mobile`]), not by whether the phonenumber crate's metadata
/// lists its block as allocated today: ranges are allocated faster than the metadata
/// follows, and a correctly formed mobile must not be refused for that. The crate only
/// parses other ways of writing a number and tells "another kind of number" from "not
/// a number" in the error.
pub fn mobile(v: &str) -> Result<String, Invalid> {
    use super::gbphone;
    use phonenumber::Type;
    let bad = |why: &str| (RejectReason::InvalidMobile, format!("mobile {v:?} {why}"));
    if let Some(nsn) = gbphone::plain_nsn(v) {
        if gbphone::is_uk_mobile(&nsn) {
            return Ok(format!("+44{nsn}"));
        }
        if gbphone::classify(v).is_some() {
            return Err(bad("is not a UK mobile number"));
        }
    }
    let n = parse_phone(v).ok_or_else(|| bad("is not a valid phone number"))?;
    if n.code().value() != 44 {
        return Err(bad("is not a UK number"));
    }
    if let Some(nsn) = uk_nsn(&n).filter(|nsn| gbphone::is_uk_mobile(nsn)) {
        return Ok(format!("+44{nsn}"));
    }
    match number_type(&n) {
        Type::Unknown => Err(bad("is not a valid phone number")),
        _ => Err(bad("is not a UK mobile number")),
    }
}

/// Telephone: any valid number (UK assumed when no country code), or a UK mobile by its
/// structure (see [`mobile`]); stored as E.164.
pub fn telephone(v: &str) -> Result<String, Invalid> {
    use super::gbphone;
    // Only valid numbers come back from the fast path.
    if let Some((_, e164)) = gbphone::classify(v) {
        return Ok(e164);
    }
    if let Some(nsn) = gbphone::plain_nsn(v).filter(|nsn| gbphone::is_uk_mobile(nsn)) {
        return Ok(format!("+44{nsn}"));
    }
    parse_phone(v)
        .and_then(|n| {
            if number_type(&n) != phonenumber::Type::Unknown {
                Some(e164(&n))
            } else {
                uk_nsn(&n)
                    .filter(|nsn| gbphone::is_uk_mobile(nsn))
                    .map(|nsn| format!("+44{nsn}"))
            }
        })
        .ok_or_else(|| {
            (
                RejectReason::InvalidValue,
                format!("telephone {v:?} is not a valid phone number"),
            )
        })
}

/// A phone number as the directory compares it: E.164 when it is a number (however the
/// directory or AD wrote it, `07700 900123` or `+447700900123`), `None` when it is not.
pub fn phone_comparable(v: &str) -> Option<String> {
    telephone(v).ok()
}

/// Email: one `@`, a dotted domain, no spaces; lowercased (addresses compare so).
pub fn email(v: &str) -> Result<String, Invalid> {
    let bad = || {
        (
            RejectReason::InvalidValue,
            format!("email {v:?} is not an address"),
        )
    };
    let v = v.trim().to_lowercase();
    let (local, domain) = v.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || domain.is_empty()
        || !domain.contains('.')
        || domain.contains('@')
        || v.contains(char::is_whitespace)
    {
        return Err(bad());
    }
    Ok(v)
}

/// The domain of an address (after `@`), lowercased.
pub fn email_domain(addr: &str) -> Option<&str> {
    addr.rsplit_once('@').map(|(_, d)| d)
}

/// Does `domain` equal `suffix` or lie under it (`a.nhs.uk` under `nhs.uk`)?
pub fn domain_within(domain: &str, suffix: &str) -> bool {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    let s = suffix
        .trim_start_matches("*.")
        .trim_matches('.')
        .to_ascii_lowercase();
    d == s || d.ends_with(&format!(".{s}"))
}

/// Apply the field's rule to an already text-cleaned value.
pub fn value(field: Field, v: &str) -> Result<String, Invalid> {
    value_memo(field, v, &mut PhoneMemo::default())
}

/// [`value`], remembering phone-number results in `memo`.
pub fn value_memo(field: Field, v: &str, memo: &mut PhoneMemo) -> Result<String, Invalid> {
    let v = clean_text(field, v)?;
    match field {
        Field::Mobile | Field::Telephone => memo.get(field, v),
        Field::Email => email(&v),
        Field::GivenName | Field::FamilyName | Field::DisplayName => name(field, &v).map(|()| v),
        _ => Ok(v),
    }
}

/// Results of phone-number validation by (field, cleaned value), for one read.
///
/// Parsing and typing a number with the phonenumber crate costs about 100,000
/// instructions (its regex cache hashes each long pattern on every match), and a source
/// repeats numbers a lot: a switchboard or ward telephone is shared by many people. The
/// rules are pure, so a remembered result is the result. Bounded: it starts again when
/// full, so a daemon's memory does not grow with every number it has ever seen.
#[derive(Debug, Default)]
pub struct PhoneMemo {
    seen: std::collections::HashMap<
        (Field, String),
        Result<String, Invalid>,
        foldhash::fast::RandomState,
    >,
}

impl PhoneMemo {
    const CAPACITY: usize = 65_536;

    fn get(&mut self, field: Field, v: String) -> Result<String, Invalid> {
        let key = (field, v);
        if let Some(r) = self.seen.get(&key) {
            return r.clone();
        }
        let r = match field {
            Field::Mobile => mobile(&key.1),
            _ => telephone(&key.1),
        };
        if self.seen.len() >= Self::CAPACITY {
            self.seen.clear();
        }
        self.seen.insert(key, r.clone());
        r
    }
}

/// The form in which the directory compares a value: whitespace-collapsed and
/// case-folded (the NHS Directory, like AD, compares strings case-insensitively), so a
/// case-only or spacing-only difference is not a change.
pub fn comparable(v: &str) -> String {
    v.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// `comparable(a) == comparable(b)`, without building either form in the common cases:
/// identical values (most of a diff), and ASCII values, where lowercasing is per byte.
/// Other Unicode takes the allocating path, because `to_lowercase` is contextual there
/// (a final sigma) and a per-character fold would disagree with it.
pub fn same_comparable(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    if a.is_ascii() && b.is_ascii() {
        // Whitespace-collapsing then joining with one space is injective over the word
        // sequence, so comparing words pairwise is the same test.
        let mut x = a.split_whitespace();
        let mut y = b.split_whitespace();
        loop {
            match (x.next(), y.next()) {
                (None, None) => return true,
                (Some(u), Some(v)) if u.eq_ignore_ascii_case(v) => {}
                _ => return false,
            }
        }
    }
    comparable(a) == comparable(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phone_that_needs_guessing_is_not_a_number() {
        for bad in [
            "07700 9OO123",
            "++447700900123",
            "+44 +7700 900123",
            "07700 900123 call after 5",
            "tel: 07700 900123",
            "07700 900123 ext",
        ] {
            assert!(mobile(bad).is_err(), "{bad}");
            assert!(telephone(bad).is_err(), "{bad}");
        }
        for good in [
            "(07700) 900123",
            "07700.900.123",
            "+44 (0) 7700 900123",
            "0113 496 0101 ext 1234",
            "0113 496 0101 x1234",
            "0113 496 0101 #12",
        ] {
            assert!(telephone(good).is_ok(), "{good}");
        }
        assert_eq!(mobile("(07700) 900123").as_deref(), Ok("+447700900123"));
    }

    #[test]
    fn text_rules() {
        assert_eq!(
            clean_text(Field::GivenName, "  Siân \t Mair ").unwrap(),
            "Siân Mair"
        );
        assert_eq!(
            clean_text(Field::FamilyName, "O'Brien-Ngũgĩ").unwrap(),
            "O'Brien-Ngũgĩ"
        );
        assert!(clean_text(Field::GivenName, "a\u{0007}b").is_err());
        assert!(clean_text(Field::GivenName, &"x".repeat(65)).is_err());
        assert!(clean_text(Field::GivenName, &"é".repeat(64)).is_ok());
        // The copy-as-is path gives what collapsing gives.
        for raw in [
            "Ann Lee",
            "Ann  Lee",
            " Ann",
            "Ann ",
            "Ann\tLee",
            "Ann\u{a0}Lee",
            "Ann \nLee",
            "a b c",
            "x",
            "",
            " ",
            "Siân Évans",
            "Ann\u{2003}",
            "a  ",
        ] {
            let want = raw.split_whitespace().collect::<Vec<_>>().join(" ");
            assert_eq!(clean_text(Field::Department, raw).unwrap(), want, "{raw:?}");
        }
    }

    #[test]
    fn phones() {
        assert_eq!(mobile("07123 456789").unwrap(), "+447123456789");
        assert_eq!(mobile("+44 (0)7123 456789").unwrap(), "+447123456789");
        assert_eq!(
            mobile("+1 415 555 0100").unwrap_err().0,
            RejectReason::InvalidMobile
        );
        assert_eq!(mobile("12345").unwrap_err().0, RejectReason::InvalidMobile);
        assert!(
            mobile("0113 496 0000")
                .unwrap_err()
                .1
                .contains("mobile number")
        );
        assert_eq!(telephone("0113 496 0000").unwrap(), "+441134960000");
        assert!(telephone("ext 1234").is_err());
    }

    #[test]
    fn emails_and_domains() {
        assert_eq!(email(" Jane.Doe@NHS.net ").unwrap(), "jane.doe@nhs.net");
        assert!(email("jane").is_err());
        assert!(domain_within("trust.nhs.uk", "nhs.uk"));
        assert!(domain_within("nhs.uk", "*.nhs.uk"));
        assert!(!domain_within("notnhs.uk", "nhs.uk"));
        assert_eq!(
            comparable(" Emergency   department"),
            "emergency department"
        );
        for (a, b) in [
            (" Emergency   department", "emergency department"),
            ("Ward\u{0B}1", "ward 1"),
            ("Ward 1", "Ward 12"),
            ("Ward 1", "Ward1"),
            ("", "  "),
            ("Siân", "SIÂN"),
            ("ΟΔΟΣ", "οδος"),
            ("ΟΔΟΣ", "οδοσ"),
        ] {
            assert_eq!(
                same_comparable(a, b),
                comparable(a) == comparable(b),
                "{a:?} vs {b:?}"
            );
        }
    }
}
