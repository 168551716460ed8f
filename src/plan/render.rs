//! The human view of a plan: summary counts, then a table per operation kind with
//! per-attribute old → new, then blocked and rejected sections with reasons, each line
//! naming the person (display name and DN, from [`People`]) beside the anchor. Colour
//! only when stdout is a terminal (the `console` crate decides, honouring NO_COLOR).
//!
//! Every value that came from AD or the directory (names, DNs, ids, attribute values,
//! details) is shown through [`Escaped`]/[`Quoted`]: no control or bidi character reaches
//! the terminal raw. The JSON plan is not rendered here and is not escaped beyond JSON.

use super::{Blocked, FieldChange, OpKind, Operation, Plan, PlannedOp};
use crate::ids::ExternalId;
use crate::model::Field;
use console::style;
use nhs_model::escape::{Escaped, Quoted};
use std::collections::HashMap;
use std::fmt::Write;

/// What the run knows about a person, beyond the anchor the plan names them by.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Known {
    pub display_name: Option<String>,
    pub dn: Option<String>,
}

/// The names the human view shows: the plan JSON names people by anchor (and rejected
/// entries by DN) only, so the engine hands the renderer the display names and DNs it
/// read, for the people the plan mentions.
#[derive(Clone, Debug, Default)]
pub struct People {
    anchors: HashMap<ExternalId, Known>,
    /// Display name of a rejected entry, by its DN.
    rejected: HashMap<String, String>,
}

impl People {
    pub fn insert(&mut self, x: ExternalId, known: Known) {
        self.anchors.insert(x, known);
    }
    pub fn insert_rejected(&mut self, dn: String, display_name: String) {
        self.rejected.insert(dn, display_name);
    }
    pub fn get(&self, x: &ExternalId) -> Option<&Known> {
        self.anchors.get(x)
    }
}

/// `Ann Lee (CN=Ann Lee,OU=Staff,DC=x)`, or whichever half is known, escaped.
fn label(name: Option<&str>, dn: Option<&str>) -> String {
    match (name.filter(|n| !n.is_empty()), dn.filter(|d| !d.is_empty())) {
        (Some(n), Some(d)) => format!("{} ({})", Escaped(n), Escaped(d)),
        (Some(n), None) => Escaped(n).to_string(),
        (None, Some(d)) => format!("({})", Escaped(d)),
        (None, None) => String::new(),
    }
}

/// Two spaces and the label, or nothing: for lines that go on after it.
fn spaced(label: String) -> String {
    if label.is_empty() {
        label
    } else {
        format!("  {label}")
    }
}

fn who(people: &People, x: &ExternalId) -> String {
    people
        .get(x)
        .map(|k| label(k.display_name.as_deref(), k.dn.as_deref()))
        .unwrap_or_default()
}

/// The snake_case code a serde enum serialises to (reason codes, match keys).
pub fn code<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn quoted(v: &Option<String>) -> String {
    match v {
        Some(s) => Quoted(s).to_string(),
        None => "(none)".into(),
    }
}

fn changes(out: &mut String, cs: &[FieldChange]) {
    let width = cs.iter().map(|c| c.field.name().len()).max().unwrap_or(0);
    for c in cs {
        let _ = writeln!(
            out,
            "      {:width$}  {} {} {}",
            c.field.name(),
            style(quoted(&c.old)).red(),
            style("→").dim(),
            style(quoted(&c.new)).green(),
        );
    }
}

fn stripped(out: &mut String, p: &PlannedOp) {
    if !p.stripped.is_empty() {
        let names: Vec<&str> = p.stripped.iter().map(|f| f.name()).collect();
        let _ = writeln!(
            out,
            "      {}",
            style(format!(
                "not sent (no agreement permits): {}",
                names.join(", ")
            ))
            .yellow()
        );
    }
}

fn heading(out: &mut String, title: &str, n: usize) {
    let _ = writeln!(out, "\n{} ({n})", style(title).bold().underlined());
}

fn op_line(out: &mut String, p: &PlannedOp, people: &People) {
    let op = &p.op;
    let xid = Escaped(op.external_id().as_str());
    let known = who(people, op.external_id());
    let name = spaced(known.clone());
    match op {
        Operation::Provision {
            ods_code,
            rule,
            attributes,
            ..
        } => {
            // The person's own name if the run has no better label (the plan alone).
            let name = spaced(if known.is_empty() {
                label(attributes.get(&Field::DisplayName), None)
            } else {
                known
            });
            let _ = writeln!(
                out,
                "  {} {:<8} {xid}{name}  {}",
                style("+").green().bold(),
                ods_code.as_str(),
                style(format!("(rule {rule})")).dim()
            );
            let width = attributes.keys().map(|f| f.name().len()).max().unwrap_or(0);
            for (f, v) in attributes {
                let _ = writeln!(
                    out,
                    "      {:width$}  {}",
                    f.name(),
                    style(Quoted(v)).green()
                );
            }
        }
        Operation::Update {
            target_id,
            ods_code,
            changes: cs,
            ..
        } => {
            let _ = writeln!(
                out,
                "  {} {:<8} {xid}{name}  account {}",
                style("~").yellow().bold(),
                ods_code.as_str(),
                Escaped(target_id.as_str())
            );
            changes(out, cs);
        }
        Operation::Remove {
            target_id,
            ods_code,
            reason,
            ..
        } => {
            let reason = code(reason);
            let _ = writeln!(
                out,
                "  {} {:<8} {xid}{name}  account {}  marked leaver: {}",
                style("-").red().bold(),
                ods_code.as_str(),
                Escaped(target_id.as_str()),
                style(reason).red()
            );
        }
        Operation::Move {
            target_id,
            from_ods_code,
            ods_code,
            changes: cs,
            ..
        } => {
            let _ = writeln!(
                out,
                "  {} {from_ods_code} → {ods_code}  {xid}{name}  account {}",
                style(">").cyan().bold(),
                Escaped(target_id.as_str())
            );
            changes(out, cs);
        }
        Operation::Restore {
            target_id,
            ods_code,
            changes: cs,
            ..
        } => {
            let _ = writeln!(
                out,
                "  {} {:<8} {xid}{name}  account {}  leaver back in scope",
                style("^").cyan().bold(),
                ods_code.as_str(),
                Escaped(target_id.as_str())
            );
            changes(out, cs);
        }
        Operation::Join {
            target_id,
            ods_code,
            matched_on,
            changes: cs,
            ..
        } => {
            let on = code(matched_on);
            let _ = writeln!(
                out,
                "  {} {:<8} {xid}{name}  joins existing account {} (matched on {on})",
                style("=").blue().bold(),
                ods_code.as_str(),
                Escaped(target_id.as_str())
            );
            changes(out, cs);
        }
    }
    stripped(out, p);
}

fn blocked_line(out: &mut String, b: &Blocked, people: &People) {
    let reason = code(&b.reason);
    let name = match who(people, &b.external_id) {
        n if n.is_empty() => match &b.operation {
            Operation::Provision { attributes, .. } => {
                label(attributes.get(&Field::DisplayName), None)
            }
            _ => n,
        },
        n => n,
    };
    let _ = writeln!(
        out,
        "  {:<9} {:<8} {}{}\n      {}: {}",
        b.kind.name(),
        b.ods_code.as_str(),
        Escaped(b.external_id.as_str()),
        spaced(name),
        style(reason).yellow(),
        Escaped(&b.detail)
    );
}

/// Render the plan for a person to read; `people` names the anchors it mentions (an
/// empty [`People`] shows anchors and DNs only).
pub fn human(plan: &Plan, people: &People) -> String {
    let mut out = String::new();
    let s = &plan.summary;
    let _ = writeln!(
        out,
        "{} generated {}  {}",
        style("tansync plan").bold(),
        Escaped(&plan.generated_at),
        style(Escaped(&plan.fingerprint)).dim()
    );
    let _ = writeln!(
        out,
        "source: {} — {} read, {} in scope, {} rejected;  target: {} — {} accounts",
        Escaped(&plan.source.kind),
        plan.source.read,
        plan.source.in_scope,
        plan.source.rejected,
        Escaped(&plan.target.kind),
        plan.target.read
    );
    let counts: Vec<String> = OpKind::ALL
        .iter()
        .map(|k| format!("{} {}", s.count(*k), k.name()))
        .collect();
    let _ = writeln!(
        out,
        "\n{} {};  {} unchanged, {} blocked, {} rejected",
        style("Summary:").bold(),
        counts.join(", "),
        s.unchanged,
        s.blocked,
        s.rejected
    );
    for (k, title) in [
        (OpKind::Provision, "Provision"),
        (OpKind::Update, "Update"),
        (OpKind::Remove, "Remove (mark leaver)"),
        (OpKind::Move, "Move (joiner)"),
        (OpKind::Restore, "Restore"),
        (OpKind::Join, "Join existing account"),
    ] {
        let ops: Vec<&PlannedOp> = plan
            .operations
            .iter()
            .filter(|p| p.op.kind() == k)
            .collect();
        if ops.is_empty() {
            continue;
        }
        heading(&mut out, title, ops.len());
        for p in ops {
            op_line(&mut out, p, people);
        }
    }
    if !plan.blocked.is_empty() {
        heading(&mut out, "Blocked", plan.blocked.len());
        for b in &plan.blocked {
            blocked_line(&mut out, b, people);
        }
    }
    if !plan.rejected.is_empty() {
        heading(&mut out, "Rejected source entries", plan.rejected.len());
        for r in &plan.rejected {
            let reason = code(&r.reason);
            let anchor = match &r.external_id {
                Some(x) => Escaped(x.as_str()).to_string(),
                None => "no readable anchor".to_string(),
            };
            let _ = writeln!(
                out,
                "  {}  {anchor}\n      {}: {}",
                label(people.rejected.get(&r.dn).map(String::as_str), Some(&r.dn)),
                style(reason).red(),
                Escaped(&r.detail)
            );
        }
    }
    if !plan.warnings.is_empty() {
        heading(
            &mut out,
            "Warnings: values dropped, the rest of the person goes ahead",
            plan.warnings.len(),
        );
        for w in &plan.warnings {
            let name = people
                .get(&w.external_id)
                .and_then(|k| k.display_name.as_deref());
            let _ = writeln!(
                out,
                "  {}  {}\n      {} {}: {}",
                label(name, Some(&w.dn)),
                Escaped(w.external_id.as_str()),
                w.field.name(),
                style(code(&w.reason)).yellow(),
                Escaped(&w.detail)
            );
        }
    }
    if plan.operations.is_empty() {
        let _ = writeln!(out, "\nNo changes: the NHS Directory matches the source.");
    } else {
        let _ = writeln!(
            out,
            "\nThis is a dry run: nothing was changed. Save it with --out plan.json to review and apply."
        );
    }
    out
}
