//! Mapping a filtered source entry onto the NHS Directory [`Person`], then validating it.
//! An invalid entry becomes a [`Rejection`] with a reason; the run goes on.

use super::{Field, Person, RejectReason, Rejection, validate};
use crate::filter::Rule;
use crate::source::SourceEntry;
use std::collections::BTreeMap;

/// Which source attribute feeds each model field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub fields: BTreeMap<Field, String>,
}

impl Default for Mapping {
    fn default() -> Self {
        Self {
            fields: Field::ALL
                .into_iter()
                .map(|f| (f, f.default_source_attribute().to_string()))
                .collect(),
        }
    }
}

impl Mapping {
    pub fn attributes(&self) -> impl Iterator<Item = &str> {
        self.fields.values().map(String::as_str)
    }

    /// The raw (unvalidated) values after the rule's `set` and `transforms`, for
    /// explanations and for [`map_entry`].
    pub fn raw_values(&self, e: &SourceEntry, rule: &Rule) -> BTreeMap<Field, String> {
        let mut raw: BTreeMap<Field, String> = self
            .fields
            .iter()
            .filter_map(|(f, attr)| e.first(attr).map(|v| (*f, v.to_string())))
            .collect();
        for (f, v) in &rule.set {
            raw.insert(*f, v.clone());
        }
        for t in &rule.transforms {
            if let Some(v) = raw.get(&t.field) {
                let nv = t.apply(v);
                raw.insert(t.field, nv);
            }
        }
        raw
    }
}

/// Map and validate one entry that `rule` included.
pub fn map_entry(e: &SourceEntry, rule: &Rule, mapping: &Mapping) -> Result<Person, Rejection> {
    map_entry_memo(e, rule, mapping, &mut validate::PhoneMemo::default())
}

/// [`map_entry`] for a whole read: phone-number results are remembered in `memo`.
pub fn map_entry_memo(
    e: &SourceEntry,
    rule: &Rule,
    mapping: &Mapping,
    memo: &mut validate::PhoneMemo,
) -> Result<Person, Rejection> {
    let reject = |reason, detail: String| Rejection {
        dn: e.dn.clone(),
        external_id: e.anchor.as_ref().ok().cloned(),
        reason,
        detail,
    };
    let external_id = e
        .anchor
        .clone()
        .map_err(|why| reject(RejectReason::MissingMandatory, format!("anchor: {why}")))?;
    let ods_code = rule.ods_code(e).map_err(|why| {
        let reason = if why.contains("is empty") {
            RejectReason::MissingMandatory
        } else {
            RejectReason::InvalidValue
        };
        reject(reason, format!("ods_code: {why}"))
    })?;
    let mut attributes = BTreeMap::new();
    for (f, v) in mapping.raw_values(e, rule) {
        if v.trim().is_empty() {
            continue;
        }
        let clean =
            validate::value_memo(f, &v, memo).map_err(|(reason, detail)| reject(reason, detail))?;
        attributes.insert(f, clean);
    }
    for f in [Field::GivenName, Field::FamilyName] {
        if !attributes.contains_key(&f) {
            return Err(reject(
                RejectReason::MissingMandatory,
                format!("{f} is empty (source attribute {})", mapping.fields[&f]),
            ));
        }
    }
    if !attributes.contains_key(&Field::DisplayName) {
        let d = format!(
            "{} {}",
            attributes[&Field::GivenName],
            attributes[&Field::FamilyName]
        );
        let d = validate::clean_text(Field::DisplayName, &d)
            .map_err(|(reason, detail)| reject(reason, detail))?;
        attributes.insert(Field::DisplayName, d);
    }
    Ok(Person {
        external_id,
        dn: e.dn.clone(),
        ods_code,
        rule: rule.id.clone(),
        enabled: e.enabled,
        attributes,
    })
}
