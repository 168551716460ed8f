//! Mapping a filtered source entry onto the NHS Directory [`Person`], then validating it.
//! An invalid entry becomes a [`Rejection`] with a reason; the run goes on.

use super::{Field, Person, RejectReason, Rejection, Warning, validate};
use crate::filter::{OdsSource, Rule};
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

/// What an invalid value of a field does to the person.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnInvalid {
    /// The entry is rejected.
    Reject,
    /// The field is dropped with a warning; the directory's value is left as it is.
    Drop,
}

/// Which fields reject the person when invalid, and which are dropped with a warning.
///
/// - `given_name`, `family_name`: mandatory to provision (DESIGN.md, "Mandatory to
///   provision").
/// - `email`, `employee_id`: not shown in the directory but decisive: the email decides
///   eligibility (a publicly funded mailbox elsewhere, AUP §2.10; seed
///   002_523999ec1e783f26.txt) and both are the first-sync match keys that join a person
///   to the account they already have (one account per person, AUP §2.9). Dropping one
///   could provision someone who must not be, or a second account, so they reject.
/// - Everything else is contact detail (job title, department, site, telephone,
///   mobile) or has a fallback (`display_name`, "given family"): dropped with a warning,
///   so one bad value does not stop a person's whole record (AUP §3.3.1 asks that the
///   directory's details be correct; a value that is not is better not sent).
pub fn on_invalid(f: Field) -> OnInvalid {
    match f {
        Field::GivenName | Field::FamilyName | Field::Email | Field::EmployeeId => {
            OnInvalid::Reject
        }
        Field::DisplayName
        | Field::JobTitle
        | Field::Department
        | Field::Site
        | Field::Telephone
        | Field::Mobile => OnInvalid::Drop,
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
    // Whether the account is enabled comes from this one attribute: unreadable, the
    // person's state is unknown, so nothing is done for them (not "enabled").
    if let Some(why) = e.unreadable.get(UAC) {
        return Err(reject(
            RejectReason::InvalidValue,
            format!("userAccountControl {why}"),
        ));
    }
    if let Some(OdsSource::Attribute { name, .. }) = &rule.ods
        && let Some(why) = e.unreadable.get(&name.to_ascii_lowercase())
    {
        return Err(reject(
            RejectReason::InvalidValue,
            format!("ods_code: {name} {why}"),
        ));
    }
    let ods_code = rule.ods_code(e).map_err(|why| {
        let reason = if why.contains("is empty") {
            RejectReason::MissingMandatory
        } else {
            RejectReason::InvalidValue
        };
        reject(reason, format!("ods_code: {why}"))
    })?;
    // In field order (`raw_values` is), collected into one `FieldMap` at the end.
    let mut attributes: Vec<(Field, String)> = Vec::with_capacity(Field::ALL.len());
    let mut warnings = Vec::new();
    let mut invalid = |f: Field, (reason, detail): validate::Invalid| match on_invalid(f) {
        OnInvalid::Reject => Err(reject(reason, detail)),
        OnInvalid::Drop => {
            warnings.push(Warning {
                external_id: external_id.clone(),
                dn: e.dn.clone(),
                field: f,
                reason,
                detail: format!("{detail}; {}", dropped(f)),
            });
            Ok(())
        }
    };
    let unreadable = unreadable_fields(e, rule, mapping);
    for (f, why) in &unreadable {
        invalid(*f, (RejectReason::InvalidValue, why.clone()))?;
    }
    for (f, v) in mapping.raw_values(e, rule) {
        if v.trim().is_empty() || unreadable.contains_key(&f) {
            continue;
        }
        match validate::value_memo(f, &v, memo) {
            Ok(clean) => attributes.push((f, clean)),
            Err(why) => invalid(f, why)?,
        }
    }
    fn value(attributes: &[(Field, String)], f: Field) -> Option<&str> {
        attributes
            .iter()
            .find(|(g, _)| *g == f)
            .map(|(_, v)| v.as_str())
    }
    for f in [Field::GivenName, Field::FamilyName] {
        if value(&attributes, f).is_none() {
            return Err(reject(
                RejectReason::MissingMandatory,
                format!("{f} is empty (source attribute {})", mapping.fields[&f]),
            ));
        }
    }
    if value(&attributes, Field::DisplayName).is_none() {
        let d = format!(
            "{} {}",
            value(&attributes, Field::GivenName).unwrap_or_default(),
            value(&attributes, Field::FamilyName).unwrap_or_default()
        );
        let d = validate::clean_text(Field::DisplayName, &d)
            .map_err(|(reason, detail)| reject(reason, detail))?;
        attributes.push((Field::DisplayName, d));
    }
    Ok(Person {
        external_id,
        dn: e.dn.clone(),
        ods_code,
        rule: rule.id.clone(),
        enabled: e.enabled,
        attributes: attributes.into_iter().collect(),
        warnings,
    })
}

/// `userAccountControl`, as [`SourceEntry::unreadable`] names it.
const UAC: &str = "useraccountcontrol";

/// What happens to a dropped field (the end of its warning's detail).
fn dropped(f: Field) -> &'static str {
    match f {
        Field::DisplayName => {
            "not sent: a new account gets \"given family\", an existing account keeps the directory's value"
        }
        _ => "not sent, and the directory's value is left as it is",
    }
}

/// Fields whose source attribute could not be read (and that the rule does not set),
/// with the problem in words: `givenName is not valid UTF-8`, or `givenName has 2
/// values; one is expected` — every field is single-valued in the directory, and
/// picking one of several values would be a guess that can change from read to read.
fn unreadable_fields(e: &SourceEntry, rule: &Rule, mapping: &Mapping) -> BTreeMap<Field, String> {
    mapping
        .fields
        .iter()
        .filter(|(f, _)| !rule.set.contains_key(f))
        .filter_map(|(f, attr)| {
            if let Some(why) = (!e.unreadable.is_empty())
                .then(|| e.unreadable.get(&attr.to_ascii_lowercase()))
                .flatten()
            {
                return Some((*f, format!("{attr} {why}")));
            }
            match e.values(attr) {
                [] | [_] => None,
                many => Some((
                    *f,
                    format!("{attr} has {} values; one is expected", many.len()),
                )),
            }
        })
        .collect()
}
