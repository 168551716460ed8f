//! Partnering and sharing agreements (NHSmail Policy and Guidance, "address book
//! synchronisation": the organisation running the agent holds a partnering agreement and,
//! for each NHS Directory organisation it synchronises with, a sharing agreement).
//!
//! File format (TOML), documented in README.md and `examples/agreements.toml`.

use crate::ids::OdsCode;
use crate::model::Field;
use crate::plan::OpKind;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use time::Date;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validity {
    pub from: Date,
    pub until: Date,
}

impl Validity {
    /// Inclusive on both ends.
    pub fn covers(&self, day: Date) -> bool {
        self.from <= day && day <= self.until
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partnering {
    pub reference: String,
    pub validity: Validity,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sharing {
    pub ods_code: OdsCode,
    pub reference: String,
    pub validity: Validity,
    pub operations: BTreeSet<OpKind>,
    pub attributes: BTreeSet<Field>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Agreements {
    pub partnering: Option<Partnering>,
    pub sharing: BTreeMap<OdsCode, Sharing>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    partnering: Option<RawPartnering>,
    #[serde(default)]
    sharing: Vec<RawSharing>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPartnering {
    reference: String,
    valid_from: toml::value::Datetime,
    valid_until: toml::value::Datetime,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSharing {
    ods_code: String,
    reference: String,
    valid_from: toml::value::Datetime,
    valid_until: toml::value::Datetime,
    operations: Vec<OpKind>,
    attributes: Vec<String>,
}

fn date(key: &str, v: &toml::value::Datetime) -> Result<Date, String> {
    let d = v
        .date
        .ok_or_else(|| format!("{key}: expected a date such as 2026-04-01"))?;
    let month = time::Month::try_from(d.month).map_err(|e| format!("{key}: {e}"))?;
    Date::from_calendar_date(i32::from(d.year), month, d.day).map_err(|e| format!("{key}: {e}"))
}

fn validity(
    key: &str,
    from: &toml::value::Datetime,
    until: &toml::value::Datetime,
) -> Result<Validity, String> {
    let v = Validity {
        from: date(&format!("{key}.valid_from"), from)?,
        until: date(&format!("{key}.valid_until"), until)?,
    };
    if v.until < v.from {
        return Err(format!("{key}: valid_until is before valid_from"));
    }
    Ok(v)
}

/// Parse an agreements file. Errors are `key: problem`; the caller adds the file name.
pub fn parse(text: &str) -> Result<Agreements, String> {
    let raw: RawFile = toml::from_str(text).map_err(|e| crate::toml_error::describe(text, &e))?;
    let partnering = raw
        .partnering
        .map(|p| -> Result<Partnering, String> {
            Ok(Partnering {
                validity: validity("partnering", &p.valid_from, &p.valid_until)?,
                reference: p.reference,
            })
        })
        .transpose()?;
    let mut sharing = BTreeMap::new();
    for (i, s) in raw.sharing.into_iter().enumerate() {
        let key = format!("sharing[{i}] ({})", s.ods_code);
        let ods = OdsCode::parse(&s.ods_code).map_err(|e| format!("{key}.ods_code: {e}"))?;
        let mut attributes = BTreeSet::new();
        for a in &s.attributes {
            let f = Field::parse(a).ok_or_else(|| {
                format!(
                    "{key}.attributes: unknown attribute {a:?}; expected one of {}",
                    Field::ALL.map(|f| f.name()).join(", ")
                )
            })?;
            attributes.insert(f);
        }
        let sh = Sharing {
            validity: validity(&key, &s.valid_from, &s.valid_until)?,
            ods_code: ods.clone(),
            reference: s.reference,
            operations: s.operations.into_iter().collect(),
            attributes,
        };
        if sharing.insert(ods.clone(), sh).is_some() {
            return Err(format!(
                "{key}: a second sharing agreement for {ods}; keep one per organisation"
            ));
        }
    }
    Ok(Agreements {
        partnering,
        sharing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        let a = parse(
            r#"
[partnering]
reference = "PA-1"
valid_from = 2026-01-01
valid_until = 2027-12-31

[[sharing]]
ods_code = "rxa"
reference = "SA-1"
valid_from = 2026-01-01
valid_until = 2026-12-31
operations = ["provision", "update"]
attributes = ["given_name", "family_name"]
"#,
        )
        .unwrap();
        let s = &a.sharing[&OdsCode::parse("RXA").unwrap()];
        assert!(s.operations.contains(&OpKind::Update));
        assert!(s.validity.covers(time::macros::date!(2026 - 12 - 31)));
        assert!(!s.validity.covers(time::macros::date!(2027 - 01 - 01)));
        assert!(parse("[[sharing]]\nods_code = \"RXA\"\nreference = \"x\"\nvalid_from = 2026-01-01\nvalid_until = 2026-02-01\noperations = [\"delete\"]\nattributes = []\n").unwrap_err().contains("unknown variant `delete`"));
        assert!(parse("[[sharing]]\nods_code = \"RXA\"\nreference = \"x\"\nvalid_from = 2026-01-01\nvalid_until = 2026-02-01\noperations = []\nattributes = [\"nickname\"]\n").unwrap_err().contains("unknown attribute \"nickname\""));
        assert!(parse("[partnering]\nreference = \"x\"\nvalid_from = 2026-02-01\nvalid_until = 2026-01-01\n").unwrap_err().contains("before"));
    }
}
