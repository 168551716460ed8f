//! The bulk-upload template and the batch files made from it.
//!
//! The template is the operator's copy of the Portal's sample file: its first row is the
//! header (any rows after it are ignored), and a batch file has exactly those headings in
//! that order. Each heading means a [`Column`]: by its default name (the report's
//! headings), or as `[target.upload_columns]` says (heading → name, `""` = always blank).
//!
//! Never does: write a cell without [`nhs_model::portal::neutralise`]; accept a heading it
//! cannot give a meaning to (an unmapped column would be uploaded blank without anyone
//! deciding so); write anything but RFC 4180 CSV (the csv crate quotes).

use super::columns::{Column, same_heading};
use super::strip_bom;
use crate::ids::{ExternalId, OdsCode};
use crate::model::Field;
use nhs_model::portal::neutralise;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The checked template: its headings as written, and what each means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadTemplate {
    pub path: PathBuf,
    pub headings: Vec<String>,
    pub columns: Vec<Column>,
}

/// One row of a batch: a create (no account holds `local_id` yet; `nhsmail_address`
/// `None`: the directory allocates it) or an update (`nhsmail_address` = the account's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadRow {
    pub local_id: ExternalId,
    pub ods_code: OdsCode,
    pub nhsmail_address: Option<String>,
    /// Values to set; a field not here is written blank (an update leaves it unchanged).
    pub values: BTreeMap<Field, String>,
}

/// Columns a batch file can carry (the rest describe the directory's own state).
fn uploadable(c: Column) -> bool {
    matches!(
        c,
        Column::LocalId
            | Column::OdsCode
            | Column::NhsmailAddress
            | Column::Field(_)
            | Column::Blank
    )
}

impl UploadTemplate {
    /// Read a template's header row and give each heading its meaning. `overrides` is
    /// `[target.upload_columns]`: heading → column name, or `""` for always blank.
    pub fn parse(
        path: &Path,
        text: &str,
        overrides: &BTreeMap<String, String>,
    ) -> Result<UploadTemplate, String> {
        let shown = path.display();
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(strip_bom(text).as_bytes());
        let header = match rdr.records().next() {
            Some(Ok(r)) => r,
            Some(Err(e)) => return Err(format!("{shown}: the header row is not CSV: {e}")),
            None => {
                return Err(format!(
                    "{shown} is empty: it must start with the Portal's bulk-upload header row"
                ));
            }
        };
        let headings: Vec<String> = header.iter().map(str::to_string).collect();
        for key in overrides.keys() {
            if !headings.iter().any(|h| same_heading(h, key)) {
                return Err(format!(
                    "[target.upload_columns] names {key:?}, which is not a heading of {shown} \
                     (its headings: {})",
                    headings.join(", ")
                ));
            }
        }
        let mut columns = Vec::with_capacity(headings.len());
        for (i, h) in headings.iter().enumerate() {
            if h.trim().is_empty() {
                return Err(format!(
                    "{shown}: column {} has an empty heading; the header must be the Portal's \
                     sample header row",
                    i + 1
                ));
            }
            if let Some(other) = headings[..i].iter().find(|o| same_heading(o, h)) {
                return Err(format!("{shown}: heading {h:?} appears twice ({other:?})"));
            }
            let over = overrides
                .iter()
                .find(|(k, _)| same_heading(k, h))
                .map(|(_, v)| v.trim());
            let c = match over {
                Some("") => Column::Blank,
                Some(name) => Column::parse(name).ok_or_else(|| {
                    format!(
                        "[target.upload_columns] {h:?} = {name:?}: unknown column name; expected \
                         one of {}, or \"\" for a column left blank",
                        Column::names()
                    )
                })?,
                None => Column::by_default_heading(h).ok_or_else(|| {
                    format!(
                        "{shown}: heading {h:?} has no default meaning: say what it holds in \
                         [target.upload_columns] ({h:?} = \"job_title\", say, or \"\" to leave \
                         it blank)"
                    )
                })?,
            };
            if !uploadable(c) {
                return Err(format!(
                    "{shown}: heading {h:?} means {}, which a bulk upload cannot set; map it to \
                     \"\" in [target.upload_columns] to leave it blank",
                    c.name()
                ));
            }
            if c != Column::Blank
                && let Some(j) = columns.iter().position(|x| *x == c)
            {
                return Err(format!(
                    "{shown}: headings {:?} and {h:?} both mean {}",
                    headings[j],
                    c.name()
                ));
            }
            columns.push(c);
        }
        for need in [Column::LocalId, Column::OdsCode] {
            if !columns.contains(&need) {
                return Err(format!(
                    "{shown} has no {} column (default heading {:?}): the Portal matches \
                     updates on it",
                    need.name(),
                    need.default_heading().unwrap_or_default()
                ));
            }
        }
        Ok(UploadTemplate {
            path: path.to_path_buf(),
            headings,
            columns,
        })
    }

    /// Where a column is in the template.
    pub fn position(&self, c: Column) -> Option<usize> {
        self.columns.iter().position(|x| *x == c)
    }

    /// The fields a batch file can carry.
    pub fn fields(&self) -> impl Iterator<Item = Field> + '_ {
        self.columns.iter().filter_map(|c| match c {
            Column::Field(f) => Some(*f),
            _ => None,
        })
    }

    /// One row's cells, in the template's order, not yet neutralised.
    fn cells<'a>(&self, row: &'a UploadRow) -> Vec<&'a str> {
        self.columns
            .iter()
            .map(|c| match c {
                Column::LocalId => row.local_id.as_str(),
                Column::OdsCode => row.ods_code.as_str(),
                Column::NhsmailAddress => row.nhsmail_address.as_deref().unwrap_or(""),
                Column::Field(f) => row.values.get(f).map_or("", String::as_str),
                _ => "",
            })
            .collect()
    }

    /// The batch file's bytes: header then one row per UploadRow, every cell neutralised.
    pub fn render(&self, rows: &[UploadRow]) -> Vec<u8> {
        let head = std::iter::once(self.headings.iter().map(String::as_str).collect());
        neutralised_csv(head.chain(rows.iter().map(|r| self.cells(r))))
    }
}

/// RFC 4180 CSV (CRLF line ends) of these records, every cell through `neutralise`: the
/// one writer of every CSV file a person may open in a spreadsheet (batches, worklist).
pub fn neutralised_csv<'a>(records: impl IntoIterator<Item = Vec<&'a str>>) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .flexible(true)
        .from_writer(Vec::new());
    for rec in records {
        // Writing to a Vec<u8> cannot fail: there is no I/O, and the writer accepts
        // records of any width (`flexible`).
        #[allow(clippy::expect_used)]
        w.write_record(rec.iter().map(|c| neutralise(c).into_owned()))
            .expect("writing CSV to memory");
    }
    #[allow(clippy::expect_used)]
    w.into_inner().expect("flushing CSV to memory")
}

#[cfg(test)]
mod tests {
    use super::*;
    use nhs_model::portal::TEMPLATE_HEADINGS;

    fn p() -> PathBuf {
        PathBuf::from("template.csv")
    }

    fn over(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_sample_header_maps_by_default() {
        let text = format!(
            "\u{feff}{}\r\nexample,row,ignored\r\n",
            TEMPLATE_HEADINGS.join(",")
        );
        let t = UploadTemplate::parse(&p(), &text, &BTreeMap::new()).unwrap();
        assert_eq!(t.headings, TEMPLATE_HEADINGS.map(String::from).to_vec());
        assert_eq!(t.columns[0], Column::LocalId);
        assert_eq!(t.columns[1], Column::OdsCode);
        assert_eq!(t.columns[2], Column::NhsmailAddress);
        assert_eq!(t.columns[3], Column::Field(Field::GivenName));
        assert_eq!(t.columns[12], Column::Field(Field::Email));
        assert_eq!(t.fields().count(), 10);
    }

    #[test]
    fn an_override_maps_or_blanks_a_heading() {
        let text = "Local ID,ODS Code,Forename,Notes,Job Title\n";
        let t = UploadTemplate::parse(
            &p(),
            text,
            &over(&[("forename", "given_name"), ("Notes", "")]),
        )
        .unwrap();
        assert_eq!(
            t.columns,
            vec![
                Column::LocalId,
                Column::OdsCode,
                Column::Field(Field::GivenName),
                Column::Blank,
                Column::Field(Field::JobTitle)
            ]
        );
        // An override can re-map a default heading too.
        let t = UploadTemplate::parse(
            &p(),
            text,
            &over(&[("Job Title", ""), ("Forename", ""), ("Notes", "")]),
        )
        .unwrap();
        assert_eq!(t.columns[4], Column::Blank);
    }

    #[test]
    fn an_unknown_heading_or_name_is_refused_naming_it() {
        let e =
            UploadTemplate::parse(&p(), "Local ID,ODS Code,Pager\n", &BTreeMap::new()).unwrap_err();
        assert!(
            e.contains("\"Pager\"") && e.contains("upload_columns"),
            "{e}"
        );
        let e = UploadTemplate::parse(
            &p(),
            "Local ID,ODS Code,Pager\n",
            &over(&[("Pager", "pager")]),
        )
        .unwrap_err();
        assert!(
            e.contains("\"pager\"") && e.contains("unknown column name"),
            "{e}"
        );
        let e = UploadTemplate::parse(&p(), "Local ID,ODS Code\n", &over(&[("Pager", "")]))
            .unwrap_err();
        assert!(
            e.contains("\"Pager\"") && e.contains("not a heading"),
            "{e}"
        );
        let e = UploadTemplate::parse(&p(), "Local ID,ODS Code,Status\n", &BTreeMap::new())
            .unwrap_err();
        assert!(e.contains("cannot set"), "{e}");
        let e = UploadTemplate::parse(&p(), "Local ID,ODS Code,Site,site\n", &BTreeMap::new())
            .unwrap_err();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn a_template_without_local_id_or_ods_code_is_refused() {
        let e = UploadTemplate::parse(&p(), "ODS Code,First Name\n", &BTreeMap::new()).unwrap_err();
        assert!(e.contains("local_id") && e.contains("Local ID"), "{e}");
        let e = UploadTemplate::parse(&p(), "Local ID,First Name\n", &BTreeMap::new()).unwrap_err();
        assert!(e.contains("ods_code"), "{e}");
        let e = UploadTemplate::parse(&p(), "", &BTreeMap::new()).unwrap_err();
        assert!(e.contains("is empty"), "{e}");
    }

    #[test]
    fn render_quotes_and_neutralises_every_cell() {
        let text = format!("{}\n", TEMPLATE_HEADINGS.join(","));
        let t = UploadTemplate::parse(&p(), &text, &BTreeMap::new()).unwrap();
        let tricky = [
            (Field::GivenName, "Smith, Jo"),
            (Field::FamilyName, "O\"Brien"),
            (Field::DisplayName, "two\nlines"),
            (Field::JobTitle, "=cmd|' /C calc'!A0"),
            (Field::Telephone, "+44 113 496 0000"),
            (Field::Department, "@SUM(A1)"),
            (Field::Site, "-1"),
            (Field::Mobile, "\t07700900123"),
            (Field::EmployeeId, "\rX1"),
            (Field::Email, "'already quoted"),
        ];
        let row = UploadRow {
            local_id: ExternalId::parse("af40ac76-1201-4205-83fb-a1707109e8b4").unwrap(),
            ods_code: OdsCode::parse("RXA").unwrap(),
            nhsmail_address: None,
            values: tricky.iter().map(|(f, v)| (*f, v.to_string())).collect(),
        };
        let bytes = t.render(std::slice::from_ref(&row));
        assert!(bytes.ends_with(b"\r\n"));
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(bytes.as_slice());
        let recs: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
        assert_eq!(recs.len(), 2);
        assert_eq!(
            recs[0].iter().collect::<Vec<_>>(),
            TEMPLATE_HEADINGS.to_vec()
        );
        let got = &recs[1];
        assert_eq!(&got[0], "af40ac76-1201-4205-83fb-a1707109e8b4");
        assert_eq!(&got[1], "RXA");
        assert_eq!(&got[2], "", "a create leaves the address blank");
        for (f, v) in tricky {
            let i = t.position(Column::Field(f)).unwrap();
            assert_eq!(&got[i], neutralise(v).as_ref(), "{f}");
            assert_eq!(nhs_model::portal::restore(&got[i]), v, "{f}");
        }
        assert_eq!(
            &got[t.position(Column::Field(Field::JobTitle)).unwrap()],
            "'=cmd|' /C calc'!A0"
        );
        assert_eq!(&got[t.position(Column::Field(Field::Site)).unwrap()], "'-1");
    }
}
