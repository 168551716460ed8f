//! The human view of a plan: summary counts, then a table per operation kind with
//! per-attribute old → new, then blocked and rejected sections with reasons. Colour only
//! when stdout is a terminal (the `console` crate decides, honouring NO_COLOR).

use super::{Blocked, FieldChange, OpKind, Operation, Plan, PlannedOp};
use crate::model::Field;
use console::style;
use std::fmt::Write;

/// The snake_case code a serde enum serialises to (reason codes, match keys).
fn code<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn quoted(v: &Option<String>) -> String {
    match v {
        Some(s) => format!("{s:?}"),
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

fn op_line(out: &mut String, p: &PlannedOp) {
    let op = &p.op;
    match op {
        Operation::Provision {
            external_id,
            ods_code,
            rule,
            attributes,
        } => {
            let name = attributes
                .get(&Field::DisplayName)
                .map(String::as_str)
                .unwrap_or("");
            let _ = writeln!(
                out,
                "  {} {:<8} {external_id}  {name}  {}",
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
                    style(format!("{v:?}")).green()
                );
            }
        }
        Operation::Update {
            external_id,
            target_id,
            ods_code,
            changes: cs,
            ..
        } => {
            let _ = writeln!(
                out,
                "  {} {:<8} {external_id}  account {target_id}",
                style("~").yellow().bold(),
                ods_code.as_str()
            );
            changes(out, cs);
        }
        Operation::Remove {
            external_id,
            target_id,
            ods_code,
            reason,
            ..
        } => {
            let reason = code(reason);
            let _ = writeln!(
                out,
                "  {} {:<8} {external_id}  account {target_id}  marked leaver: {}",
                style("-").red().bold(),
                ods_code.as_str(),
                style(reason).red()
            );
        }
        Operation::Move {
            external_id,
            target_id,
            from_ods_code,
            ods_code,
            changes: cs,
            ..
        } => {
            let _ = writeln!(
                out,
                "  {} {from_ods_code} → {ods_code}  {external_id}  account {target_id}",
                style(">").cyan().bold(),
            );
            changes(out, cs);
        }
        Operation::Restore {
            external_id,
            target_id,
            ods_code,
            changes: cs,
            ..
        } => {
            let _ = writeln!(
                out,
                "  {} {:<8} {external_id}  account {target_id}  leaver back in scope",
                style("^").cyan().bold(),
                ods_code.as_str()
            );
            changes(out, cs);
        }
        Operation::Join {
            external_id,
            target_id,
            ods_code,
            matched_on,
            changes: cs,
            ..
        } => {
            let on = code(matched_on);
            let _ = writeln!(
                out,
                "  {} {:<8} {external_id}  joins existing account {target_id} (matched on {on})",
                style("=").blue().bold(),
                ods_code.as_str()
            );
            changes(out, cs);
        }
    }
    stripped(out, p);
}

fn blocked_line(out: &mut String, b: &Blocked) {
    let reason = code(&b.reason);
    let _ = writeln!(
        out,
        "  {:<9} {:<8} {}  {}: {}",
        b.kind.name(),
        b.ods_code.as_str(),
        b.external_id,
        style(reason).yellow(),
        b.detail
    );
}

/// Render the plan for a person to read.
pub fn human(plan: &Plan) -> String {
    let mut out = String::new();
    let s = &plan.summary;
    let _ = writeln!(
        out,
        "{} generated {}  {}",
        style("tansync plan").bold(),
        plan.generated_at,
        style(&plan.fingerprint).dim()
    );
    let _ = writeln!(
        out,
        "source: {} — {} read, {} in scope, {} rejected;  target: {} — {} accounts",
        plan.source.kind,
        plan.source.read,
        plan.source.in_scope,
        plan.source.rejected,
        plan.target.kind,
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
            op_line(&mut out, p);
        }
    }
    if !plan.blocked.is_empty() {
        heading(&mut out, "Blocked", plan.blocked.len());
        for b in &plan.blocked {
            blocked_line(&mut out, b);
        }
    }
    if !plan.rejected.is_empty() {
        heading(&mut out, "Rejected source entries", plan.rejected.len());
        for r in &plan.rejected {
            let reason = code(&r.reason);
            let _ = writeln!(
                out,
                "  {}\n      {}: {}",
                r.dn,
                style(reason).red(),
                r.detail
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
            let _ = writeln!(
                out,
                "  {}\n      {} {}: {}",
                w.dn,
                w.field.name(),
                style(code(&w.reason)).yellow(),
                w.detail
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
