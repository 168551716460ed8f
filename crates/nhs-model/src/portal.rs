//! What the NHSmail Portal's CSV files look like, shared by the agent (which reads the
//! Mailbox Report and writes bulk-upload batches) and the reference directory (which
//! plays the Portal: it exports a report and ingests a batch): the default headings and
//! the CSV-injection neutraliser.
//!
//! The real Portal's sample bulk-upload file is the authority on headings and their
//! order; these defaults are the reference directory's, and an operator's template (copied
//! from the Portal's current sample) overrides them.

/// The Mailbox Report's headings, in the order the reference directory writes them.
pub const REPORT_HEADINGS: [&str; 16] = [
    "Email Address",
    "Local ID",
    "First Name",
    "Last Name",
    "Display Name",
    "Job Title",
    "Department",
    "Site",
    "Telephone",
    "Mobile",
    "Employee ID",
    "Secondary Email",
    "ODS Code",
    "Organisation",
    "Status",
    "Leaver Date",
];

/// The bulk-upload sample file's headings, in order (the shipped example template and
/// the reference directory's `sample-template`).
pub const TEMPLATE_HEADINGS: [&str; 13] = [
    "Local ID",
    "ODS Code",
    "Email Address",
    "First Name",
    "Last Name",
    "Display Name",
    "Job Title",
    "Department",
    "Site",
    "Telephone",
    "Mobile",
    "Employee ID",
    "Secondary Email",
];

/// The column the Portal adds to an uploaded file when it returns it as the results.
pub const RESULT_HEADING: &str = "Result";

/// Characters that make a spreadsheet treat a cell as a formula (or hide what follows)
/// when they come first (OWASP's CSV-injection list).
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

fn starts_formula(s: &str) -> bool {
    s.starts_with(FORMULA_STARTS)
}

/// The cell as written to a CSV file a person may open in a spreadsheet: a value that
/// starts like a formula gets a leading apostrophe, so it is shown as text, not run.
pub fn neutralise(value: &str) -> std::borrow::Cow<'_, str> {
    if starts_formula(value) {
        std::borrow::Cow::Owned(format!("'{value}"))
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

/// Undo [`neutralise`]: a cell that is an apostrophe followed by a formula start is
/// that value without the apostrophe; any other cell is itself.
pub fn restore(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if starts_formula(rest) => rest,
        _ => cell,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_starts_are_neutralised_and_restored() {
        for v in ["=1+1", "+44 113 000 0000", "-x", "@SUM(A1)", "\tx", "\rx"] {
            let n = neutralise(v);
            assert_eq!(n, format!("'{v}"), "{v:?}");
            assert_eq!(restore(&n), v);
        }
        for v in ["Jo", "", "'quoted", "a=b", " =x"] {
            assert_eq!(neutralise(v), v);
            assert_eq!(restore(v), v);
        }
    }
}
