//! The one terminal escaping helper: every value that came from AD or the directory is
//! shown through [`Escaped`] (or [`Quoted`]) wherever a person reads it, so no control,
//! escape sequence or bidi override reaches a terminal raw.
//!
//! Escaped: every control character (C0, DEL, C1: general category `Cc`, so `ESC`, `BEL`,
//! `\r`, `\n`, U+0085 …), every format character (`Cf`: the bidi embeddings, overrides
//! and isolates U+202A–U+202E and U+2066–U+2069, the marks U+200E/U+200F and U+061C,
//! zero-width characters, U+FEFF …), the line and paragraph separators (`Zl`, `Zp`) and
//! unassigned code points (`Cn`: nobody knows what a terminal makes of them). Everything
//! printable stays as it is, non-ASCII included (Siân, Zoë, Кирилл, 李).
//!
//! The form is Rust's: `\t`, `\n`, `\r`, `\0`, otherwise `\u{202e}`. Backslashes are not
//! doubled, so text that is already escaped (a `{:?}` inside an error message) reads the
//! same after a second pass; [`Quoted`] also escapes `"` and `\`, for values shown
//! between quotes where the quotes must stay unambiguous.
//!
//! JSON output does not go through this: serde's JSON is the contract, byte for byte.

use std::fmt::{self, Write};
use unicode_general_category::{GeneralCategory as Gc, get_general_category};

/// Would this character be escaped?
pub fn is_unsafe(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_control();
    }
    matches!(
        get_general_category(c),
        Gc::Control
            | Gc::Format
            | Gc::LineSeparator
            | Gc::ParagraphSeparator
            | Gc::Surrogate
            | Gc::Unassigned
    )
}

fn write_escaped(f: &mut impl Write, s: &str, quote: bool) -> fmt::Result {
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let special = quote && matches!(c, '"' | '\\');
        if !special && !is_unsafe(c) {
            continue;
        }
        f.write_str(&s[start..i])?;
        start = i + c.len_utf8();
        match c {
            '\t' => f.write_str("\\t")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\0' => f.write_str("\\0")?,
            '"' | '\\' => {
                f.write_char('\\')?;
                f.write_char(c)?;
            }
            c => write!(f, "\\u{{{:x}}}", c as u32)?,
        }
    }
    f.write_str(&s[start..])
}

/// Shows a value with every unsafe character escaped (see the module doc). Honours
/// width and alignment (`{:<20}`), counted on the escaped text.
#[derive(Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

/// Like [`Escaped`], between double quotes, with `"` and `\` escaped too.
#[derive(Clone, Copy)]
pub struct Quoted<'a>(pub &'a str);

fn show(f: &mut fmt::Formatter<'_>, s: &str, quote: bool) -> fmt::Result {
    if f.width().is_none() && f.precision().is_none() {
        if quote {
            f.write_char('"')?;
        }
        write_escaped(f, s, quote)?;
        if quote {
            f.write_char('"')?;
        }
        return Ok(());
    }
    let mut buf = String::with_capacity(s.len() + 2);
    if quote {
        buf.push('"');
    }
    write_escaped(&mut buf, s, quote)?;
    if quote {
        buf.push('"');
    }
    f.pad(&buf)
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show(f, self.0, false)
    }
}

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show(f, self.0, true)
    }
}

/// The escaped text as a string (borrowed when nothing needed escaping).
pub fn escaped(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().any(is_unsafe) {
        std::borrow::Cow::Owned(Escaped(s).to_string())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_escapes_and_bidi_are_escaped() {
        let cases = [
            ("\u{1b}[31mred", "\\u{1b}[31mred"),
            ("a\rb\nc\td\0", "a\\rb\\nc\\td\\0"),
            ("bell\u{7}", "bell\\u{7}"),
            ("del\u{7f}", "del\\u{7f}"),
            ("nel\u{85}csi\u{9b}", "nel\\u{85}csi\\u{9b}"),
            ("evil\u{202e}txt.exe", "evil\\u{202e}txt.exe"),
            (
                "\u{202a}\u{202b}\u{202c}\u{202d}",
                "\\u{202a}\\u{202b}\\u{202c}\\u{202d}",
            ),
            (
                "\u{2066}\u{2067}\u{2068}\u{2069}",
                "\\u{2066}\\u{2067}\\u{2068}\\u{2069}",
            ),
            ("\u{200e}\u{200f}\u{61c}", "\\u{200e}\\u{200f}\\u{61c}"),
            ("zero\u{200b}width\u{feff}", "zero\\u{200b}width\\u{feff}"),
            ("line\u{2028}para\u{2029}", "line\\u{2028}para\\u{2029}"),
            ("tag\u{e0041}", "tag\\u{e0041}"),
            ("unassigned\u{378}", "unassigned\\u{378}"),
        ];
        for (raw, want) in cases {
            assert_eq!(Escaped(raw).to_string(), want, "{raw:?}");
            assert_eq!(escaped(raw), want);
        }
    }

    #[test]
    fn printable_text_is_left_alone() {
        for s in [
            "Siân Evans",
            "Zoë O'Brien-Ngũgĩ",
            "Кирилл",
            "李小龍",
            "مريم",
            "back\\slash \"quoted\"",
            "\u{a0}non-breaking",
            "",
        ] {
            assert_eq!(Escaped(s).to_string(), s);
            assert!(matches!(escaped(s), std::borrow::Cow::Borrowed(_)));
        }
    }

    #[test]
    fn quoted_escapes_quotes_and_backslashes_too() {
        assert_eq!(Quoted("a\"b\\c").to_string(), r#""a\"b\\c""#);
        assert_eq!(Quoted("x\u{1b}").to_string(), "\"x\\u{1b}\"");
        assert_eq!(Quoted("Siân").to_string(), "\"Siân\"");
    }

    #[test]
    fn width_and_alignment_apply_to_the_escaped_text() {
        assert_eq!(format!("[{:<6}]", Escaped("a\rb")), "[a\\rb  ]");
        assert_eq!(format!("[{:>4}]", Escaped("é")), "[   é]");
        assert_eq!(format!("[{:<5}]", Quoted("a")), "[\"a\"  ]");
    }

    #[test]
    fn escaping_twice_changes_nothing_more() {
        let once = Escaped("a\u{202e}\u{1b}b").to_string();
        assert_eq!(Escaped(&once).to_string(), once);
        // Rust's own Debug escaping, as error messages use it, passes through unchanged.
        let dbg = format!("{:?}", "x\u{202e}\u{85}\u{1b}");
        assert_eq!(Escaped(&dbg).to_string(), dbg);
    }
}
