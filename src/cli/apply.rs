//! `tansync apply` and `tansync sync`: apply a reviewed plan exactly (refusing it when the
//! state it started from has moved on), or plan and apply in one.

use crate::config::Config;
use crate::pipeline;
use crate::plan::{BlockReason, Plan, PlannedOp};
use crate::push::{self, Outcome, writeback};
use crate::source::Source;
use crate::state::{History, StateStore, op_state};
use crate::target::Target;
use crate::target::scim::ScimWriter;
use anyhow::{Context, Result, bail};
use console::style;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

/// Settle what an interrupted earlier run left in flight. A create whose fate is unknown
/// is looked up by anchor; everything else is re-derived by the fresh plan from the
/// directory's actual state, so nothing is lost and nothing sent twice.
async fn reconcile(store: &StateStore, writer: &ScimWriter) -> Result<usize> {
    store.close_abandoned_runs(None)?;
    let left = store.unfinished()?;
    for u in &left {
        if u.kind == "provision" && u.state == op_state::SENDING {
            let xid = crate::ids::ExternalId::parse(&u.external_id)?;
            match writer.find_by_external_id(&xid).await {
                Ok(Some(found)) => store.done(u.id, found.id.as_deref())?,
                Ok(None) => store.set_state(
                    u.id,
                    op_state::NOT_SENT,
                    Some("reconciled: not in the directory"),
                )?,
                Err(e) => bail!(
                    "cannot reconcile the interrupted create of {}: {e}",
                    u.external_id
                ),
            }
        } else {
            store.set_state(
                u.id,
                "reconciled",
                Some("interrupted; re-planned from the directory's state"),
            )?;
        }
    }
    Ok(left.len())
}

fn progress(len: usize) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if len == 0 || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::new(len as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} operations ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(pb)
}

/// Apply `plan_file` (or a fresh plan when `None`). Exit code: 0 all applied, 1 otherwise.
pub async fn apply(
    cfg: &Config,
    plan_file: Option<&Path>,
    approve_removals: Option<&str>,
    now: OffsetDateTime,
) -> Result<u8> {
    let Some(settings) = &cfg.scim else {
        bail!(
            "applying needs a SCIM target: set [target] kind = \"scim\" (a snapshot can only be planned from)"
        );
    };
    let writer = ScimWriter::new(settings).map_err(|e| anyhow::anyhow!("SCIM client: {e}"))?;
    let store = StateStore::open(&cfg.state_dir)?;
    let reconciled = reconcile(&store, &writer).await?;
    if reconciled > 0 {
        eprintln!("reconciled {reconciled} operation(s) left unfinished by an interrupted run");
    }

    let fresh_run = pipeline::plan(cfg, &cfg.target, now, None, true).await?;
    let fresh = fresh_run.plan;
    let collected = fresh_run.collected;
    let plan: Plan = match plan_file {
        None => fresh,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the plan {}", path.display()))?;
            let saved: Plan = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a tansync plan", path.display()))?;
            if saved.format != crate::plan::FORMAT {
                bail!(
                    "{}: format {:?} is not {}",
                    path.display(),
                    saved.format,
                    crate::plan::FORMAT
                );
            }
            if saved.fingerprint != fresh.fingerprint {
                bail!(
                    "the plan {} is stale: the source or the directory has changed since it was made ({} then, {} now); make and review a new plan",
                    path.display(),
                    saved.fingerprint,
                    fresh.fingerprint
                );
            }
            if saved.operations != fresh.operations || saved.blocked != fresh.blocked {
                bail!(
                    "the plan {} no longer matches what the configuration decides (rules, agreements or limits changed); make and review a new plan",
                    path.display()
                );
            }
            saved
        }
    };

    let mut ops: Vec<PlannedOp> = plan.operations.clone();
    let mass: Vec<PlannedOp> = plan
        .blocked
        .iter()
        .filter(|b| b.reason == BlockReason::MassChangeThreshold)
        .map(|b| PlannedOp {
            op: b.operation.clone(),
            stripped: vec![],
        })
        .collect();
    match approve_removals {
        Some(fp) if fp == plan.fingerprint => {
            eprintln!(
                "applying {} removal(s) held by the mass-change guard, as approved for {fp}",
                mass.len()
            );
            ops.extend(mass);
        }
        Some(fp) => bail!(
            "--approve-removals names plan {fp}, but this plan is {}: approvals hold for one plan only",
            plan.fingerprint
        ),
        None if !mass.is_empty() => eprintln!(
            "{} removal(s) held by the mass-change guard are not applied; review them and pass --approve-removals {}",
            mass.len(),
            plan.fingerprint
        ),
        None => {}
    }

    let quarantined: BTreeSet<String> = store
        .quarantined(cfg.push.quarantine_after)?
        .into_iter()
        .map(|(x, n, err)| {
            eprintln!(
                "{} {x}: quarantined after {n} failed runs (last: {err}); fix it and clear it with `tansync quarantine clear {x}`",
                style("skipped").yellow()
            );
            x
        })
        .collect();
    ops.retain(|p| !quarantined.contains(p.op.external_id().as_str()));

    let run = store.begin_run(
        if plan_file.is_some() { "apply" } else { "sync" },
        &plan.fingerprint,
    )?;
    let total = ops.len();
    let store = Arc::new(Mutex::new(store));
    let report = push::push(
        ops,
        writer,
        store.clone(),
        run,
        &cfg.agent_id,
        &cfg.nhsmail_domain,
        cfg.push.clone(),
        progress(total),
    )
    .await;
    let status = if report.stopped.is_some() {
        "stopped"
    } else if report.failed() > 0 {
        "partial"
    } else {
        "ok"
    };
    store
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .finish_run(run, status)?;

    println!(
        "{} {} applied, {} failed, {} not sent (plan {})",
        style("apply:").bold(),
        report.applied(),
        report.failed(),
        report.not_sent(),
        plan.fingerprint
    );
    for i in &report.items {
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
    if let Some(why) = &report.stopped {
        println!("{} {why}", style("stopped:").red().bold());
    }
    let write_back_ok = write_back(cfg, &collected).await?;
    Ok(if status == "ok" && write_back_ok {
        0
    } else {
        1
    })
}

/// Write allocated NHSmail addresses back to AD, when configured. From the directory's
/// state after the push, so earlier runs' addresses are caught up too. True when every
/// write succeeded (or none was needed).
async fn write_back(cfg: &Config, collected: &pipeline::Collected) -> Result<bool> {
    let (Some(attr), Source::Ldap(ldap)) = (&cfg.write_back, &cfg.source) else {
        return Ok(true);
    };
    let state = cfg
        .target
        .read_state()
        .await
        .context("write-back: cannot read the directory's state")?;
    let items = writeback::pending(
        &collected.persons,
        &collected.write_back,
        &state,
        &cfg.agent_id,
    );
    let wanted = items.len();
    let written = writeback::write(ldap, attr, items)
        .await
        .context("write-back: cannot connect to AD")?;
    println!(
        "{} {} of {wanted} address(es) written to AD attribute {attr}",
        style("write-back:").bold(),
        written.ok()
    );
    for (p, r) in &written.results {
        if let Err(e) = r {
            println!("  {} {}: {e}", style("failed").red(), p.external_id);
        }
    }
    Ok(written.ok() == wanted)
}

/// `tansync quarantine clear EXTERNAL_ID`.
pub fn clear_quarantine(cfg: &Config, external_id: &str) -> Result<u8> {
    let store = StateStore::open(&cfg.state_dir)?;
    if store.clear_failures(external_id)? {
        println!("{external_id}: cleared; the next apply will try it again");
        Ok(0)
    } else {
        println!("{external_id}: not quarantined");
        Ok(1)
    }
}

/// `tansync history`: the runs (newest first), or one run's operations.
pub fn history(cfg: &Config, run: Option<i64>, limit: usize, json: bool) -> Result<u8> {
    let h = History::open(&cfg.state_dir)?;
    match run {
        None => {
            let runs = h.runs(limit)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
                return Ok(0);
            }
            for r in &runs {
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
        }
        Some(id) => {
            let ops = h.journal(id)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&ops)?);
                return Ok(0);
            }
            for o in &ops {
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
        }
    }
    Ok(0)
}
