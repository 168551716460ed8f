//! What the command line prints for the Portal bridge: an apply's batch and worklist,
//! a results file's settlement, `portal status` and `portal release`. Values from the
//! directory or AD (anchors, file names, the Portal's result text) are escaped.

use crate::engine::portal::{
    BatchSummary, Conflict, PortalReport, PortalStatus, ResultsReport, Row, row_state,
};
use anyhow::Result;
use nhs_model::escape::Escaped;
use std::collections::BTreeMap;
use std::io::Write;

fn states(s: &BTreeMap<String, usize>) -> String {
    s.iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn batch_line(b: &BatchSummary) -> String {
    format!(
        "batch {} ({}, {} row(s): {}; exported {}{})",
        b.batch,
        Escaped(&b.file),
        b.rows,
        states(&b.states),
        b.exported_at,
        b.settled_at
            .as_deref()
            .map(|s| format!(", settled {s}"))
            .unwrap_or_else(|| ", in flight".into())
    )
}

fn unsettled(rows: &[Row], out: &mut dyn Write) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "{} row(s) unsettled: not exported again until a Mailbox Report shows them, or you check \
         the Portal and run `tansync portal release LOCAL_ID`:",
        rows.len()
    )?;
    for r in rows {
        writeln!(
            out,
            "  batch {} line {} ({} of Local ID {}): {}",
            r.batch,
            r.line,
            r.kind,
            Escaped(&r.external_id),
            Escaped(r.detail.as_deref().unwrap_or(""))
        )?;
    }
    Ok(())
}

fn conflicts(c: &[Conflict], out: &mut dyn Write) -> Result<()> {
    let Some(first) = c.first() else {
        return Ok(());
    };
    writeln!(
        out,
        "DO NOT UPLOAD batch {}: an older batch may already have created {} of its mailboxes \
         (uploading it could make second mailboxes). If it is already uploaded, feed its results \
         file; otherwise `tansync portal discard {}`:",
        first.batch,
        c.len(),
        first.batch
    )?;
    for x in c {
        writeln!(
            out,
            "  line {} (Local ID {}): batch {} line {} is {}",
            x.line,
            Escaped(&x.external_id),
            x.older_batch,
            x.older_line,
            x.older_state
        )?;
    }
    Ok(())
}

/// `apply`/`sync` on the Portal target. Exit 0, or 1 when rows are unsettled or the batch
/// in flight must not be uploaded (a person must look).
pub fn apply(r: &PortalReport, out: &mut dyn Write) -> Result<u8> {
    writeln!(
        out,
        "Mailbox Report {}: {} account(s) of the managed organisations; plan {}",
        Escaped(&r.report.display().to_string()),
        r.report_accounts,
        Escaped(&r.fingerprint)
    )?;
    let mut by_batch: BTreeMap<i64, BTreeMap<String, usize>> = BTreeMap::new();
    for (b, _, _, state, _) in &r.settled {
        *by_batch
            .entry(*b)
            .or_default()
            .entry(state.to_string())
            .or_default() += 1;
    }
    for (b, s) in &by_batch {
        writeln!(out, "settled from the report: batch {b}: {}", states(s))?;
    }
    for (b, line, x, state, why) in &r.settled {
        if *state == row_state::FAILED {
            writeln!(
                out,
                "  batch {b} line {line} (Local ID {}): {}",
                Escaped(x),
                Escaped(why.as_deref().unwrap_or(""))
            )?;
        }
    }
    if r.mass_held > 0 && !r.mass_approved {
        writeln!(
            out,
            "{} removal(s) held by the mass-change guard are not on the worklist; review them and pass --approve-removals {}",
            r.mass_held,
            Escaped(&r.fingerprint)
        )?;
    }
    for n in &r.notes {
        writeln!(out, "{}", Escaped(n))?;
    }
    match (&r.in_flight, &r.exported) {
        (Some(b), _) if !r.conflicts.is_empty() => writeln!(out, "{}", batch_line(b))?,
        (Some(b), _) => {
            writeln!(out, "{}", batch_line(b))?;
            writeln!(
                out,
                "  nothing new exported: one upload at a time. Upload {} if you have not, wait for it \
                 to finish, then run `tansync portal results RESULTS.csv` with the file the Portal \
                 returns, or export the next Mailbox Report and run apply again.",
                Escaped(&b.file)
            )?;
        }
        (None, Some(b)) => {
            writeln!(out, "wrote {}", batch_line(b))?;
            writeln!(
                out,
                "  upload it in the NHSmail Portal (bulk upload), wait for it to finish, then run \
                 `tansync portal results RESULTS.csv` with the file the Portal returns, or export \
                 the next Mailbox Report and run apply again. Do not upload it twice."
            )?;
        }
        (None, None) => writeln!(out, "no creates or updates to export")?,
    }
    if r.later > 0 {
        writeln!(
            out,
            "{} more create(s)/update(s) wait for later batches",
            r.later
        )?;
    }
    if !r.withheld.is_empty() {
        writeln!(out, "{} operation(s) withheld:", r.withheld.len())?;
        for w in &r.withheld {
            writeln!(
                out,
                "  {} {}: {}",
                w.op.kind(),
                Escaped(w.op.external_id().as_str()),
                Escaped(&w.why)
            )?;
        }
    }
    unsettled(&r.unsettled, out)?;
    conflicts(&r.conflicts, out)?;
    writeln!(
        out,
        "worklist: {} open task(s) ({} new, {} confirmed done, {} withdrawn): {}",
        r.worklist_open,
        r.worklist_new,
        r.worklist_confirmed,
        r.worklist_withdrawn,
        Escaped(&r.worklist_files.1.display().to_string())
    )?;
    // A create withheld because the journal says it happened while the report does not
    // show it: the report is stale or partial, and a person must look.
    let contradicted = r
        .withheld
        .iter()
        .any(|w| w.state == row_state::CONFIRMED || w.state == row_state::DIFFERS);
    Ok(
        if r.unsettled.is_empty() && r.conflicts.is_empty() && !contradicted {
            0
        } else {
            1
        },
    )
}

/// `portal results FILE`.
pub fn results(r: &ResultsReport, out: &mut dyn Write) -> Result<u8> {
    writeln!(out, "{}", batch_line(&r.batch))?;
    let failed: Vec<_> = r
        .changed
        .iter()
        .filter(|c| c.2 == row_state::FAILED)
        .collect();
    let reported = r
        .changed
        .iter()
        .filter(|c| c.2 == row_state::REPORTED)
        .count();
    let unsettled = r
        .changed
        .iter()
        .filter(|c| c.2 == row_state::UNSETTLED)
        .count();
    writeln!(
        out,
        "results: {reported} succeeded (confirmed by the next Mailbox Report), {} failed (exported \
         again by the next apply if the plan still wants them), {unsettled} unsettled (the file \
         contradicts earlier evidence), {} unchanged",
        failed.len(),
        r.unchanged
    )?;
    for (line, x, state, why) in &r.changed {
        if *state != row_state::REPORTED {
            writeln!(
                out,
                "  line {line} (Local ID {}): {state}: {}",
                Escaped(x),
                Escaped(why.as_deref().unwrap_or(""))
            )?;
        }
    }
    Ok(0)
}

/// `portal results` beside a running `tansync run`.
pub fn queued(path: &std::path::Path, out: &mut dyn Write) -> Result<u8> {
    writeln!(
        out,
        "a running `tansync run` holds the state directory: the results file is queued as {} \
         and settles its batch at the start of the next cycle (see `tansync portal status`)",
        Escaped(&path.display().to_string())
    )?;
    Ok(0)
}

/// `portal status`.
pub fn status(st: &PortalStatus, json: bool, out: &mut dyn Write) -> Result<u8> {
    if json {
        serde_json::to_writer_pretty(&mut *out, st)?;
        writeln!(out)?;
        return Ok(0);
    }
    match st.in_flight {
        Some(b) => writeln!(out, "in flight: batch {b}")?,
        None => writeln!(out, "in flight: none")?,
    }
    for b in &st.batches {
        writeln!(out, "  {}", batch_line(b))?;
    }
    if st.awaiting_report > 0 {
        writeln!(
            out,
            "{} row(s) reported done by a results file, awaiting the next Mailbox Report",
            st.awaiting_report
        )?;
    }
    unsettled(&st.unsettled, out)?;
    conflicts(&st.conflicts, out)?;
    for q in &st.queued {
        writeln!(
            out,
            "results file queued for the next cycle: {}",
            Escaped(q)
        )?;
    }
    for q in &st.queued_failed {
        writeln!(
            out,
            "queued results file not used (see the daemon's log; portal-inbox/failed/): {}",
            Escaped(q)
        )?;
    }
    writeln!(out, "worklist: {} open task(s)", st.worklist.len())?;
    for t in &st.worklist {
        writeln!(
            out,
            "  {} {} ({}, Local ID {}): {}",
            t.kind,
            Escaped(&t.target_id),
            Escaped(&t.ods_code),
            Escaped(&t.external_id),
            Escaped(&t.detail)
        )?;
    }
    Ok(0)
}

/// `portal release` / `portal discard`: each row settled by hand, and what follows.
pub fn released(rows: &[Row], then: &str, out: &mut dyn Write) -> Result<u8> {
    for r in rows {
        writeln!(
            out,
            "batch {} line {} ({} of Local ID {}): {then}",
            r.batch,
            r.line,
            r.kind,
            Escaped(&r.external_id)
        )?;
    }
    if rows.is_empty() {
        writeln!(out, "no row was waiting: nothing changed")?;
    }
    Ok(0)
}
