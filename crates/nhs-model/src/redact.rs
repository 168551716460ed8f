//! Personal data out of log lines and health answers: names, e-mail addresses, phone
//! numbers and DNs are redacted by default (`[daemon] log_personal_data` opts in).
//!
//! Two layers. A field whose *name* says it holds personal data ([`is_personal_field`]:
//! `dn`, `display_name`, `email`, `mobile`, …) is replaced whole. Any other text value
//! (a message, an error chain, the directory's answer) is [`scrub`]bed of what can be
//! recognised in free text: DNs, e-mail addresses and UK or E.164 phone numbers. A name
//! in free text cannot be recognised, so code that logs a name must put it in a named
//! field, never in the message.

use regex::Regex;
use std::borrow::Cow;
use std::sync::LazyLock;

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Does a field of this name hold personal data (its whole value is redacted)?
/// Names are compared without regard to case; `*_dn`, `*_email`, `*_phone` count too.
pub fn is_personal_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "dn" | "cn"
            | "name"
            | "display_name"
            | "given_name"
            | "family_name"
            | "email"
            | "mail"
            | "nhsmail"
            | "address"
            | "mobile"
            | "telephone"
            | "phone"
            | "upn"
            | "user_principal_name"
            | "sam_account_name"
            | "uid"
            | "employee_id"
            | "who"
            | "old"
            | "new"
            | "value"
    ) || n.ends_with("_dn")
        || n.ends_with("_email")
        || n.ends_with("_phone")
}

/// An RDN value: anything up to a comma, quote or line end (escaped commas included); a
/// `dc=` component is a plain label, so the text after a DN's end stays readable.
const RDN: &str = r#"(?:dc=[\w-]+|(?:cn|uid|ou|o|l|c|st|street)=(?:\\.|[^,"'\n\\])*)"#;

static PATTERNS: LazyLock<Option<[Regex; 3]>> = LazyLock::new(|| {
    let dn = format!(r"(?i)\b{RDN}(?:,\s*{RDN})*");
    let email = r"[\w.%+'-]+@[\w-]+(?:\.[\w-]+)+";
    // A UK number (0…, 10 or 11 digits) or an international one (+…), with the spaces
    // and hyphens people write.
    let phone = r"(?:\+\d{1,3}[\s-]?|\b0)\d(?:[\s-]?\d){8,10}\b";
    Some([
        Regex::new(email).ok()?,
        Regex::new(&dn).ok()?,
        Regex::new(phone).ok()?,
    ])
});

/// `text` with every DN, e-mail address and phone number replaced by [`REDACTED`].
/// Should the patterns ever fail to build, the whole text is redacted (fail closed).
pub fn scrub(text: &str) -> Cow<'_, str> {
    let Some(patterns) = PATTERNS.as_ref() else {
        return Cow::Borrowed(REDACTED);
    };
    let mut out = Cow::Borrowed(text);
    for re in patterns {
        if re.is_match(&out) {
            out = Cow::Owned(re.replace_all(&out, REDACTED).into_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_fields_by_name() {
        for f in [
            "dn",
            "DN",
            "display_name",
            "given_name",
            "family_name",
            "email",
            "mail",
            "mobile",
            "telephone",
            "bind_dn",
            "old",
            "new",
        ] {
            assert!(is_personal_field(f), "{f}");
        }
        for f in [
            "message",
            "error",
            "external_id",
            "kind",
            "ods",
            "rule",
            "reason",
        ] {
            assert!(!is_personal_field(f), "{f}");
        }
    }

    #[test]
    fn scrub_finds_dns_addresses_and_phones_in_free_text() {
        let cases = [
            (
                "entry CN=Siân Evans,OU=Northgate General,OU=Staff,DC=northgate,DC=example has no objectGUID",
                "entry [redacted] has no objectGUID",
            ),
            ("uid=ann,ou=people,dc=x refused", "[redacted] refused"),
            (
                "mail s.evans@northgate.example is taken",
                "mail [redacted] is taken",
            ),
            (
                "mobile 07123 456001 is not UK",
                "mobile [redacted] is not UK",
            ),
            (
                "call 0113 496 0101 or +447123456001",
                "call [redacted] or [redacted]",
            ),
            ("CN=Zoë Brontë\\, RN,OU=Staff,DC=x: bad", "[redacted]: bad"),
        ];
        for (text, want) in cases {
            assert_eq!(scrub(text), want, "{text}");
        }
    }

    #[test]
    fn scrub_leaves_ordinary_text() {
        for text in [
            "directory read failed; retrying",
            "2026-11-22T10:00:00Z took 0.25s",
            "af40ac76-1201-4205-83fb-a1707109e8b4 RXA provision",
            "HTTP 503 after 5 attempts",
        ] {
            assert_eq!(scrub(text), text);
        }
    }
}
