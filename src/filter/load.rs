//! Loading `filters/*.toml`: raw TOML (unknown keys rejected) compiled into [`Rule`]s.
//! Every error names the file, the rule and the cause.

use super::{Action, AttrTest, Condition, OdsSource, Rule, RuleSet, Transform, TransformOp};
use crate::ids::{NormDn, OdsCode, RuleId};
use nhs_model::Field;
use regex::Regex;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[error("{file}: {place}{problem}")]
pub struct FilterError {
    pub file: String,
    /// `rule "id" (#n): ` or empty for file-level problems.
    pub place: String,
    pub problem: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    rule: Vec<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum RawAction {
    Include,
    Exclude,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    action: RawAction,
    #[serde(default)]
    description: String,
    #[serde(default)]
    under: Vec<String>,
    #[serde(default)]
    dn_regex: Vec<String>,
    #[serde(default)]
    member_of: Vec<String>,
    #[serde(default)]
    member_of_nested: Vec<String>,
    enabled: Option<bool>,
    #[serde(default)]
    attributes: Vec<RawAttr>,
    ods: Option<RawOds>,
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    transforms: Vec<RawTransform>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttr {
    name: String,
    regex: Option<String>,
    equals: Option<String>,
    present: Option<bool>,
    absent: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOds {
    constant: Option<String>,
    attribute: Option<String>,
    regex: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransform {
    field: String,
    replace: Option<RawReplace>,
    #[serde(default)]
    trim: bool,
    case: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplace {
    regex: String,
    with: String,
}

/// Load rule files in order; rules keep file order, then in-file order.
pub fn load_files(paths: &[impl AsRef<Path>]) -> Result<RuleSet, FilterError> {
    let mut set = RuleSet::default();
    for p in paths {
        let p = p.as_ref();
        let file = p.display().to_string();
        let text = std::fs::read_to_string(p).map_err(|e| FilterError {
            file: file.clone(),
            place: String::new(),
            problem: format!("cannot read: {e}"),
        })?;
        set.rules.extend(parse_rules(&file, &text)?.rules);
    }
    let mut seen = BTreeSet::new();
    for r in &set.rules {
        if !seen.insert(r.id.clone()) {
            return Err(FilterError {
                file: r.file.clone(),
                place: format!("rule {:?}: ", r.id.as_str()),
                problem:
                    "the same rule id is used twice; ids must be unique across all filter files"
                        .into(),
            });
        }
    }
    Ok(set)
}

/// Parse one rule file's text. `file` is used in errors and traces.
pub fn parse_rules(file: &str, text: &str) -> Result<RuleSet, FilterError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| FilterError {
        file: file.to_string(),
        place: String::new(),
        problem: crate::toml_error::describe(text, &e),
    })?;
    let mut rules = Vec::with_capacity(raw.rule.len());
    for (i, v) in raw.rule.into_iter().enumerate() {
        let id = v
            .get("id")
            .and_then(|x| x.as_str())
            .map(|s| format!("rule {s:?} (#{}): ", i + 1))
            .unwrap_or_else(|| format!("rule #{}: ", i + 1));
        let err = |problem: String| FilterError {
            file: file.to_string(),
            place: id.clone(),
            problem,
        };
        let rr = RawRule::deserialize(v).map_err(|e| err(e.message().to_string()))?;
        rules.push(compile(file, rr).map_err(err)?);
    }
    Ok(RuleSet { rules })
}

fn regex(what: &str, pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| format!("{what}: invalid regex {pattern:?}: {e}"))
}

fn field(name: &str, key: &str) -> Result<Field, String> {
    Field::parse(name).ok_or_else(|| {
        format!(
            "{key}: unknown field {name:?}; expected one of {}",
            Field::ALL.map(|f| f.name()).join(", ")
        )
    })
}

fn compile(file: &str, r: RawRule) -> Result<Rule, String> {
    let id = RuleId::parse(&r.id).map_err(|e| format!("id: {e}"))?;
    let mut conditions = Vec::new();
    if !r.under.is_empty() {
        conditions.push(Condition::Under(
            r.under
                .iter()
                .map(|s| (s.clone(), NormDn::new(s)))
                .collect(),
        ));
    }
    if !r.dn_regex.is_empty() {
        conditions.push(Condition::DnRegex(
            r.dn_regex
                .iter()
                .map(|p| regex("dn_regex", p))
                .collect::<Result<_, _>>()?,
        ));
    }
    for (list, nested) in [(&r.member_of, false), (&r.member_of_nested, true)] {
        if !list.is_empty() {
            conditions.push(Condition::MemberOf {
                groups: list.iter().map(|s| (s.clone(), NormDn::new(s))).collect(),
                nested,
            });
        }
    }
    if let Some(en) = r.enabled {
        conditions.push(Condition::Enabled(en));
    }
    for (i, a) in r.attributes.into_iter().enumerate() {
        let key = format!("attributes[{i}] ({})", a.name);
        if a.name.trim().is_empty() {
            return Err(format!("{key}: name is empty"));
        }
        let tests = [
            a.regex.is_some(),
            a.equals.is_some(),
            a.present.is_some(),
            a.absent.is_some(),
        ];
        if tests.iter().filter(|t| **t).count() != 1 {
            return Err(format!(
                "{key}: give exactly one of regex, equals, present, absent"
            ));
        }
        let test = if let Some(p) = a.regex {
            AttrTest::Regex(regex(&key, &p)?)
        } else if let Some(v) = a.equals {
            AttrTest::Equals(v.to_lowercase())
        } else if let Some(p) = a.present {
            if p {
                AttrTest::Present
            } else {
                AttrTest::Absent
            }
        } else if a.absent == Some(false) {
            AttrTest::Present
        } else {
            AttrTest::Absent
        };
        conditions.push(Condition::Attribute { name: a.name, test });
    }
    let action = match r.action {
        RawAction::Include => Action::Include,
        RawAction::Exclude => Action::Exclude,
    };
    let ods = match r.ods {
        None => None,
        Some(o) => Some(match (o.constant, o.attribute) {
            (Some(c), None) => {
                if o.regex.is_some() {
                    return Err("ods: regex applies only with attribute".into());
                }
                OdsSource::Constant(OdsCode::parse(&c).map_err(|e| format!("ods.constant: {e}"))?)
            }
            (None, Some(a)) => OdsSource::Attribute {
                name: a,
                regex: o.regex.map(|p| regex("ods.regex", &p)).transpose()?,
            },
            _ => return Err("ods: give exactly one of constant or attribute".into()),
        }),
    };
    match (action, &ods) {
        (Action::Include, None) => {
            return Err("an include rule must assign the ODS organisation (ods = { constant = \"…\" } or ods = { attribute = \"…\" })".into());
        }
        (Action::Exclude, Some(_)) => return Err("an exclude rule cannot assign ods".into()),
        _ => {}
    }
    if action == Action::Exclude && (!r.set.is_empty() || !r.transforms.is_empty()) {
        return Err("an exclude rule cannot set or transform attributes".into());
    }
    let mut set = BTreeMap::new();
    for (k, v) in r.set {
        set.insert(field(&k, "set")?, v);
    }
    let mut transforms = Vec::new();
    for (i, t) in r.transforms.into_iter().enumerate() {
        let key = format!("transforms[{i}]");
        let f = field(&t.field, &key)?;
        let mut ops = Vec::new();
        if let Some(rep) = t.replace {
            ops.push(TransformOp::Replace {
                regex: regex(&format!("{key}.replace"), &rep.regex)?,
                with: rep.with,
            });
        }
        if t.trim {
            ops.push(TransformOp::Trim);
        }
        if let Some(c) = t.case {
            ops.push(match c.as_str() {
                "upper" => TransformOp::Upper,
                "lower" => TransformOp::Lower,
                "title" => TransformOp::Title,
                other => {
                    return Err(format!(
                        "{key}.case: {other:?} is not one of upper, lower, title"
                    ));
                }
            });
        }
        if ops.len() != 1 {
            return Err(format!(
                "{key}: give exactly one of replace, trim, case (use several transforms to chain)"
            ));
        }
        transforms.extend(ops.into_iter().map(|op| Transform { field: f, op }));
    }
    if conditions.is_empty() && action == Action::Include {
        tracing::debug!(rule = %id, "include rule with no conditions matches every entry");
    }
    Ok(Rule {
        id,
        file: file.to_string(),
        description: r.description,
        action,
        conditions,
        ods,
        set,
        transforms,
    })
}
