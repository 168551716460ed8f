//! What the command line prints for each engine report (the plan's own human view is
//! [`crate::plan::render`]).

use crate::config::Config;
use crate::engine::Outcome;
use crate::engine::apply::{ApplyReport, RunStatus};
use crate::engine::check::{CheckReport, Mark};
use crate::engine::explain::Explanation;
use crate::engine::history::{JournalEntry, RunSummary};
use crate::filter::Action;
use anyhow::Result;
use console::style;

/// `apply`/`sync`: the report on stderr (notes) and stdout (the outcome); the exit code.
pub fn apply(r: &ApplyReport) -> u8 {
    if r.reconciled > 0 {
        eprintln!(
            "reconciled {} operation(s) left unfinished by an interrupted run",
            r.reconciled
        );
    }
    if r.mass_held > 0 {
        if r.mass_approved {
            eprintln!(
                "applying {} removal(s) held by the mass-change guard, as approved for {}",
                r.mass_held, r.fingerprint
            );
        } else {
            eprintln!(
                "{} removal(s) held by the mass-change guard are not applied; review them and pass --approve-removals {}",
                r.mass_held, r.fingerprint
            );
        }
    }
    for q in &r.quarantined {
        eprintln!(
            "{} {}: quarantined after {} failed runs (last: {}); fix it and clear it with `tansync quarantine clear {}`",
            style("skipped").yellow(),
            q.external_id,
            q.failures,
            q.last_error,
            q.external_id
        );
    }
    let p = &r.push;
    println!(
        "{} {} applied, {} failed, {} not sent (plan {})",
        style("apply:").bold(),
        p.applied(),
        p.failed(),
        p.not_sent(),
        r.fingerprint
    );
    for i in &p.items {
        if let Outcome::Failed { error } = &i.outcome {
            println!(
                "  {} {} {} {}: {error}",
                style("failed").red(),
                i.kind,
                i.ods_code,
                i.external_id
            );
        }
    }
    if let Some(why) = &p.stopped {
        println!("{} {why}", style("stopped:").red().bold());
    }
    if r.status == RunStatus::Interrupted {
        println!(
            "{} shutdown requested: operations not yet sent were not sent; run {} is recorded as interrupted",
            style("interrupted:").red().bold(),
            r.run
        );
    }
    if let Some(w) = &r.write_back {
        println!(
            "{} {} of {} address(es) written to AD attribute {}",
            style("write-back:").bold(),
            w.written(),
            w.items.len(),
            w.attribute
        );
        for i in &w.items {
            let from = if i.planned { "planned" } else { "new account" };
            match &i.result {
                Some(Ok(())) => println!(
                    "  {} {} ({from}): {} → {}",
                    style("wrote").green(),
                    i.write.dn,
                    i.write.old.as_deref().unwrap_or("(none)"),
                    i.write.new
                ),
                Some(Err(e)) => {
                    println!("  {} {}: {e}", style("failed").red(), i.write.external_id)
                }
                None => println!(
                    "  {} {}",
                    style("not written").yellow(),
                    i.write.external_id
                ),
            }
        }
    }
    if r.succeeded() { 0 } else { 1 }
}

/// `check`: one line per finding; exit 1 if any is a problem.
pub fn check(r: &CheckReport) -> u8 {
    for f in &r.findings {
        match f.mark {
            Mark::Ok => println!("{} {}: {}", style("✓").green(), f.label, f.text),
            Mark::Problem => println!("{} {}", style("✗").red(), f.text),
            Mark::Detail => println!("  {}", f.text),
        }
    }
    let n = r.problems();
    if n > 0 {
        println!("{} {n} problem(s) found", style("✗").red());
        return 1;
    }
    0
}

/// `history`: the runs, newest first.
pub fn runs(runs: &[RunSummary], json: bool) -> Result<u8> {
    if json {
        println!("{}", serde_json::to_string_pretty(runs)?);
        return Ok(0);
    }
    for r in runs {
        let ops = r
            .operations
            .iter()
            .map(|(state, n)| format!("{n} {state}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "run {:>4}  {}  {:<5} {:<11} {}  {}",
            r.id,
            r.started_at,
            r.mode,
            r.status,
            r.fingerprint,
            if ops.is_empty() {
                "no operations".into()
            } else {
                ops
            }
        );
    }
    if runs.is_empty() {
        println!("no runs yet");
    }
    Ok(0)
}

/// `history --run N`: one run's journalled operations.
pub fn journal(id: i64, ops: &[JournalEntry], json: bool) -> Result<u8> {
    if json {
        println!("{}", serde_json::to_string_pretty(ops)?);
        return Ok(0);
    }
    for o in ops {
        println!(
            "{:<9} {:<6} {} {:<9} tries {}{}",
            o.kind,
            o.ods_code,
            o.external_id,
            o.state,
            o.attempts,
            o.error
                .as_deref()
                .map(|e| format!("  {e}"))
                .unwrap_or_default()
        );
    }
    if ops.is_empty() {
        println!("run {id}: no operations recorded");
    }
    Ok(0)
}

/// `explain`: the entry, every rule, the mapping, and the plan's entries for the person.
pub fn explain(cfg: &Config, x: &Explanation, who: &str) -> Result<()> {
    let c = &x.captured;
    let e = &c.entry;
    let b = |s: &str| style(s.to_string()).bold();
    println!("{} {}", b("Source entry"), e.dn);
    match &e.anchor {
        Ok(x) => println!("  anchor (external id): {x}"),
        Err(why) => println!("  anchor: {}", style(why).red()),
    }
    println!("  account enabled: {}", e.enabled);
    for (k, vs) in &e.attrs {
        for v in vs {
            println!("  {k}: {v}");
        }
    }
    println!("\n{}", b("Filter rules, in order (first match decides)"));
    for t in &c.traces {
        let mark = if t.matched {
            style("✓").green()
        } else {
            style("✗").dim()
        };
        println!("  {mark} rule {} ({:?}, {})", t.rule, t.action, t.file);
        if t.conditions.is_empty() {
            println!("      (no conditions: matches everything)");
        }
        for (cond, held) in &t.conditions {
            println!(
                "      {} {cond}",
                if *held {
                    style("✓").green()
                } else {
                    style("✗").red()
                }
            );
        }
    }
    match &c.decided_by {
        Some((rule, Action::Include)) => println!("  → included by rule {rule}"),
        Some((rule, Action::Exclude)) => {
            println!("  → excluded by rule {rule}");
            return explain_plan(x, who);
        }
        None => {
            println!("  → excluded: no rule matched (the default is exclude)");
            return explain_plan(x, who);
        }
    }
    println!("\n{}", b("Mapping to the NHS Directory model"));
    match &c.ods_code {
        Some(Ok(o)) => println!("  ods_code: {o}"),
        Some(Err(why)) => println!("  ods_code: {}", style(why).red()),
        None => {}
    }
    match &c.mapped {
        Some(Ok(p)) => {
            for f in crate::model::Field::ALL {
                let src = &cfg.mapping.fields[&f];
                match (c.raw.get(&f), p.get(f)) {
                    (None, None) => println!("  {f}: (none; source {src} empty)"),
                    (r, v) => println!(
                        "  {f}: {:?} → {:?}{}",
                        r.map(String::as_str).unwrap_or(""),
                        v.unwrap_or(""),
                        if f.is_synchronised() {
                            ""
                        } else {
                            "  (used for eligibility and matching only)"
                        }
                    ),
                }
            }
            println!("  validation: {}", style("passed").green());
            for w in &p.warnings {
                println!(
                    "  {} {} {:?}: {}",
                    style("dropped").yellow(),
                    w.field,
                    w.reason,
                    w.detail
                );
            }
        }
        Some(Err(r)) => {
            for (f, v) in &c.raw {
                println!("  {f}: {v:?}");
            }
            println!(
                "  validation: {} {:?}: {}",
                style("rejected").red(),
                r.reason,
                r.detail
            );
        }
        None => {}
    }
    explain_plan(x, who)
}

fn explain_plan(x: &Explanation, who: &str) -> Result<()> {
    println!("\n{}", style("Gate and plan").bold());
    if x.captured.entry.anchor.is_err() {
        println!("  no anchor, so no operation can be planned");
        return Ok(());
    }
    for p in &x.operations {
        println!(
            "  planned operation:\n{}",
            indent(&serde_json::to_string_pretty(p)?)
        );
    }
    for bl in &x.blocked {
        println!(
            "  {} {} ({}): {}",
            style("blocked").yellow(),
            bl.kind,
            serde_json::to_value(bl.reason)?
                .as_str()
                .unwrap_or_default(),
            bl.detail
        );
    }
    for r in &x.rejected {
        println!("  {} {:?}: {}", style("rejected").red(), r.reason, r.detail);
    }
    for w in &x.write_back {
        println!(
            "  write-back: {} := {} (now {})",
            w.attribute,
            w.new,
            w.old.as_deref().unwrap_or("empty")
        );
    }
    if x.operations.is_empty()
        && x.blocked.is_empty()
        && x.rejected.is_empty()
        && x.write_back.is_empty()
    {
        println!(
            "  no operation for {who}: the directory already matches (or there is nothing to do)"
        );
    }
    Ok(())
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
