//! A returned results file: the uploaded batch with the Portal's result column appended.
//!
//! Whole or an error: the header must be the template's headings followed by the results
//! column (an error names the first missing, extra or different heading), every row must
//! carry a Local ID and a result. A result equal to one of `success_values` (ignoring
//! case and surrounding space) is a success; any other text is a failure with that text.
//!
//! Never does: guess an outcome (an empty result cell is an error naming the line, never
//! a success or a failure); decide what to do about an outcome (the caller settles the
//! batch from these rows).

use super::columns::{Column, same_heading};
use super::{CsvFile, PortalSettings};
use crate::ids::ExternalId;
use crate::target::TargetError;
use nhs_model::portal::restore;
use std::path::Path;

/// One row of a results file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultRow {
    /// The row's line in the file (1-based; the header is line 1).
    pub line: u64,
    pub local_id: ExternalId,
    /// `Err` holds the Portal's text (`Failed: …`).
    pub outcome: Result<(), String>,
}

/// Read a returned results file: header = template headings + results column (error
/// otherwise, naming it).
pub fn read_results(path: &Path, settings: &PortalSettings) -> Result<Vec<ResultRow>, TargetError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| TargetError::Io {
        path: shown.clone(),
        source,
    })?;
    parse_results(&shown, &text, settings)
}

/// [`read_results`] on text already read (`shown` names it in errors).
pub fn parse_results(
    shown: &str,
    text: &str,
    settings: &PortalSettings,
) -> Result<Vec<ResultRow>, TargetError> {
    let invalid = |at: String, problem: String| TargetError::Invalid { path: at, problem };
    let t = &settings.template;
    let mut want: Vec<&str> = t.headings.iter().map(String::as_str).collect();
    want.push(&settings.results_column);
    let (mut file, header) = CsvFile::open(
        shown,
        text,
        "a results file starts with the batch's header row and the results column",
    )?;
    let got: Vec<&str> = header.iter().collect();
    for i in 0..want.len().max(got.len()) {
        let problem = match (want.get(i), got.get(i)) {
            (Some(w), Some(g)) if same_heading(w, g) => continue,
            (Some(w), Some(g)) => format!(
                "column {} is {g:?} where {w:?} was expected (the header must be the \
                 template's headings, then {:?})",
                i + 1,
                settings.results_column
            ),
            (Some(w), None) => format!(
                "the header has no {w:?} column (column {}){}",
                i + 1,
                if i + 1 == want.len() {
                    " — is this the batch file itself rather than the Portal's results?"
                } else {
                    ""
                }
            ),
            (None, Some(g)) => format!(
                "the header has an extra column {g:?} (column {}) after {:?}",
                i + 1,
                settings.results_column
            ),
            (None, None) => continue,
        };
        return Err(invalid(format!("{shown}:1"), problem));
    }
    let local = t.position(Column::LocalId).ok_or_else(|| {
        invalid(
            t.path.display().to_string(),
            "the template has no Local ID column".into(),
        )
    })?;
    let result = want.len() - 1;
    let mut out = Vec::new();
    while let Some((line, rec)) = file.next_row()? {
        let at = || format!("{shown}:{line}");
        let cell = |i: usize| restore(rec.get(i).unwrap_or_default()).trim();
        let local_id = ExternalId::parse(cell(local))
            .map_err(|e| invalid(at(), format!("the {:?} cell: {e}", t.headings[local])))?;
        let r = cell(result);
        if r.is_empty() {
            return Err(invalid(
                at(),
                format!(
                    "the {:?} cell is empty: the Portal gave no result for this row",
                    settings.results_column
                ),
            ));
        }
        let outcome = if settings
            .success_values
            .iter()
            .any(|s| s.trim().eq_ignore_ascii_case(r))
        {
            Ok(())
        } else {
            Err(r.to_string())
        };
        out.push(ResultRow {
            line,
            local_id,
            outcome,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::portal::tests::settings;

    fn parse(text: &str) -> Result<Vec<ResultRow>, TargetError> {
        parse_results("results.csv", text, &settings())
    }

    const HEADER: &str = "Local ID,ODS Code,Email Address,First Name,Last Name,Display Name,Job Title,Department,Site,Telephone,Mobile,Employee ID,Secondary Email,Result";

    #[test]
    fn outcomes_are_read_per_row() {
        let text = format!(
            "\u{feff}{HEADER}\r\n\
             AAA-1,RXA,,Jo,Bloggs,,,,,'+441134960000,,,,Success\r\n\
             aaa-2,RXA,,Al,Smith,,,,,,,,,created\r\n\
             aaa-3,RXA,,\"Multi\nLine\",Smith,,,,,,,,,\"Failed: the organisation RXA is at its cap, 50 of 50\"\r\n\
             '=aaa-4,RXA,,X,Y,,,,,,,,,Rejected\r\n"
        );
        let rows = parse(&text).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].local_id.as_str(), "aaa-1");
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[0].outcome, Ok(()));
        assert_eq!(rows[1].outcome, Ok(()), "success_values, ignoring case");
        assert_eq!(
            rows[2].outcome,
            Err("Failed: the organisation RXA is at its cap, 50 of 50".into())
        );
        assert_eq!(
            rows[3].line, 6,
            "a quoted newline is inside line 4's record"
        );
        assert_eq!(rows[3].local_id.as_str(), "=aaa-4", "the cell is restored");
        assert_eq!(rows[3].outcome, Err("Rejected".into()));
    }

    #[test]
    fn an_empty_result_or_local_id_names_the_line() {
        let e = parse(&format!(
            "{HEADER}\nAAA-1,RXA,,,,,,,,,,,,Success\nAAA-2,RXA,,,,,,,,,,,, \n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("results.csv:3: ") && e.contains("\"Result\" cell is empty"),
            "{e}"
        );
        let e = parse(&format!("{HEADER}\n,RXA,,,,,,,,,,,,Success\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("results.csv:2: ") && e.contains("Local ID"),
            "{e}"
        );
        let e = parse(&format!("{HEADER}\nAAA-1,RXA,Success\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("results.csv:2: ") && e.contains("3 cells"),
            "{e}"
        );
    }

    #[test]
    fn a_header_that_is_not_template_plus_result_names_the_heading() {
        let batch = HEADER.trim_end_matches(",Result");
        let e = parse(&format!("{batch}\n")).unwrap_err().to_string();
        assert!(
            e.contains("no \"Result\" column") && e.contains("batch file itself"),
            "{e}"
        );
        let e = parse(&format!("{HEADER},Notes\n")).unwrap_err().to_string();
        assert!(e.contains("extra column \"Notes\""), "{e}");
        let swapped = HEADER.replacen("Local ID,ODS Code", "ODS Code,Local ID", 1);
        let e = parse(&format!("{swapped}\n")).unwrap_err().to_string();
        assert!(
            e.starts_with("results.csv:1: column 1 is \"ODS Code\" where \"Local ID\""),
            "{e}"
        );
        let e = parse("").unwrap_err().to_string();
        assert!(e.contains("is empty"), "{e}");
    }
}
