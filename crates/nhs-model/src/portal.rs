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

/// The default heading of each person field, in the report and the template alike.
pub const FIELD_HEADINGS: [(Field, &str); 10] = [
    (Field::GivenName, "First Name"),
    (Field::FamilyName, "Last Name"),
    (Field::DisplayName, "Display Name"),
    (Field::JobTitle, "Job Title"),
    (Field::Department, "Department"),
    (Field::Site, "Site"),
    (Field::Telephone, "Telephone"),
    (Field::Mobile, "Mobile"),
    (Field::EmployeeId, "Employee ID"),
    (Field::Email, "Secondary Email"),
];

/// A field's default heading.
pub fn field_heading(f: Field) -> &'static str {
    FIELD_HEADINGS
        .iter()
        .find(|(g, _)| *g == f)
        .map_or("", |(_, h)| h)
}

/// The field a default heading stands for (exactly as written).
pub fn heading_field(heading: &str) -> Option<Field> {
    FIELD_HEADINGS
        .iter()
        .find(|(_, h)| *h == heading)
        .map(|(f, _)| *f)
}

/// The column the Portal adds to an uploaded file when it returns it as the results.
pub const RESULT_HEADING: &str = "Result";

/// Characters that make a spreadsheet treat a cell as a formula (or hide what follows)
/// when they come first (OWASP's CSV-injection list).
use crate::field::Field;

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
    fn every_field_has_a_heading_in_the_template() {
        for f in Field::ALL {
            assert!(TEMPLATE_HEADINGS.contains(&field_heading(f)), "{f:?}");
            assert!(REPORT_HEADINGS.contains(&field_heading(f)), "{f:?}");
            assert_eq!(heading_field(field_heading(f)), Some(f));
        }
    }

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
