//! Filter stage: ordered include/exclude rules from `filters/*.toml` decide which source
//! entries are in scope and which ODS organisation each belongs to. First match decides;
//! no match means excluded. Every decision names the rule that made it, and
//! [`RuleSet::explain`] evaluates every rule for `tansync explain`.
//!
//! Pure: no I/O beyond loading the rule files in [`load`].

mod load;

pub use load::{FilterError, load_files, parse_rules};

use crate::ids::{NormDn, OdsCode, RuleId};
use crate::source::{GroupIndex, SourceEntry};
use nhs_model::Field;
use regex::Regex;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Include,
    Exclude,
}

/// A test on one attribute; the condition holds if any value passes.
#[derive(Clone, Debug)]
pub enum AttrTest {
    Regex(Regex),
    /// Case-insensitive, as LDAP compares most attributes.
    Equals(String),
    Present,
    Absent,
}

/// One condition of a rule. Conditions of a rule are ANDed; the lists inside a condition
/// are any-of.
#[derive(Clone, Debug)]
pub enum Condition {
    /// The DN lies at or below any of these.
    Under(Vec<(String, NormDn)>),
    /// The DN matches any of these.
    DnRegex(Vec<Regex>),
    /// Member of any of these groups (directly, or also through nested groups).
    MemberOf {
        groups: Vec<(String, NormDn)>,
        nested: bool,
    },
    Attribute {
        name: String,
        test: AttrTest,
    },
    /// Account enabled (true) or disabled (false) in the source.
    Enabled(bool),
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[(String, NormDn)]| {
            v.iter()
                .map(|(s, _)| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(" or ")
        };
        match self {
            Condition::Under(v) => write!(f, "under {}", list(v)),
            Condition::DnRegex(v) => write!(
                f,
                "dn matches {}",
                v.iter()
                    .map(|r| format!("/{}/", r.as_str()))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            Condition::MemberOf { groups, nested } => write!(
                f,
                "{} member of {}",
                if *nested { "nested" } else { "direct" },
                list(groups)
            ),
            Condition::Attribute { name, test } => match test {
                AttrTest::Regex(r) => write!(f, "{name} matches /{}/", r.as_str()),
                AttrTest::Equals(v) => write!(f, "{name} equals {v:?}"),
                AttrTest::Present => write!(f, "{name} present"),
                AttrTest::Absent => write!(f, "{name} absent"),
            },
            Condition::Enabled(true) => write!(f, "account enabled"),
            Condition::Enabled(false) => write!(f, "account disabled"),
        }
    }
}

impl Condition {
    fn holds(&self, e: &SourceEntry, groups: &GroupIndex) -> bool {
        match self {
            Condition::Under(ous) => ous.iter().any(|(_, ou)| e.norm_dn.is_within(ou)),
            Condition::DnRegex(res) => res.iter().any(|r| r.is_match(&e.dn)),
            Condition::MemberOf { groups: gs, nested } => {
                gs.iter().any(|(_, g)| groups.is_member(e, g, *nested))
            }
            Condition::Attribute { name, test } => {
                let vals = e.values(name);
                match test {
                    AttrTest::Regex(r) => vals.iter().any(|v| r.is_match(v)),
                    AttrTest::Equals(x) => vals.iter().any(|v| v.to_lowercase() == *x),
                    AttrTest::Present => vals.iter().any(|v| !v.trim().is_empty()),
                    AttrTest::Absent => vals.iter().all(|v| v.trim().is_empty()),
                }
            }
            Condition::Enabled(want) => e.enabled == *want,
        }
    }
}

/// Where an included person's ODS code comes from.
#[derive(Clone, Debug)]
pub enum OdsSource {
    Constant(OdsCode),
    /// From an attribute; with a regex, capture group `ods` or 1 (or the whole match).
    Attribute {
        name: String,
        regex: Option<Regex>,
    },
}

/// A per-rule change to a mapped value.
#[derive(Clone, Debug)]
pub enum TransformOp {
    Replace { regex: Regex, with: String },
    Trim,
    Upper,
    Lower,
    Title,
}

#[derive(Clone, Debug)]
pub struct Transform {
    pub field: Field,
    pub op: TransformOp,
}

impl Transform {
    pub fn apply(&self, v: &str) -> String {
        match &self.op {
            TransformOp::Replace { regex, with } => {
                regex.replace_all(v, with.as_str()).into_owned()
            }
            TransformOp::Trim => v.trim().to_string(),
            TransformOp::Upper => v.to_uppercase(),
            TransformOp::Lower => v.to_lowercase(),
            TransformOp::Title => title_case(v),
        }
    }
}

/// Title case that keeps the parts of hyphenated and apostrophe names capitalised
/// ("o'brien-ngũgĩ" → "O'Brien-Ngũgĩ").
fn title_case(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut start = true;
    for c in v.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
        start = !c.is_alphanumeric();
    }
    out
}

/// A compiled rule.
#[derive(Clone, Debug)]
pub struct Rule {
    pub id: RuleId,
    /// The file the rule came from (for explanations and errors).
    pub file: String,
    pub description: String,
    pub action: Action,
    pub conditions: Vec<Condition>,
    pub ods: Option<OdsSource>,
    pub set: BTreeMap<Field, String>,
    pub transforms: Vec<Transform>,
}

impl Rule {
    pub fn matches(&self, e: &SourceEntry, groups: &GroupIndex) -> bool {
        self.conditions.iter().all(|c| c.holds(e, groups))
    }

    /// Resolve the ODS code for an entry this rule included.
    pub fn ods_code(&self, e: &SourceEntry) -> Result<OdsCode, String> {
        match &self.ods {
            None => Err(format!("rule {} assigns no ODS code", self.id)),
            Some(OdsSource::Constant(c)) => Ok(c.clone()),
            Some(OdsSource::Attribute { name, regex }) => {
                let Some(v) = e.first(name).filter(|v| !v.trim().is_empty()) else {
                    return Err(format!("{name} (the ODS code attribute) is empty"));
                };
                let picked = match regex {
                    None => v.to_string(),
                    Some(r) => {
                        let caps = r.captures(v).ok_or_else(|| {
                            format!("{name} {v:?} does not match /{}/", r.as_str())
                        })?;
                        caps.name("ods")
                            .or_else(|| caps.get(1))
                            .or_else(|| caps.get(0))
                            .map(|m| m.as_str().to_string())
                            .unwrap_or_default()
                    }
                };
                OdsCode::parse(&picked).map_err(|e| e.to_string())
            }
        }
    }
}

/// One rule's evaluation, for explanations.
#[derive(Clone, Debug)]
pub struct RuleTrace {
    pub rule: RuleId,
    pub file: String,
    pub action: Action,
    pub conditions: Vec<(String, bool)>,
    pub matched: bool,
}

/// The outcome for one entry.
#[derive(Clone, Copy, Debug)]
pub enum Decision<'r> {
    Include(&'r Rule),
    Exclude(&'r Rule),
    /// No rule matched: excluded by default.
    NoMatch,
}

impl Decision<'_> {
    pub fn rule_id(&self) -> Option<&RuleId> {
        match self {
            Decision::Include(r) | Decision::Exclude(r) => Some(&r.id),
            Decision::NoMatch => None,
        }
    }
}

/// The ordered rules of all configured filter files.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
}

impl RuleSet {
    pub fn decide(&self, e: &SourceEntry, groups: &GroupIndex) -> Decision<'_> {
        for r in &self.rules {
            if r.matches(e, groups) {
                return match r.action {
                    Action::Include => Decision::Include(r),
                    Action::Exclude => Decision::Exclude(r),
                };
            }
        }
        Decision::NoMatch
    }

    /// Evaluate every rule and every condition (for `tansync explain`).
    pub fn explain(&self, e: &SourceEntry, groups: &GroupIndex) -> (Decision<'_>, Vec<RuleTrace>) {
        let traces = self
            .rules
            .iter()
            .map(|r| {
                let conditions: Vec<(String, bool)> = r
                    .conditions
                    .iter()
                    .map(|c| (c.to_string(), c.holds(e, groups)))
                    .collect();
                RuleTrace {
                    rule: r.id.clone(),
                    file: r.file.clone(),
                    action: r.action,
                    matched: conditions.iter().all(|(_, ok)| *ok),
                    conditions,
                }
            })
            .collect();
        (self.decide(e, groups), traces)
    }

    /// Attributes the rules look at (so the source fetches them).
    pub fn attributes(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for r in &self.rules {
            for c in &r.conditions {
                if let Condition::Attribute { name, .. } = c {
                    out.insert(name.clone());
                }
            }
            if let Some(OdsSource::Attribute { name, .. }) = &r.ods {
                out.insert(name.clone());
            }
        }
        out
    }

    /// Groups whose nested membership some rule asks about.
    pub fn nested_groups(&self) -> BTreeSet<String> {
        self.rules
            .iter()
            .flat_map(|r| &r.conditions)
            .filter_map(|c| match c {
                Condition::MemberOf {
                    groups,
                    nested: true,
                } => Some(groups.iter().map(|(s, _)| s.clone())),
                _ => None,
            })
            .flatten()
            .collect()
    }

    pub fn uses_groups(&self) -> bool {
        self.rules
            .iter()
            .flat_map(|r| &r.conditions)
            .any(|c| matches!(c, Condition::MemberOf { .. }))
    }
}

#[cfg(test)]
mod tests;
