//! Which characters a stored text value may hold: the one policy the agent applies
//! before it sends a value and the reference directory applies before it stores one.
//! Names, titles, departments, sites, telephone numbers, anchors and agent ids are
//! single lines of visible text: an address book shows them, other systems copy them,
//! and the directory allocates addresses from the names. None of them has a use for a
//! control character, a line break or a character that shows nothing, while such
//! characters let two accounts look the same, reorder what a terminal shows (bidi
//! controls) or hide text.
//!
//! Refused, in every stored value:
//! - control characters (Unicode Cc: C0 including tab and newline, DEL, C1);
//! - line and paragraph separators (Zl, Zp);
//! - format characters (Cf: zero-width space, bidi embeddings and isolates, the BOM,
//!   soft hyphen, …), except the zero-width joiner and non-joiner where the scripts
//!   that need them put them: between two letters (or combining marks) of a non-Latin
//!   script (Persian "علی‌زاده", Devanagari "क्‍ष");
//! - the other default-ignorable code points (UTS #39 identifier type
//!   `Default_Ignorable`: the Hangul fillers, the combining grapheme joiner, the Khmer
//!   inherent vowels, the Mongolian free variation selectors, unassigned ignorables),
//!   except a variation selector right after a letter of a non-Latin script (the
//!   ideographic variant of a kanji in a name: "葛\u{E0100}西");
//! - the Braille pattern blank, a symbol that shows nothing.
//!
//! A character's script is its Unicode Script_Extensions (`unicode-script`), so a
//! combining mark shared by Arabic and Syriac counts as non-Latin and one shared by
//! every script (an acute accent) does not. Whitespace that is not a control or a
//! separator (the space, no-break space, em space) is kept: whoever stores a value
//! decides how to collapse it.
//!
//! Pure: no I/O.

use unicode_general_category::{GeneralCategory, get_general_category};
use unicode_script::{Script, UnicodeScript};
use unicode_security::GeneralSecurityProfile;
use unicode_security::general_security_profile::IdentifierType;

/// Why `c` may not be stored, or `None` when it may. `prev` and `next` are its
/// neighbours in the value (`None` at either end).
pub fn refused_char(prev: Option<char>, c: char, next: Option<char>) -> Option<&'static str> {
    if c.is_ascii() {
        return c.is_ascii_control().then_some("a control character");
    }
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
        return if prev.is_some_and(|p| p.is_alphabetic() && non_latin(p)) {
            None
        } else {
            Some("a variation selector that modifies no letter of its script")
        };
    }
    let ignorable = c.identifier_type() == Some(IdentifierType::Default_Ignorable);
    (ignorable || c == '\u{2800}').then_some("a character that shows nothing")
}

/// The first character of `s` that may not be stored: its index (0-based, in
/// characters), the character and why ([`refused_char`]).
pub fn first_refused(s: &str) -> Option<(usize, char, &'static str)> {
    if s.is_ascii() {
        return s
            .bytes()
            .position(|b| b.is_ascii_control())
            .map(|i| (i, char::from(s.as_bytes()[i]), "a control character"));
    }
    let mut prev = None;
    let mut chars = s.chars().peekable();
    let mut i = 0;
    while let Some(c) = chars.next() {
        if let Some(why) = refused_char(prev, c, chars.peek().copied()) {
            return Some((i, c, why));
        }
        prev = Some(c);
        i += 1;
    }
    None
}

/// The standard variation selectors (VS1–VS16, VS17–VS256). The Mongolian free
/// variation selectors are not among them: they are refused as default-ignorable.
fn is_variation_selector(c: char) -> bool {
    matches!(c, '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}')
}

/// Does `c` belong to some script, and not to Latin? Common and Inherited characters
/// (digits, punctuation, the combining diacritics) belong to every script, Latin
/// included.
fn non_latin(c: char) -> bool {
    let scripts = c.script_extension();
    !scripts.is_empty() && !scripts.contains_script(Script::Latin)
}

fn non_latin_letter_or_mark(c: char) -> bool {
    let mark = matches!(
        get_general_category(c),
        GeneralCategory::NonspacingMark
            | GeneralCategory::SpacingMark
            | GeneralCategory::EnclosingMark
    );
    (c.is_alphabetic() || mark) && non_latin(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value either side has a case for: `None` when it may be stored, else the
    /// index (0-based, in characters) and code point of the first refused character.
    #[test]
    fn refused_characters_by_value() {
        let cases: &[(&str, Option<(usize, u32)>)] = &[
            // Visible text in any script.
            ("Siân", None),
            ("O'Brien-Ngũgĩ", None),
            ("Zoë D’Arcy", None),
            ("Mary Ann", None),
            ("Ann\u{A0}Lee", None),
            ("Ann\u{2003}", None),
            ("Жанна", None),
            ("李小龙", None),
            ("Νίκος", None),
            ("محمد", None),
            ("Olumide Adébáyọ̀", None),
            ("+44 113 496 0101", None),
            ("Ward 7 (Night)", None),
            ("", None),
            // Persian: a zero-width non-joiner between two Arabic-script letters.
            ("علی\u{200C}زاده", None),
            // ... and after a vowel mark Arabic shares with Syriac.
            ("عَ\u{200C}ز", None),
            // Devanagari: virama, then a zero-width joiner, then a letter.
            ("क्\u{200D}ष", None),
            ("क्\u{200C}ष", None),
            // An ideographic variation selector after a kanji.
            ("葛\u{E0100}西", None),
            ("辻\u{FE00}", None),
            // Controls, line breaks and separators.
            ("Ann\tLee", Some((3, 0x09))),
            ("Ann\nLee", Some((3, 0x0A))),
            ("Ann\r", Some((3, 0x0D))),
            ("\u{0}Ann", Some((0, 0x00))),
            ("a\u{7}b", Some((1, 0x07))),
            ("Ann\u{7F}", Some((3, 0x7F))),
            ("Ann\u{85}", Some((3, 0x85))),
            ("Ann\u{9B}", Some((3, 0x9B))),
            ("Siân\u{1B}[31m", Some((4, 0x1B))),
            ("Ann\u{2028}Lee", Some((3, 0x2028))),
            ("Ann\u{2029}", Some((3, 0x2029))),
            // Format characters.
            ("Jo\u{200B}hn", Some((2, 0x200B))),
            ("Ja\u{200B}ne", Some((2, 0x200B))),
            ("Jo\u{200C}hn", Some((2, 0x200C))),
            ("Jo\u{200D}hn", Some((2, 0x200D))),
            ("Evans\u{200D}", Some((5, 0x200D))),
            ("\u{200C}علی", Some((0, 0x200C))),
            ("علی\u{200C}", Some((3, 0x200C))),
            ("علی\u{200C}John", Some((3, 0x200C))),
            ("Jó\u{200C}hn", Some((2, 0x200C))),
            ("علی\u{200B}زاده", Some((3, 0x200B))),
            ("Ann\u{202E}eeL", Some((3, 0x202E))),
            ("\u{202E}snavE naiS", Some((0, 0x202E))),
            ("Ann\u{2066}", Some((3, 0x2066))),
            ("\u{FEFF}Ann", Some((0, 0xFEFF))),
            ("An\u{AD}n", Some((2, 0xAD))),
            ("\u{2060}", Some((0, 0x2060))),
            ("Al\u{061C}ex", Some((2, 0x061C))),
            ("Al\u{180E}ex", Some((2, 0x180E))),
            ("Ann\u{E0041}", Some((3, 0xE0041))),
            // Letters and marks that show nothing.
            ("\u{3164}", Some((0, 0x3164))),
            ("Kim\u{115F}", Some((3, 0x115F))),
            ("\u{115F}\u{1160}", Some((0, 0x115F))),
            ("Ann\u{FFA0}", Some((3, 0xFFA0))),
            ("\u{2800}", Some((0, 0x2800))),
            ("A\u{034F}nn", Some((1, 0x034F))),
            ("ក\u{17B4}", Some((1, 0x17B4))),
            ("ᠮ\u{180B}", Some((1, 0x180B))),
            // Variation selectors with no non-Latin letter before them.
            ("Ann\u{FE0F}", Some((3, 0xFE0F))),
            ("\u{FE0F}", Some((0, 0xFE0F))),
            ("7\u{FE0F}", Some((1, 0xFE0F))),
            ("Ann\u{E0100}", Some((3, 0xE0100))),
        ];
        for &(value, want) in cases {
            let got = first_refused(value).map(|(i, c, _)| (i, u32::from(c)));
            assert_eq!(got, want, "{value:?}");
        }
    }

    #[test]
    fn the_reason_says_what_kind_of_character() {
        let why = |s: &str| first_refused(s).map(|(_, _, w)| w);
        assert_eq!(why("a\tb"), Some("a control character"));
        assert_eq!(why("é\u{85}"), Some("a control character"));
        assert_eq!(why("a\u{2028}"), Some("a line or paragraph separator"));
        assert_eq!(
            why("Jo\u{200C}hn"),
            Some("an invisible format character (Unicode Cf)")
        );
        assert_eq!(why("\u{3164}"), Some("a character that shows nothing"));
        assert_eq!(
            why("Ann\u{FE0F}"),
            Some("a variation selector that modifies no letter of its script")
        );
    }
}
