//! Which characters a value the directory stores may hold. Names, titles, departments,
//! sites, telephone numbers, anchors and agent ids are single lines of visible text: an
//! address book shows them, other systems copy them, and the directory allocates
//! addresses from the names. None of them has a use for a control character, a line
//! break or a character that shows nothing, while such characters let two accounts
//! look the same, reorder what a terminal shows (bidi controls) or hide text.
//!
//! Refused, in every stored value:
//! - control characters (Unicode Cc: C0 including tab and newline, DEL, C1);
//! - line and paragraph separators (Zl, Zp);
//! - format characters (Cf: zero-width space, bidi embeddings and isolates, the BOM,
//!   soft hyphen, …), except the zero-width joiner and non-joiner where the scripts
//!   that need them put them: between two letters (or combining marks) of a non-Latin
//!   script (Persian, Arabic, Indic names);
//! - characters that are letters or marks but show nothing: the Hangul fillers, the
//!   Braille blank, the combining grapheme joiner, the Khmer inherent vowels, Mongolian
//!   free variation selectors, and variation selectors except right after a non-Latin
//!   letter (ideographic variants of a name).
//!
//! Pure: no I/O.

use super::error::ApiError;
use unicode_general_category::{GeneralCategory, get_general_category};

/// Why a character is refused, or `None` when it may be stored. `prev` and `next` are
/// its neighbours in the value.
fn refusal(prev: Option<char>, c: char, next: Option<char>) -> Option<&'static str> {
    match get_general_category(c) {
        GeneralCategory::Control => return Some("a control character"),
        GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => {
            return Some("a line or paragraph separator");
        }
        GeneralCategory::Format => {
            let joiner = matches!(c, '\u{200C}' | '\u{200D}');
            let joins = |n: Option<char>| n.is_some_and(non_latin_letter_or_mark);
            return if joiner && joins(prev) && joins(next) {
                None
            } else {
                Some("an invisible format character (Unicode Cf)")
            };
        }
        _ => {}
    }
    if is_variation_selector(c) {
        return if prev.is_some_and(|p| p.is_alphabetic() && !is_latin(p)) {
            None
        } else {
            Some("a variation selector that modifies no letter of its script")
        };
    }
    let invisible = matches!(
        c,
        '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' // Hangul fillers
            | '\u{2800}' // Braille pattern blank
            | '\u{034F}' // combining grapheme joiner
            | '\u{17B4}' | '\u{17B5}' // Khmer inherent vowels
            | '\u{180B}'..='\u{180D}' | '\u{180F}' // Mongolian free variation selectors
    );
    invisible.then_some("a character that shows nothing")
}

fn is_variation_selector(c: char) -> bool {
    matches!(c, '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}')
}

/// Letters of the Latin script (and the combining diacritics written with them).
fn is_latin(c: char) -> bool {
    matches!(c,
        'A'..='Z' | 'a'..='z'
        | '\u{00C0}'..='\u{024F}' // Latin-1 Supplement letters, Latin Extended-A and -B
        | '\u{0250}'..='\u{02AF}' // IPA
        | '\u{0300}'..='\u{036F}' // combining diacritical marks
        | '\u{1D00}'..='\u{1DBF}' // phonetic extensions
        | '\u{1E00}'..='\u{1EFF}' // Latin Extended Additional (Welsh, Vietnamese)
        | '\u{2C60}'..='\u{2C7F}' // Latin Extended-C
        | '\u{A720}'..='\u{A7FF}' // Latin Extended-D
        | '\u{AB30}'..='\u{AB6F}' // Latin Extended-E
        | '\u{FF21}'..='\u{FF3A}' | '\u{FF41}'..='\u{FF5A}' // fullwidth Latin
    )
}

fn non_latin_letter_or_mark(c: char) -> bool {
    let mark = matches!(
        get_general_category(c),
        GeneralCategory::NonspacingMark
            | GeneralCategory::SpacingMark
            | GeneralCategory::EnclosingMark
    );
    (c.is_alphabetic() || mark) && !is_latin(c)
}

/// The first refused character of `value`: its position (1-based, in characters), the
/// character and why.
pub fn first_refused(value: &str) -> Option<(usize, char, &'static str)> {
    let chars: Vec<char> = value.chars().collect();
    chars.iter().enumerate().find_map(|(i, &c)| {
        let prev = i.checked_sub(1).map(|p| chars[p]);
        let next = chars.get(i + 1).copied();
        refusal(prev, c, next).map(|why| (i + 1, c, why))
    })
}

/// Refuse a value for `attr` (its SCIM path, for the error) holding a refused character,
/// naming the attribute and the code point.
pub fn check(attr: &str, value: &str) -> Result<(), ApiError> {
    match first_refused(value) {
        None => Ok(()),
        Some((at, c, why)) => Err(ApiError::invalid_value(format!(
            "invalid_value: {attr} holds U+{:04X} at character {at}, {why}; stored values \
             may not hold control or invisible characters",
            u32::from(c)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visible_text_in_any_script_is_kept() {
        for ok in [
            "Siân",
            "O'Brien-Ngũgĩ",
            "Zoë D’Arcy",
            "Mary Ann",
            "Жанна",
            "李小龙",
            "Νίκος",
            "محمد",
            // Persian: a zero-width non-joiner between two Arabic-script letters.
            "علی\u{200C}زاده",
            // Devanagari: virama, then a zero-width joiner, then a letter.
            "क्\u{200D}ष",
            // An ideographic variation selector after a kanji.
            "葛\u{E0100}西",
            "+44 113 496 0101",
            "Ward 7 (Night)",
        ] {
            assert_eq!(first_refused(ok), None, "{ok:?}");
        }
    }

    #[test]
    fn control_and_invisible_characters_are_refused_by_code_point() {
        for (value, at, cp) in [
            ("Ann\tLee", 4, 0x09),
            ("Ann\nLee", 4, 0x0A),
            ("Ann\r", 4, 0x0D),
            ("\u{0}Ann", 1, 0x00),
            ("Ann\u{7F}", 4, 0x7F),
            ("Ann\u{85}", 4, 0x85),
            ("Ann\u{9B}", 4, 0x9B),
            ("Jo\u{200B}hn", 3, 0x200B),
            ("Jo\u{200C}hn", 3, 0x200C),
            ("Jo\u{200D}hn", 3, 0x200D),
            ("\u{200C}علی", 1, 0x200C),
            ("Ann\u{202E}eeL", 4, 0x202E),
            ("Ann\u{2066}", 4, 0x2066),
            ("\u{FEFF}Ann", 1, 0xFEFF),
            ("An\u{AD}n", 3, 0xAD),
            ("Ann\u{2028}Lee", 4, 0x2028),
            ("Ann\u{2029}", 4, 0x2029),
            ("\u{3164}", 1, 0x3164),
            ("\u{115F}\u{1160}", 1, 0x115F),
            ("Ann\u{FFA0}", 4, 0xFFA0),
            ("\u{2800}", 1, 0x2800),
            ("Ann\u{FE0F}", 4, 0xFE0F),
            ("A\u{034F}nn", 2, 0x034F),
            ("Ann\u{E0041}", 4, 0xE0041),
        ] {
            let got = first_refused(value).map(|(i, c, _)| (i, u32::from(c)));
            assert_eq!(got, Some((at, cp)), "{value:?}");
        }
    }

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
    }
}
