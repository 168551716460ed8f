//! Table-driven tests of the model stage: text and name rules, phone numbers, and what
//! mapping makes of invalid values (a rejection for mandatory and decisive fields, a
//! dropped field and a warning for the rest).

use super::mapping::{Mapping, map_entry};
use super::validate::{self, clean_text, mobile, name, phone_comparable, telephone};
use super::{Field, Person, RejectReason, Rejection};
use crate::filter::{Action, OdsSource, Rule};
use crate::ids::{OdsCode, RuleId};
use crate::source::{AnchorKind, SourceEntry};
use std::collections::BTreeMap;

/// `Ok(cleaned)` or `Err(text the detail must contain)`.
type Want = Result<&'static str, &'static str>;

#[track_caller]
fn check(what: &str, got: Result<String, validate::Invalid>, want: Want) {
    match (got, want) {
        (Ok(g), Ok(w)) => assert_eq!(g, w, "{what}"),
        (Err((_, d)), Err(w)) => assert!(d.contains(w), "{what}: {d:?} should contain {w:?}"),
        (g, w) => panic!("{what}: got {g:?}, want {w:?}"),
    }
}

#[test]
fn invisible_and_format_characters_are_refused_in_any_text() {
    let cases: &[(Field, &str, Want)] = &[
        (
            Field::GivenName,
            "Ja\u{200B}ne",
            Err("given_name contains U+200B ZERO WIDTH SPACE"),
        ),
        (
            Field::FamilyName,
            "Evans\u{200D}",
            Err("family_name contains U+200D ZERO WIDTH JOINER"),
        ),
        (
            Field::DisplayName,
            "\u{202E}snavE naiS",
            Err("display_name contains U+202E RIGHT-TO-LEFT OVERRIDE"),
        ),
        (
            Field::GivenName,
            "\u{FEFF}Ann",
            Err("U+FEFF ZERO WIDTH NO-BREAK SPACE"),
        ),
        (Field::GivenName, "An\u{00AD}n", Err("U+00AD SOFT HYPHEN")),
        (
            Field::GivenName,
            "Ann\u{2066}",
            Err("U+2066 LEFT-TO-RIGHT ISOLATE"),
        ),
        (Field::GivenName, "\u{2060}", Err("U+2060 WORD JOINER")),
        // Hangul fillers look like nothing and are letters (Lo), not format characters.
        (Field::GivenName, "\u{3164}", Err("U+3164 HANGUL FILLER")),
        (
            Field::FamilyName,
            "Kim\u{115F}",
            Err("U+115F HANGUL CHOSEONG FILLER"),
        ),
        (
            Field::FamilyName,
            "\u{1160}",
            Err("U+1160 HANGUL JUNGSEONG FILLER"),
        ),
        (
            Field::GivenName,
            "\u{FFA0}",
            Err("U+FFA0 HALFWIDTH HANGUL FILLER"),
        ),
        (
            Field::GivenName,
            "Ann\u{FE0F}",
            Err("U+FE0F VARIATION SELECTOR-16"),
        ),
        (
            Field::Department,
            "Pharmacy\u{200B}",
            Err("department contains U+200B ZERO WIDTH SPACE"),
        ),
        // A combining mark with no letter before it (at the start, or of a word).
        (
            Field::GivenName,
            "\u{0301}Ann",
            Err("given_name has U+0301 COMBINING ACUTE ACCENT with no letter before it"),
        ),
        (
            Field::FamilyName,
            "Lee \u{0308}",
            Err("U+0308 COMBINING DIAERESIS"),
        ),
        // The joiners where a non-Latin script needs them are part of the name (the
        // policy the directory stores by); between Latin letters they hide nothing
        // legitimate.
        (Field::FamilyName, "علی\u{200C}زاده", Ok("علی\u{200C}زاده")),
        (Field::GivenName, "क्\u{200D}ष", Ok("क्\u{200D}ष")),
        (Field::GivenName, "葛\u{E0100}西", Ok("葛\u{E0100}西")),
        (
            Field::GivenName,
            "Jo\u{200C}hn",
            Err(
                "given_name contains U+200C ZERO WIDTH NON-JOINER, an invisible or formatting character",
            ),
        ),
        // Judged on the value as stored: a joiner left at a word's edge by collapsed
        // whitespace joins nothing.
        (
            Field::FamilyName,
            "علی\u{200C} زاده",
            Err("U+200C ZERO WIDTH NON-JOINER"),
        ),
        (
            Field::GivenName,
            "Ja\u{200B}ne",
            Err(
                "given_name contains U+200B ZERO WIDTH SPACE, an invisible or formatting character",
            ),
        ),
        // Combining marks on a letter are part of the name, precomposed or not.
        (Field::GivenName, "Sia\u{0302}n", Ok("Sia\u{0302}n")),
        (Field::GivenName, "Siân", Ok("Siân")),
        (Field::GivenName, "Zoë", Ok("Zoë")),
        (Field::FamilyName, "Ó Súilleabháin", Ok("Ó Súilleabháin")),
        (Field::FamilyName, "O’Brien-Ngũgĩ", Ok("O’Brien-Ngũgĩ")),
        (Field::FamilyName, "ap Llŷr", Ok("ap Llŷr")),
        (Field::GivenName, "Nguyễn", Ok("Nguyễn")),
        (Field::GivenName, "Ann\u{00A0}Marie", Ok("Ann Marie")),
        (
            Field::GivenName,
            "a\u{0007}b",
            Err("control character (U+0007)"),
        ),
    ];
    for (f, v, want) in cases {
        check(&format!("{f} {v:?}"), clean_text(*f, v), *want);
        // Through the field's whole rule too (as mapping calls it).
        check(&format!("{f} {v:?} (value)"), validate::value(*f, v), *want);
    }
}

#[test]
fn names_mixing_look_alike_scripts_are_refused() {
    let cases: &[(Field, &str, Want)] = &[
        (
            Field::GivenName,
            "J\u{0430}ne",
            Err(
                "given_name mixes Latin and Cyrillic letters, which look alike: U+0430 CYRILLIC SMALL LETTER A",
            ),
        ),
        (
            Field::FamilyName,
            "\u{0421}ooper",
            Err(
                "family_name mixes Latin and Cyrillic letters, which look alike: U+0421 CYRILLIC CAPITAL LETTER ES",
            ),
        ),
        (
            Field::DisplayName,
            "Ann P\u{03BF}pe",
            Err(
                "mixes Latin and Greek letters, which look alike: U+03BF GREEK SMALL LETTER OMICRON",
            ),
        ),
        // Mostly Cyrillic with one Latin letter: the Latin one is the odd one out.
        (
            Field::GivenName,
            "Дмитpий",
            Err("mixes Cyrillic and Latin letters, which look alike: U+0070 LATIN SMALL LETTER P"),
        ),
        (
            Field::GivenName,
            "Ελένa",
            Err("mixes Greek and Latin letters, which look alike: U+0061 LATIN SMALL LETTER A"),
        ),
        // Whole names in one script, and Latin beside a script that does not imitate it.
        (Field::GivenName, "Дмитрий", Ok("Дмитрий")),
        (Field::FamilyName, "Иванова-Петрова", Ok("Иванова-Петрова")),
        (Field::GivenName, "Ελένη", Ok("Ελένη")),
        (Field::GivenName, "王", Ok("王")),
        (Field::DisplayName, "山田 太郎", Ok("山田 太郎")),
        (Field::DisplayName, "やまだ 太郎", Ok("やまだ 太郎")),
        (Field::GivenName, "محمد", Ok("محمد")),
        (Field::GivenName, "श्रेया", Ok("श्रेया")),
        (Field::DisplayName, "Wang 王", Ok("Wang 王")),
        (Field::DisplayName, "Siân Evans", Ok("Siân Evans")),
        (Field::FamilyName, "D'Arcy-Ó Briain", Ok("D'Arcy-Ó Briain")),
    ];
    for (f, v, want) in cases {
        check(&format!("{f} {v:?}"), validate::value(*f, v), *want);
    }
    // Only the name fields carry the script rule; other text gets the invisible-character
    // rule only.
    assert!(validate::value(Field::Department, "J\u{0430}ne ward").is_ok());
    assert!(name(Field::Department, "J\u{0430}ne").is_err());
}

/// Mobiles in blocks the phonenumber crate's metadata does not list (found by sweeping
/// 07xxx prefixes against its `number_type`): structurally UK mobiles all the same.
const UNLISTED_MOBILES: [(&str, &str); 6] = [
    ("07700 212345", "+447700212345"),
    ("07911 312345", "+447911312345"),
    ("07624 512345", "+447624512345"),
    ("+44 7700 612345", "+447700612345"),
    ("+44 (0)7911 912345", "+447911912345"),
    ("0044 7624 712345", "+447624712345"),
];

#[test]
fn the_unlisted_mobiles_are_unknown_to_the_crate() {
    // What makes them a test: if the crate's metadata gains these blocks, find others.
    for (v, _) in UNLISTED_MOBILES {
        let n = phonenumber::parse(Some(phonenumber::country::Id::GB), v).unwrap();
        assert_eq!(
            n.number_type(&phonenumber::metadata::DATABASE),
            phonenumber::Type::Unknown,
            "{v}"
        );
    }
}

#[test]
fn uk_mobiles_are_recognised_by_their_structure() {
    let mut cases: Vec<(&str, Want)> = UNLISTED_MOBILES.iter().map(|(v, e)| (*v, Ok(*e))).collect();
    cases.extend([
        ("07123 456789", Ok("+447123456789")),
        ("+44 (0)7123 456789", Ok("+447123456789")),
        ("07412 345678", Ok("+447412345678")),
        ("07512-345-678", Ok("+447512345678")),
        ("07781 123456", Ok("+447781123456")), // Guernsey
        ("07797 123456", Ok("+447797123456")), // Jersey
        ("07624 123456", Ok("+447624123456")), // Isle of Man
        ("070 1234 5678", Err("is not a UK mobile number")), // personal numbering
        ("07640 123456", Err("is not a UK mobile number")), // pager
        ("07600 123456", Err("is not a UK mobile number")),
        ("0113 496 0000", Err("is not a UK mobile number")),
        ("07123 45678", Err("is not a valid phone number")), // nine digits
        ("07123 4567890", Err("is not a valid phone number")), // eleven
        ("+1 415 555 0100", Err("is not a UK number")),
        ("12345", Err("is not a valid phone number")),
        ("mobile", Err("is not a valid phone number")),
    ]);
    for (v, want) in cases {
        check(&format!("mobile {v:?}"), mobile(v), want);
        if want.is_err() {
            assert_eq!(mobile(v).unwrap_err().0, RejectReason::InvalidMobile, "{v}");
        }
    }
}

#[test]
fn telephones_are_any_valid_number_or_a_structural_mobile() {
    let cases: &[(&str, Want)] = &[
        ("0113 496 0000", Ok("+441134960000")),
        ("+44 113 496 0000", Ok("+441134960000")),
        ("+1 415 555 0100", Ok("+14155550100")),
        ("07700 212345", Ok("+447700212345")),
        ("+44 (0)7911 912345", Ok("+447911912345")),
        ("ext 1234", Err("is not a valid phone number")),
        ("0113", Err("is not a valid phone number")),
    ];
    for (v, want) in cases {
        check(&format!("telephone {v:?}"), telephone(v), *want);
    }
    // The directory side: national or international form, the same E.164; not a number,
    // nothing (the diff then compares the text).
    for (v, want) in [
        ("07700 900123", Some("+447700900123")),
        ("+447700900123", Some("+447700900123")),
        ("+44 7700 212345", Some("+447700212345")),
        ("0113 496 0000", Some("+441134960000")),
        ("call the ward", None),
    ] {
        assert_eq!(phone_comparable(v).as_deref(), want, "{v}");
    }
}

// ---------------------------------------------------------------------------------------
// Mapping

fn rule() -> Rule {
    Rule {
        id: RuleId::parse("staff").unwrap(),
        file: "rules.toml".into(),
        description: String::new(),
        action: Action::Include,
        conditions: Vec::new(),
        ods: Some(OdsSource::Constant(OdsCode::parse("RXA").unwrap())),
        set: BTreeMap::new(),
        transforms: Vec::new(),
    }
}

/// An entry with objectGUID `[9; 16]`, these text values and these binary ones.
fn entry(text: &[(&str, &str)], binary: &[(&str, &[u8])]) -> SourceEntry {
    let mut bin: Vec<(String, Vec<Vec<u8>>)> = vec![("objectGUID".into(), vec![vec![9; 16]])];
    bin.extend(
        binary
            .iter()
            .map(|(k, v)| (k.to_string(), vec![v.to_vec()])),
    );
    SourceEntry::build(
        "CN=Ann Lee,OU=Staff,DC=example".into(),
        text.iter()
            .map(|(k, v)| (k.to_string(), vec![v.to_string()])),
        bin,
        &AnchorKind::ObjectGuid,
    )
}

fn map(text: &[(&str, &str)], binary: &[(&str, &[u8])]) -> Result<Person, Rejection> {
    map_entry(&entry(text, binary), &rule(), &Mapping::default())
}

const NAMES: [(&str, &str); 2] = [("givenName", "Ann"), ("sn", "Lee")];

/// [`NAMES`] with `extra` added (or, for a name, in its place).
fn with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v: Vec<(&str, &str)> = NAMES
        .into_iter()
        .filter(|(k, _)| !extra.iter().any(|(x, _)| x == k))
        .collect();
    v.extend_from_slice(extra);
    v
}

#[test]
fn an_unreadable_user_account_control_rejects_the_entry() {
    for (uac, detail) in [
        ("abc", r#"userAccountControl "abc" is not a number"#),
        ("", r#"userAccountControl "" is not a number"#),
        ("0x2", r#"userAccountControl "0x2" is not a number"#),
    ] {
        let r = map(&with(&[("userAccountControl", uac)]), &[]).unwrap_err();
        assert_eq!(
            (r.reason, r.detail.as_str()),
            (RejectReason::InvalidValue, detail),
            "{uac:?}"
        );
        assert!(r.external_id.is_some(), "the anchor is kept: no removal");
    }
    // Two values: which one holds?
    let e = SourceEntry::build(
        "CN=Ann Lee,OU=Staff,DC=example".into(),
        [
            ("givenName".to_string(), vec!["Ann".to_string()]),
            ("sn".to_string(), vec!["Lee".to_string()]),
            (
                "userAccountControl".to_string(),
                vec!["512".to_string(), "514".to_string()],
            ),
        ],
        [("objectGUID".to_string(), vec![vec![9u8; 16]])],
        &AnchorKind::ObjectGuid,
    );
    let r = map_entry(&e, &rule(), &Mapping::default()).unwrap_err();
    assert_eq!(r.reason, RejectReason::InvalidValue);
    assert_eq!(
        r.detail,
        r#"userAccountControl has 2 values ("512", "514"); one is expected"#
    );
    // Not UTF-8.
    let r = map(&NAMES, &[("userAccountControl", b"\xff")]).unwrap_err();
    assert_eq!(r.detail, "userAccountControl is not valid UTF-8");
    // Readable values still decide.
    assert!(
        map(&with(&[("userAccountControl", "512")]), &[])
            .unwrap()
            .enabled
    );
    assert!(
        !map(&with(&[("userAccountControl", "514")]), &[])
            .unwrap()
            .enabled
    );
    assert!(
        map(&NAMES, &[]).unwrap().enabled,
        "no userAccountControl: enabled"
    );
}

#[test]
fn a_text_value_that_is_not_utf8_is_named() {
    // Mandatory: rejected, saying why (not "given_name is empty").
    let r = map(&[("sn", "Lee")], &[("givenName", b"Si\xe2n")]).unwrap_err();
    assert_eq!(r.reason, RejectReason::InvalidValue);
    assert!(
        r.detail.starts_with("givenName is not valid UTF-8"),
        "{}",
        r.detail
    );
    let r = map(&[("givenName", "Ann")], &[("sn", b"\xc3\x28")]).unwrap_err();
    assert!(
        r.detail.starts_with("sn is not valid UTF-8"),
        "{}",
        r.detail
    );
    // The ODS code read from an attribute: not "empty" either.
    let mut r = rule();
    r.ods = Some(OdsSource::Attribute {
        name: "company".into(),
        regex: None,
    });
    let e = entry(&NAMES, &[("company", b"RX\xff")]);
    let rej = map_entry(&e, &r, &Mapping::default()).unwrap_err();
    assert_eq!(
        (rej.reason, rej.detail.as_str()),
        (
            RejectReason::InvalidValue,
            "ods_code: company is not valid UTF-8"
        )
    );
    // Optional: dropped with a warning.
    let p = map(&NAMES, &[("title", b"Nurse \xff")]).unwrap();
    assert_eq!(p.get(Field::JobTitle), None);
    assert_eq!(p.warnings.len(), 1);
    assert_eq!(p.warnings[0].field, Field::JobTitle);
    assert_eq!(p.warnings[0].reason, RejectReason::InvalidValue);
    assert!(
        p.warnings[0].detail.starts_with("title is not valid UTF-8"),
        "{}",
        p.warnings[0].detail
    );
    // A rule that sets the field does not need the source value.
    let mut r = rule();
    r.set.insert(Field::JobTitle, "Nurse".into());
    let p = map_entry(
        &entry(&NAMES, &[("title", b"\xff")]),
        &r,
        &Mapping::default(),
    )
    .unwrap();
    assert_eq!(
        (p.get(Field::JobTitle), p.warnings.len()),
        (Some("Nurse"), 0)
    );
}

/// What mapping makes of one invalid value: rejected with this reason, or dropped with
/// a warning of this reason.
#[derive(Debug, PartialEq)]
enum Outcome {
    Rejected(RejectReason),
    Dropped(RejectReason),
}

#[test]
fn invalid_optional_values_are_dropped_with_a_warning_and_mandatory_ones_reject() {
    use Outcome::*;
    use RejectReason::*;
    let long_title = "Senior ".repeat(20);
    let cases: Vec<(&str, &str, Field, Outcome)> = vec![
        (
            "givenName",
            "J\u{0430}ne",
            Field::GivenName,
            Rejected(InvalidValue),
        ),
        (
            "sn",
            "Lee\u{200B}",
            Field::FamilyName,
            Rejected(InvalidValue),
        ),
        (
            "mail",
            "ann@@example.org",
            Field::Email,
            Rejected(InvalidValue),
        ),
        (
            "employeeID",
            "E1\u{200B}",
            Field::EmployeeId,
            Rejected(InvalidValue),
        ),
        ("mobile", "07700", Field::Mobile, Dropped(InvalidMobile)),
        (
            "mobile",
            "0113 496 0000",
            Field::Mobile,
            Dropped(InvalidMobile),
        ),
        (
            "telephoneNumber",
            "ext 4411",
            Field::Telephone,
            Dropped(InvalidValue),
        ),
        ("title", &long_title, Field::JobTitle, Dropped(InvalidValue)),
        (
            "department",
            "Pharmacy\u{202E}",
            Field::Department,
            Dropped(InvalidValue),
        ),
        (
            "physicalDeliveryOfficeName",
            "\u{0301}Ward",
            Field::Site,
            Dropped(InvalidValue),
        ),
        (
            "displayName",
            "Ann L\u{0435}e",
            Field::DisplayName,
            Dropped(InvalidValue),
        ),
    ];
    for (attr, v, field, want) in cases {
        let got = match map(&with(&[(attr, v)]), &[]) {
            Err(r) => Rejected(r.reason),
            Ok(p) => {
                assert_eq!(p.warnings.len(), 1, "{attr} {v:?}: {:?}", p.warnings);
                let w = &p.warnings[0];
                assert_eq!(
                    (w.field, w.dn.as_str()),
                    (field, "CN=Ann Lee,OU=Staff,DC=example")
                );
                assert!(
                    w.detail.contains("not sent"),
                    "the warning says what happens: {}",
                    w.detail
                );
                assert!(p.withholds(field));
                // The rest of the person goes ahead.
                assert_eq!(p.get(Field::GivenName), Some("Ann"));
                if field == Field::DisplayName {
                    // A new account still needs a display name: "given family".
                    assert_eq!(p.get(field), Some("Ann Lee"));
                } else {
                    assert_eq!(p.get(field), None, "{attr}");
                }
                Dropped(w.reason)
            }
        };
        assert_eq!(got, want, "{attr} {v:?}");
    }
    // Valid values, no warnings.
    let p = map(
        &with(&[
            ("mobile", "07700 212345"),
            ("telephoneNumber", "0113 496 0000"),
        ]),
        &[],
    )
    .unwrap();
    assert!(p.warnings.is_empty());
    assert_eq!(p.get(Field::Mobile), Some("+447700212345"));
    // Several bad values: one warning each, in field order.
    let p = map(
        &with(&[("mobile", "07700"), ("title", "Nurse\u{200B}")]),
        &[],
    )
    .unwrap();
    let fields: Vec<Field> = p.warnings.iter().map(|w| w.field).collect();
    assert_eq!(fields, [Field::JobTitle, Field::Mobile]);
}
