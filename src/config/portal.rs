//! `[target] kind = "portal_report"`: the NHSmail Portal's CSV files — where the Mailbox
//! Report is, the organisation registry, the bulk-upload template (read and checked
//! here, at load), where batch files go, and how the report's and the template's columns
//! map to the model.

use super::raw::RawPortal;
use super::{ConfigError, Ctx};
use crate::ids::OdsCode;
use crate::model::mapping::Mapping;
use crate::target::portal::{
    Column, DEFAULT_BATCH_SIZE, OrganisationSource, PortalSettings, ReportColumns, ReportLocation,
    UploadTemplate, default_success_values,
};
use std::collections::BTreeSet;

/// The most rows one batch file may hold.
const MAX_BATCH_SIZE: i64 = 10_000;

pub(super) fn settings(
    cx: &Ctx,
    t: RawPortal,
    agent_id: &str,
    managed: BTreeSet<OdsCode>,
    mapping: &Mapping,
) -> Result<PortalSettings, ConfigError> {
    let report = match (t.report.as_deref(), t.drop_dir.as_deref()) {
        (Some(f), None) => {
            // The report is renewed by every export, so it need not exist yet (a read
            // names it when it is missing); its folder must.
            let path = cx.path(f);
            if path.is_dir() {
                return Err(cx.err(
                    "target.report",
                    format!(
                        "{} is a folder: give the report file, or set target.drop_dir to read \
                         the newest *.csv in it",
                        path.display()
                    ),
                ));
            }
            ReportLocation::File(path)
        }
        (None, Some(d)) => {
            let path = cx.path(d);
            if !path.is_dir() {
                return Err(cx.err(
                    "target.drop_dir",
                    format!("{} does not exist or is not a folder", path.display()),
                ));
            }
            ReportLocation::DropDir(path)
        }
        (Some(_), Some(_)) => {
            return Err(cx.err(
                "target.drop_dir",
                "give target.report (one file) or target.drop_dir (the newest *.csv in a \
                 folder), not both",
            ));
        }
        (None, None) => {
            return Err(cx.err(
                "target.report",
                "say where the Mailbox Report is: target.report (a file) or target.drop_dir \
                 (a folder the exports are saved into)",
            ));
        }
    };

    let organisations = match (t.organisations_file.as_deref(), t.organisations) {
        (Some(f), None) => OrganisationSource::File(cx.existing("target.organisations_file", f)?),
        (None, Some(list)) => {
            let mut seen = BTreeSet::new();
            for o in &list {
                if !seen.insert(o.ods_code.clone()) {
                    return Err(cx.err(
                        "target.organisations",
                        format!("{} is listed twice", o.ods_code),
                    ));
                }
            }
            OrganisationSource::Inline(list)
        }
        (Some(_), Some(_)) => {
            return Err(cx.err(
                "target.organisations",
                "give target.organisations_file or [[target.organisations]], not both",
            ));
        }
        (None, None) => {
            return Err(cx.err(
                "target.organisations_file",
                "the Mailbox Report names organisations only: give the registry as \
                 target.organisations_file (a JSON list) or [[target.organisations]]",
            ));
        }
    };

    let report_columns = ReportColumns::new(&t.report_columns)
        .map_err(|e| cx.err(&format!("target.report_columns.{}", e.name), e.problem))?;
    // A synchronised field the report cannot show would read as absent on every account,
    // and every plan would "set" it again. (`email` is never compared: see Field.)
    for f in mapping.fields.keys() {
        if f.is_synchronised() && report_columns.heading(Column::Field(*f)).is_none() {
            return Err(cx.err(
                &format!("target.report_columns.{f}"),
                format!(
                    "[mapping] produces {f}, so the report must have its column: give its \
                     heading (default {:?})",
                    Column::Field(*f).default_heading().unwrap_or_default()
                ),
            ));
        }
    }

    let template_path = match t.template.as_deref() {
        Some(p) => cx.existing("target.template", p)?,
        None => {
            return Err(cx.err(
                "target.template",
                "give the bulk-upload template: a copy of the Portal's sample file (its \
                 first row is the header every batch file gets)",
            ));
        }
    };
    let text = std::fs::read_to_string(&template_path)
        .map_err(|e| cx.err("target.template", format!("cannot read: {e}")))?;
    let template = UploadTemplate::parse(&template_path, &text, &t.upload_columns)
        .map_err(|p| cx.err("target.template", p))?;
    // A synchronised field no template column carries could never be sent: each create
    // would lack it and every plan would export an update that cannot carry it either.
    for f in mapping.fields.keys() {
        if f.is_synchronised() && !template.fields().any(|g| g == *f) {
            return Err(cx.err(
                "target.upload_columns",
                format!(
                    "[mapping] produces {f}, but no column of the template {} carries it: map \
                     a template heading to it (\"Heading\" = \"{f}\"), or drop {f} from [mapping]",
                    template_path.display()
                ),
            ));
        }
    }

    let out_dir = match t.out_dir.as_deref() {
        Some(d) if !d.trim().is_empty() => cx.path(d),
        _ => {
            return Err(cx.err(
                "target.out_dir",
                "give the folder batch files, their manifest and worklists are written to",
            ));
        }
    };
    if out_dir.exists() && !out_dir.is_dir() {
        return Err(cx.err(
            "target.out_dir",
            format!("{} is not a folder", out_dir.display()),
        ));
    }
    match out_dir.parent() {
        Some(p) if !out_dir.exists() && !p.as_os_str().is_empty() && !p.is_dir() => {
            return Err(cx.err(
                "target.out_dir",
                format!(
                    "{} does not exist (the folder itself is created on the first export, \
                     its parent must exist)",
                    p.display()
                ),
            ));
        }
        _ => {}
    }

    // The drop folder's newest *.csv is read as the report: batch files, worklists or
    // results saved there would be read as one.
    if let ReportLocation::DropDir(d) = &report
        && out_dir.starts_with(d)
    {
        return Err(cx.err(
            "target.out_dir",
            format!(
                "{} is inside target.drop_dir {} (whose newest *.csv is read as the Mailbox \
                 Report): keep batch files elsewhere",
                out_dir.display(),
                d.display()
            ),
        ));
    }

    let batch_size = match t.batch_size {
        None => DEFAULT_BATCH_SIZE,
        Some(n @ 1..=MAX_BATCH_SIZE) => n as usize,
        Some(_) => {
            return Err(cx.err(
                "target.batch_size",
                format!("must be 1 to {MAX_BATCH_SIZE} (rows per batch file)"),
            ));
        }
    };
    let results_column = match t.results_column.as_deref().map(str::trim) {
        None => nhs_model::portal::RESULT_HEADING.to_string(),
        Some("") => return Err(cx.err("target.results_column", "is empty")),
        Some(h) => h.to_string(),
    };
    if template
        .headings
        .iter()
        .any(|h| crate::target::portal::columns::same_heading(h, &results_column))
    {
        return Err(cx.err(
            "target.results_column",
            format!("{results_column:?} is already a heading of the template"),
        ));
    }
    let success_values = match t.success_values {
        None => default_success_values(),
        Some(v) if v.is_empty() || v.iter().any(|s| s.trim().is_empty()) => {
            return Err(cx.err(
                "target.success_values",
                "give at least one result text meaning success, none empty",
            ));
        }
        Some(v) => v.into_iter().map(|s| s.trim().to_string()).collect(),
    };
    Ok(PortalSettings {
        report,
        organisations,
        managed,
        agent_id: agent_id.to_string(),
        report_columns,
        template,
        out_dir,
        batch_size,
        results_column,
        success_values,
    })
}
