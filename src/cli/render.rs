//! What the command line prints for each engine report (the plan's own human view is
//! [`crate::plan::render`]). Each renderer writes to the streams it is given, so what a
//! person sees can be tested byte for byte.
//!
//! Every value that came from AD or the directory — DNs, names, attribute values, ids,
//! error text the directory or the source sent — goes through [`Escaped`]/[`Quoted`]:
//! no control, escape sequence or bidi character reaches the terminal raw. Codes are
//! printed as the plan contract spells them (`missing_mandatory`), never as Rust names.
//! JSON output (`--format json`) is serde's, unescaped beyond JSON.

use crate::config::Config;
use crate::engine::Outcome;
use crate::engine::apply::{ApplyReport, RunStatus};
use crate::engine::audit::AuditVerification;
use crate::engine::check::{CheckReport, Mark};
use crate::engine::explain::Explanation;
use crate::engine::history::{JournalEntry, RunSummary};
use crate::filter::Action;
use crate::plan::render::code;
use anyhow::Result;
use console::style;
use nhs_model::escape::{Escaped, Quoted};
use std::io::Write;

fn action(a: Action) -> &'static str {
    match a {
        Action::Include => "include",
        Action::Exclude => "exclude",
    }
}

/// `apply`/`sync`: the report on `err` (notes) and `out` (the outcome); the exit code.
pub fn apply(r: &ApplyReport, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8> {
    if r.reconciled > 0 {
        writeln!(
            err,
            "reconciled {} operation(s) left unfinished by an interrupted run",
            r.reconciled
        )?;
    }
    let fp = Escaped(&r.fingerprint);
    if r.mass_held > 0 {
        if r.mass_approved {
            writeln!(
                err,
                "applying {} removal(s) held by the mass-change guard, as approved for {fp}",
                r.mass_held
            )?;
        } else {
            writeln!(
                err,
                "{} removal(s) held by the mass-change guard are not applied; review them and pass --approve-removals {fp}",
                r.mass_held
            )?;
        }
    }
    for q in &r.quarantined {
        let x = Escaped(&q.external_id);
        writeln!(
            err,
            "{} {x}: quarantined after {} failed runs (last: {}); fix it and clear it with `tansync quarantine clear {x}`",
            style("skipped").yellow(),
            q.failures,
            Escaped(&q.last_error),
        )?;
    }
    let p = &r.push;
    writeln!(
        out,
        "{} {} applied, {} failed, {} not sent (plan {fp})",
        style("apply:").bold(),
        p.applied(),
        p.failed(),
        p.not_sent(),
    )?;
    for i in &p.items {
        if let Outcome::Failed { error } = &i.outcome {
            writeln!(
                out,
                "  {} {} {} {}: {}",
                style("failed").red(),
                i.kind,
                Escaped(&i.ods_code),
                Escaped(&i.external_id),
                Escaped(error)
            )?;
        }
    }
    if let Some(why) = &p.stopped {
        writeln!(out, "{} {}", style("stopped:").red().bold(), Escaped(why))?;
    }
    if r.status == RunStatus::Interrupted {
        writeln!(
            out,
            "{} shutdown requested: operations not yet sent were not sent; run {} is recorded as interrupted",
            style("interrupted:").red().bold(),
            r.run
        )?;
    }
    if let Some(w) = &r.write_back {
        writeln!(
            out,
            "{} {} of {} address(es) written to AD attribute {}",
            style("write-back:").bold(),
            w.written(),
            w.items.len(),
            Escaped(&w.attribute)
        )?;
        for i in &w.items {
            let from = if i.planned { "planned" } else { "new account" };
            let x = Escaped(i.write.external_id.as_str());
            match &i.result {
                Some(Ok(())) => writeln!(
                    out,
                    "  {} {} ({from}): {} → {}",
                    style("wrote").green(),
                    Escaped(&i.write.dn),
                    Escaped(i.write.old.as_deref().unwrap_or("(none)")),
                    Escaped(&i.write.new)
                )?,
                Some(Err(e)) => writeln!(out, "  {} {x}: {}", style("failed").red(), Escaped(e))?,
                None => writeln!(out, "  {} {x}", style("not written").yellow())?,
            }
        }
    }
    writeln!(
        out,
        "{} head {} (record it elsewhere; `tansync audit verify` checks the chain)",
        style("audit:").bold(),
        Escaped(&r.audit_head.to_string())
    )?;
    Ok(if r.succeeded() { 0 } else { 1 })
}

/// `check`: one line per finding; exit 1 if any is a problem.
pub fn check(r: &CheckReport, out: &mut dyn Write) -> Result<u8> {
    for f in &r.findings {
        let text = Escaped(&f.text);
        match f.mark {
            Mark::Ok => writeln!(out, "{} {}: {text}", style("✓").green(), Escaped(&f.label))?,
            Mark::Problem if f.label.is_empty() => writeln!(out, "{} {text}", style("✗").red())?,
            Mark::Problem => writeln!(out, "{} {}: {text}", style("✗").red(), Escaped(&f.label))?,
            Mark::Detail => writeln!(out, "  {text}")?,
        }
    }
    let n = r.problems();
    if n > 0 {
        writeln!(out, "{} {n} problem(s) found", style("✗").red())?;
        return Ok(1);
    }
    Ok(0)
}

/// `history`: the runs, newest first.
pub fn runs(runs: &[RunSummary], json: bool, out: &mut dyn Write) -> Result<u8> {
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(runs)?)?;
        return Ok(0);
    }
    for r in runs {
        let ops = r
            .operations
            .iter()
            .map(|(state, n)| format!("{n} {}", Escaped(state)))
            .collect::<Vec<_>>()
            .join(", ");
        writeln!(
            out,
            "run {:>4}  {}  {:<5} {:<11} {}  {}",
            r.id,
            Escaped(&r.started_at),
            Escaped(&r.mode),
            Escaped(&r.status),
            Escaped(&r.fingerprint),
            if ops.is_empty() {
                "no operations".into()
            } else {
                ops
            }
        )?;
    }
    if runs.is_empty() {
        writeln!(out, "no runs yet")?;
    }
    Ok(0)
}

/// `history --run N`: one run's journalled operations.
/// `tansync audit verify`: exit 0 when the chain is intact, 1 naming the first bad record.
pub fn audit_verify(v: &AuditVerification, json: bool, out: &mut dyn Write) -> Result<u8> {
    let code = if v.broken.is_some() { 1 } else { 0 };
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(v)?)?;
        return Ok(code);
    }
    match &v.broken {
        None => writeln!(
            out,
            "audit trail intact: {} record(s) checked, {} run head(s); head {}",
            v.records,
            v.run_heads,
            Escaped(&v.head.to_string())
        )?,
        Some(b) => writeln!(
            out,
            "audit trail broken at record {}: {}\n({} record(s) before it are intact; last good head {})",
            b.seq,
            Escaped(&b.problem),
            v.records,
            Escaped(&v.head.to_string())
        )?,
    }
    Ok(code)
}

pub fn journal(id: i64, ops: &[JournalEntry], json: bool, out: &mut dyn Write) -> Result<u8> {
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(ops)?)?;
        return Ok(0);
    }
    for o in ops {
        writeln!(
            out,
            "{:<9} {:<6} {} {:<9} tries {}{}",
            Escaped(&o.kind),
            Escaped(&o.ods_code),
            Escaped(&o.external_id),
            Escaped(&o.state),
            o.attempts,
            o.error
                .as_deref()
                .map(|e| format!("  {}", Escaped(e)))
                .unwrap_or_default()
        )?;
    }
    if ops.is_empty() {
        writeln!(out, "run {id}: no operations recorded")?;
    }
    Ok(0)
}

/// `explain`: the entry, every rule, the mapping, and the plan's entries for the person.
pub fn explain(cfg: &Config, x: &Explanation, who: &str, out: &mut dyn Write) -> Result<()> {
    let c = &x.captured;
    let e = &c.entry;
    let b = |s: &str| style(s.to_string()).bold();
    writeln!(out, "{} {}", b("Source entry"), Escaped(&e.dn))?;
    match &e.anchor {
        Ok(x) => writeln!(out, "  anchor (external id): {}", Escaped(x.as_str()))?,
        Err(why) => writeln!(out, "  anchor: {}", style(Escaped(why)).red())?,
    }
    writeln!(out, "  account enabled: {}", e.enabled)?;
    for (k, vs) in &e.attrs {
        for v in vs {
            writeln!(out, "  {}: {}", Escaped(k), Escaped(v))?;
        }
    }
    writeln!(
        out,
        "\n{}",
        b("Filter rules, in order (first match decides)")
    )?;
    for t in &c.traces {
        let mark = if t.matched {
            style("✓").green()
        } else {
            style("✗").dim()
        };
        writeln!(
            out,
            "  {mark} rule {} ({}, {})",
            Escaped(t.rule.as_str()),
            action(t.action),
            Escaped(&t.file)
        )?;
        if t.conditions.is_empty() {
            writeln!(out, "      (no conditions: matches everything)")?;
        }
        for (cond, held) in &t.conditions {
            writeln!(
                out,
                "      {} {}",
                if *held {
                    style("✓").green()
                } else {
                    style("✗").red()
                },
                Escaped(cond)
            )?;
        }
    }
    match &c.decided_by {
        Some((rule, Action::Include)) => {
            writeln!(out, "  → included by rule {}", Escaped(rule.as_str()))?
        }
        Some((rule, Action::Exclude)) => {
            writeln!(out, "  → excluded by rule {}", Escaped(rule.as_str()))?;
            return explain_plan(x, who, out);
        }
        None => {
            writeln!(
                out,
                "  → excluded: no rule matched (the default is exclude)"
            )?;
            return explain_plan(x, who, out);
        }
    }
    writeln!(out, "\n{}", b("Mapping to the NHS Directory model"))?;
    match &c.ods_code {
        Some(Ok(o)) => writeln!(out, "  ods_code: {}", Escaped(o.as_str()))?,
        Some(Err(why)) => writeln!(out, "  ods_code: {}", style(Escaped(why)).red())?,
        None => {}
    }
    match &c.mapped {
        Some(Ok(p)) => {
            for f in crate::model::Field::ALL {
                let src = cfg.mapping.fields.get(&f).map(String::as_str).unwrap_or("");
                match (c.raw.get(&f), p.get(f)) {
                    (None, None) => writeln!(out, "  {f}: (none; source {} empty)", Escaped(src))?,
                    (r, v) => writeln!(
                        out,
                        "  {f}: {} → {}{}",
                        Quoted(r.map(String::as_str).unwrap_or("")),
                        Quoted(v.unwrap_or("")),
                        if f.is_synchronised() {
                            ""
                        } else {
                            "  (used for eligibility and matching only)"
                        }
                    )?,
                }
            }
            writeln!(out, "  validation: {}", style("passed").green())?;
            for w in &p.warnings {
                writeln!(
                    out,
                    "  {} {} {}: {}",
                    style("dropped").yellow(),
                    w.field,
                    code(&w.reason),
                    Escaped(&w.detail)
                )?;
            }
        }
        Some(Err(r)) => {
            for (f, v) in &c.raw {
                writeln!(out, "  {f}: {}", Quoted(v))?;
            }
            writeln!(
                out,
                "  validation: {} {}: {}",
                style("rejected").red(),
                code(&r.reason),
                Escaped(&r.detail)
            )?;
        }
        None => {}
    }
    explain_plan(x, who, out)
}

fn explain_plan(x: &Explanation, who: &str, out: &mut dyn Write) -> Result<()> {
    writeln!(out, "\n{}", style("Gate and plan").bold())?;
    if x.captured.entry.anchor.is_err() {
        writeln!(out, "  no anchor, so no operation can be planned")?;
        return Ok(());
    }
    for p in &x.operations {
        // serde's JSON escapes only C0 controls; this is a person's view, so each line
        // (JSON strings hold no raw newline) is escaped as any other value.
        writeln!(out, "  planned operation:")?;
        for l in serde_json::to_string_pretty(p)?.lines() {
            writeln!(out, "    {}", Escaped(l))?;
        }
    }
    for bl in &x.blocked {
        writeln!(
            out,
            "  {} {} ({}): {}",
            style("blocked").yellow(),
            bl.kind,
            code(&bl.reason),
            Escaped(&bl.detail)
        )?;
    }
    for r in &x.rejected {
        writeln!(
            out,
            "  {} {}: {}",
            style("rejected").red(),
            code(&r.reason),
            Escaped(&r.detail)
        )?;
    }
    for w in &x.write_back {
        writeln!(
            out,
            "  write-back: {} := {} (now {})",
            Escaped(&w.attribute),
            Escaped(&w.new),
            Escaped(w.old.as_deref().unwrap_or("empty"))
        )?;
    }
    if x.operations.is_empty()
        && x.blocked.is_empty()
        && x.rejected.is_empty()
        && x.write_back.is_empty()
    {
        writeln!(
            out,
            "  no operation for {}: the directory already matches (or there is nothing to do)",
            Escaped(who)
        )?;
    }
    Ok(())
}

pub mod portal;

#[cfg(test)]
mod tests;

/// `tansync status`.
pub fn status(st: &crate::daemon::status::Status, json: bool, out: &mut dyn Write) -> Result<u8> {
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(st)?)?;
        return Ok(0);
    }
    writeln!(out, "mode: {}", st.mode)?;
    match &st.watermark {
        Some(w) => writeln!(
            out,
            "watermark: {} {} on {} (saved by cycle {} at {}, {})",
            Escaped(&w.kind),
            Escaped(&w.position),
            Escaped(&w.server),
            w.cycle,
            Escaped(&w.saved_at),
            Escaped(&w.mode)
        )?,
        None => writeln!(out, "watermark: none (the next cycle is full)")?,
    }
    match &st.held_removals {
        Some(h) => writeln!(
            out,
            "held removals: {} since {} ({}); approve with: tansync approve-removals {}",
            h.count,
            Escaped(&h.since),
            if h.approved_at.is_some() {
                "approved"
            } else {
                "not approved"
            },
            Escaped(&h.digest)
        )?,
        None => writeln!(out, "held removals: none")?,
    }
    writeln!(out, "quarantined: {}", st.quarantined.len())?;
    for (x, n) in &st.quarantined {
        writeln!(out, "  {} ({n} failures)", Escaped(x))?;
    }
    if let Some(p) = &st.portal {
        let settled = p.batches.iter().filter(|b| b.settled_at.is_some()).count();
        writeln!(
            out,
            "portal: batch in flight: {}; {settled} settled; {} row(s) awaiting a report, {} unsettled; worklist: {} open (`tansync portal status` for details)",
            p.in_flight.map_or("none".to_string(), |b| b.to_string()),
            p.awaiting_report,
            p.unsettled.len(),
            p.worklist.len()
        )?;
        if let Some(c) = p.conflicts.first() {
            writeln!(
                out,
                "portal: DO NOT UPLOAD batch {}: an older batch may already have created {} of its mailboxes (`tansync portal status`)",
                c.batch,
                p.conflicts.len()
            )?;
        }
    }
    writeln!(out, "last cycles:")?;
    for c in &st.cycles {
        writeln!(
            out,
            "  cycle {:>4}  {}  {:<5} {:<7} {:<11} {} operations, {} failed, {} blocked{}",
            c.id,
            Escaped(&c.started_at),
            Escaped(&c.kind),
            Escaped(&c.mode),
            Escaped(&c.result),
            c.operations,
            c.failed,
            c.blocked,
            c.note
                .as_deref()
                .map(|n| format!(" ({})", Escaped(n)))
                .unwrap_or_default()
        )?;
    }
    Ok(0)
}
