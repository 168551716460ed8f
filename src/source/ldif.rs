//! LDIF source: reads an export written by `ldapsearch -LLL` (or `-L`), `ldifde` or
//! `slapcat` (RFC 2849 content records).
//!
//! The parser is hand-written: the LDIF crates on crates.io are unmaintained or parse
//! change records only, and what we need (content records, `::` base64 values, folded
//! lines, comments, CRLF) is small. It streams: memory does not grow with the file, and no
//! line or value may exceed [`LdifLimits`].
//!
//! A read is whole or an error, and the format itself is the proof. Every line ends with
//! LF or CRLF; every record ends with an empty line (RFC 2849 separates records with one,
//! and `ldapsearch` and `slapcat` end the last record with one too); a record has a DN
//! and at least one attribute and only one DN; a line holding only whitespace is not a
//! separator.
//! So a file cut at any byte is an error unless the cut falls exactly after the empty
//! line that ends a record, where the file is a whole, shorter export. Where the export
//! carries `ldapsearch -L`'s trailer (`# numEntries: N`), N must be the number of records
//! read (every entry the search returned, person or not); where it opens with
//! `ldapsearch`'s header, the trailer must be there. `ldapsearch` without `-L` also writes
//! each search's result (`search: 2`, `result: 0 Success`) and references (`ref:`) as
//! blocks of their own: they are read, and a result other than 0 (a size or time limit
//! hit) is an error. (With `-L` a limit shows only in ldapsearch's exit status, which
//! whatever runs the export must check.)

use super::{
    AnchorKind, EntrySink, GroupIndex, ReadRequest, ReadSummary, SourceEntry, SourceError,
};
use crate::ids::NormDn;
use base64::Engine;
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::PathBuf;

/// What one LDIF read may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LdifLimits {
    /// The longest value (a DN or an attribute value, after unfolding and base64
    /// decoding), in bytes: `[source] ldif_max_value_bytes`.
    pub max_value_bytes: usize,
}

/// `[source] ldif_max_value_bytes` when not set: 4 MiB, room for any photo AD holds.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 4 << 20;

impl Default for LdifLimits {
    fn default() -> Self {
        Self {
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        }
    }
}

/// Room on a line beyond its value: the attribute description, its options, the colons
/// and the spaces after them.
const LINE_SLACK: usize = 1024;

impl LdifLimits {
    /// The longest line (unfolded) that can carry a value of `max_value_bytes`: the
    /// value base64-encoded, plus [`LINE_SLACK`]. Longer lines are refused while read,
    /// before they are held.
    fn max_line_bytes(&self) -> usize {
        self.max_value_bytes
            .div_ceil(3)
            .saturating_mul(4)
            .saturating_add(LINE_SLACK)
    }
}

/// One content record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdifRecord {
    /// Line on which the record starts (1-based).
    pub line: usize,
    pub dn: String,
    /// Attribute descriptions as written (options such as `;binary` removed), in order.
    pub attrs: Vec<(String, Vec<u8>)>,
}

impl LdifRecord {
    fn object_classes(&self) -> BTreeSet<String> {
        self.attrs
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("objectClass"))
            .map(|(_, v)| String::from_utf8_lossy(v).to_ascii_lowercase())
            .collect()
    }
}

/// A read error: the line (1-based) and the problem.
pub type LdifError = (usize, String);

/// `ldapsearch -L`'s header and trailer comments, checked against what was read.
///
/// ldapsearch with no `-L` or one opens with `# base <…> with scope …` (again for every
/// page) and, after the entries of every page, writes `# numResponses: R` and, unless no
/// entry came back, `# numEntries: N` on the next line. N counts every entry the search
/// returned, so it is compared with every record read, whatever the rules make of them.
#[derive(Debug, Default)]
struct Trailer {
    /// The line of a header that promises a trailer at the end.
    promised: Option<usize>,
    /// Records completed since the last trailer (or the start).
    since: usize,
    /// A trailer has been read.
    seen: bool,
    /// A `# numResponses` line whose `# numEntries` line has not come yet: its line and
    /// the records it covers.
    open: Option<(usize, usize)>,
}

impl Trailer {
    fn comment(&mut self, no: usize, text: &str) -> Result<(), LdifError> {
        if text.starts_with("# numResponses:") {
            self.close()?;
            self.open = Some((no, self.since));
            self.since = 0;
            self.seen = true;
            return Ok(());
        }
        if let Some(n) = text.strip_prefix("# numEntries:") {
            let n: usize = n.trim().parse().map_err(|_| {
                (
                    no,
                    format!("ldapsearch's trailer {:?} is not a count", truncate(text)),
                )
            })?;
            let read = match self.open.take() {
                Some((_, count)) => count,
                None => std::mem::take(&mut self.since),
            };
            self.seen = true;
            if n != read {
                return Err((
                    no,
                    format!(
                        "ldapsearch's trailer says the search returned {n} entries, but {read} records were read before it: the export is not whole"
                    ),
                ));
            }
            return Ok(());
        }
        self.close()?;
        if text.starts_with("# base <") && text.contains(" with scope ") {
            self.promised = Some(no);
        }
        Ok(())
    }

    /// Anything but `# numEntries` after `# numResponses`: ldapsearch omits the line only
    /// when the search returned no entries.
    fn close(&mut self) -> Result<(), LdifError> {
        match self.open.take() {
            Some((no, read)) if read > 0 => Err((
                no,
                format!(
                    "ldapsearch's trailer has no \"# numEntries\" line, so the search returned no entries, but {read} records were read before it: the export is not whole"
                ),
            )),
            _ => Ok(()),
        }
    }

    fn end(&mut self, last_line: usize) -> Result<(), LdifError> {
        self.close()?;
        match self.promised {
            Some(header) if !self.seen || self.since > 0 => Err((
                last_line,
                format!(
                    "the export opens with ldapsearch's header (line {header}) but does not end with its trailer (\"# numResponses: …\"): the export looks cut short"
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// Streams records out of LDIF text.
pub struct LdifReader<R> {
    input: R,
    limits: LdifLimits,
    max_line: usize,
    /// Physical lines read so far.
    line_no: usize,
    /// The logical line (continuations joined) being parsed.
    line: Vec<u8>,
    /// The physical line read ahead while unfolding, and its number, if not yet used.
    ahead: Vec<u8>,
    ahead_no: Option<usize>,
    trailer: Trailer,
    done: bool,
}

/// Read one physical line into `buf`, without its LF or CRLF. `Ok(false)` at the end of
/// the input. `no` is the line's number, for errors.
fn physical_line<R: BufRead>(
    input: &mut R,
    buf: &mut Vec<u8>,
    no: usize,
    max_line: usize,
) -> Result<bool, LdifError> {
    buf.clear();
    // Room for the longest line and its CRLF: a longer one is refused before it is held.
    let room = (max_line as u64).saturating_add(2);
    let n = std::io::Read::take(&mut *input, room)
        .read_until(b'\n', buf)
        .map_err(|e| (no, format!("cannot read: {e}")))?;
    if n == 0 {
        return Ok(false);
    }
    let ended = buf.last() == Some(&b'\n');
    if ended {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    // RFC 2849's SAFE-CHAR excludes CR and NUL: a value holding them must be base64.
    // (A CR last on a line cut before its LF is the cut, reported below.)
    let body = match buf.split_last() {
        Some((b'\r', rest)) if !ended => rest,
        _ => &buf[..],
    };
    if let Some(&b) = body.iter().find(|&&b| b == b'\r' || b == 0) {
        return Err((
            no,
            if b == b'\r' {
                "a carriage return that does not end the line (classic Mac line endings?): lines must end with LF or CRLF".to_string()
            } else {
                "a NUL byte: the file is damaged (or a value that is not text is not base64-encoded)".to_string()
            },
        ));
    }
    if buf.len() > max_line || (!ended && n as u64 == room) {
        return Err((no, too_long(max_line)));
    }
    if !ended {
        return Err((
            no,
            "the file ends inside this line (no line feed after it): the export looks cut short"
                .to_string(),
        ));
    }
    Ok(true)
}

fn too_long(max_line: usize) -> String {
    format!(
        "the line is longer than {max_line} bytes (unfolded), more than any value of up to source.ldif_max_value_bytes needs"
    )
}

impl<R: BufRead> LdifReader<R> {
    pub fn new(input: R) -> Self {
        Self::with_limits(input, LdifLimits::default())
    }

    pub fn with_limits(input: R, limits: LdifLimits) -> Self {
        Self {
            input,
            max_line: limits.max_line_bytes(),
            limits,
            line_no: 0,
            line: Vec::new(),
            ahead: Vec::new(),
            ahead_no: None,
            trailer: Trailer::default(),
            done: false,
        }
    }

    /// Next logical line into `self.line` (folded continuations joined), skipping
    /// comments; its first line's number, `None` at the end of the input.
    fn logical_line(&mut self) -> Result<Option<usize>, LdifError> {
        loop {
            let no = match self.ahead_no.take() {
                Some(no) => {
                    std::mem::swap(&mut self.line, &mut self.ahead);
                    no
                }
                None => {
                    let no = self.line_no + 1;
                    if !physical_line(&mut self.input, &mut self.line, no, self.max_line)? {
                        return Ok(None);
                    }
                    self.line_no = no;
                    no
                }
            };
            if self.line.first() == Some(&b' ') {
                return Err((
                    no,
                    "a continuation line (starting with a space) with no line before it to continue"
                        .to_string(),
                ));
            }
            // Continuation lines: a single leading space is removed and the rest appended.
            loop {
                let next = self.line_no + 1;
                if !physical_line(&mut self.input, &mut self.ahead, next, self.max_line)? {
                    break;
                }
                self.line_no = next;
                if self.ahead.first() != Some(&b' ') {
                    self.ahead_no = Some(next);
                    break;
                }
                if self.line.is_empty() {
                    return Err((
                        next,
                        "a line starting with a space after an empty line: a line holding only whitespace does not separate records, and there is nothing here to continue"
                            .to_string(),
                    ));
                }
                if self.line.len() + self.ahead.len() - 1 > self.max_line {
                    return Err((no, too_long(self.max_line)));
                }
                self.line.extend_from_slice(&self.ahead[1..]);
            }
            if self.line.first() == Some(&b'#') {
                let text = String::from_utf8_lossy(&self.line);
                self.trailer.comment(no, &text)?;
                continue;
            }
            return Ok(Some(no));
        }
    }

    /// The next content record, `None` at the (whole) end of the input.
    pub fn next_record(&mut self) -> Result<Option<LdifRecord>, LdifError> {
        if self.done {
            return Ok(None);
        }
        let mut block: Option<Block> = None;
        loop {
            let Some(no) = self.logical_line()? else {
                self.done = true;
                if let Some(b) = block {
                    return Err((
                        self.line_no,
                        format!(
                            "the file ends inside the {} that starts on line {} (no empty line after it): the export looks cut short; a whole export ends every record with an empty line",
                            b.what(),
                            b.line()
                        ),
                    ));
                }
                self.trailer.end(self.line_no)?;
                return Ok(None);
            };
            if self.line.is_empty() {
                match block.take() {
                    None => continue,
                    Some(Block::Entry(r)) if r.attrs.is_empty() => {
                        return Err((
                            r.line,
                            "the record has a DN but no attributes (cut short after its dn: line?)"
                                .to_string(),
                        ));
                    }
                    Some(Block::Entry(r)) => {
                        self.trailer.since += 1;
                        return Ok(Some(r));
                    }
                    Some(Block::Result { line, code: None }) => {
                        return Err((
                            line,
                            "ldapsearch's search result has no \"result:\" line".to_string(),
                        ));
                    }
                    Some(Block::Result {
                        code: Some((no, code, text)),
                        ..
                    }) if code != 0 => {
                        return Err((
                            no,
                            format!(
                                "the search that wrote this export ended with result {code} ({text}), not 0 (Success): the export is not whole"
                            ),
                        ));
                    }
                    Some(Block::Result { .. } | Block::Reference { .. }) => continue,
                }
            }
            let line = std::str::from_utf8(&self.line).map_err(|_| {
                (
                    no,
                    "the line is not valid UTF-8 (a value that is not text must be base64-encoded, after \"::\")"
                        .to_string(),
                )
            })?;
            if line.bytes().all(|b| b.is_ascii_whitespace()) {
                return Err((
                    no,
                    "a line holding only whitespace: records are separated by empty lines, and inside a record it is not an attribute"
                        .to_string(),
                ));
            }
            let (name, value) =
                parse_attr_line(line, self.limits.max_value_bytes).map_err(|p| (no, p))?;
            if let Some(b) = &block
                && name.eq_ignore_ascii_case("dn")
            {
                return Err((
                    no,
                    format!(
                        "a second \"dn:\" inside the {} that starts on line {}: records are separated by an empty line (a line holding only spaces continues the line before it)",
                        b.what(),
                        b.line()
                    ),
                ));
            }
            match block.as_mut() {
                None => block = self.open_block(no, &name, value)?,
                Some(Block::Entry(r)) => {
                    if name.eq_ignore_ascii_case("changetype") {
                        // ldifde writes "changetype: add" on every exported record.
                        if value.eq_ignore_ascii_case(b"add") {
                            continue;
                        }
                        return Err((
                            no,
                            format!(
                                "change records (changetype: {}) are not an export; only content records are read",
                                String::from_utf8_lossy(&value)
                            ),
                        ));
                    }
                    if name == "-" {
                        return Err((no, "change records are not supported".into()));
                    }
                    r.attrs.push((name, value));
                }
                Some(Block::Result { code, .. }) => {
                    if name.eq_ignore_ascii_case("result") {
                        let text = String::from_utf8_lossy(&value);
                        let (num, rest) = text.split_once(' ').unwrap_or((&text, ""));
                        let num = num.parse().map_err(|_| {
                            (
                                no,
                                format!(
                                    "ldapsearch's result line {:?} has no result code",
                                    truncate(&text)
                                ),
                            )
                        })?;
                        *code = Some((no, num, truncate(rest)));
                    }
                }
                Some(Block::Reference { .. }) => {}
            }
        }
    }

    /// The first line of a block outside any: an entry's `dn:`, or (in `ldapsearch`'s
    /// output without `-L`) a search result's `search:` or a reference's `ref:`.
    fn open_block(
        &mut self,
        no: usize,
        name: &str,
        value: Vec<u8>,
    ) -> Result<Option<Block>, LdifError> {
        if name.eq_ignore_ascii_case("version") {
            if value != b"1" {
                return Err((
                    no,
                    format!(
                        "LDIF version {:?} is not read (only version: 1)",
                        String::from_utf8_lossy(&value)
                    ),
                ));
            }
            return Ok(None);
        }
        if name.eq_ignore_ascii_case("search") {
            return Ok(Some(Block::Result {
                line: no,
                code: None,
            }));
        }
        if name.eq_ignore_ascii_case("ref") {
            return Ok(Some(Block::Reference { line: no }));
        }
        if !name.eq_ignore_ascii_case("dn") {
            return Err((
                no,
                format!("expected \"dn:\" to start a record, found \"{name}:\""),
            ));
        }
        let dn =
            String::from_utf8(value).map_err(|_| (no, "the DN is not valid UTF-8".to_string()))?;
        self.trailer.close()?;
        Ok(Some(Block::Entry(LdifRecord {
            line: no,
            dn,
            attrs: Vec::new(),
        })))
    }
}

/// What lines between empty lines hold.
enum Block {
    /// A content record.
    Entry(LdifRecord),
    /// `ldapsearch`'s search result (without `-L`): `search: N`, `result: CODE TEXT`,
    /// controls. Its line, and the result line's number, code and text once read.
    Result {
        line: usize,
        code: Option<(usize, u32, String)>,
    },
    /// `ldapsearch`'s search reference (without `-L`): `ref: URL` lines. Not an entry.
    Reference { line: usize },
}

impl Block {
    fn line(&self) -> usize {
        match self {
            Block::Entry(r) => r.line,
            Block::Result { line, .. } | Block::Reference { line } => *line,
        }
    }

    fn what(&self) -> &'static str {
        match self {
            Block::Entry(_) => "record",
            Block::Result { .. } => "search result",
            Block::Reference { .. } => "search reference",
        }
    }
}

fn parse_attr_line(line: &str, max_value: usize) -> Result<(String, Vec<u8>), String> {
    if line == "-" {
        return Ok(("-".into(), Vec::new()));
    }
    let Some(colon) = line.find(':') else {
        return Err(format!(
            "expected \"attribute: value\", found {:?}",
            truncate(line)
        ));
    };
    let desc = &line[..colon];
    // Attribute options (";binary", ";lang-cy") are dropped: the base name is what we map.
    let name = desc.split(';').next().unwrap_or(desc).trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(format!("invalid attribute name {:?}", truncate(desc)));
    }
    let rest = &line[colon + 1..];
    let value = if let Some(b64) = rest.strip_prefix(':') {
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| format!("attribute {name}: invalid base64 value: {e}"))?
    } else if rest.starts_with('<') {
        return Err(format!(
            "attribute {name}: URL values (\":<\") are not read, for safety; inline the value"
        ));
    } else {
        rest.trim_start_matches(' ').as_bytes().to_vec()
    };
    if value.len() > max_value {
        return Err(format!(
            "attribute {name}: the value is {} bytes, more than source.ldif_max_value_bytes ({max_value})",
            value.len()
        ));
    }
    Ok((name.to_string(), value))
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Reads people from an LDIF file.
#[derive(Clone, Debug)]
pub struct LdifSource {
    pub path: PathBuf,
    pub anchor: AnchorKind,
    /// An entry is a person if it has one of these object classes (lowercase)…
    pub person_classes: Vec<String>,
    /// …and none of these.
    pub exclude_classes: Vec<String>,
    pub limits: LdifLimits,
}

const GROUP_CLASSES: [&str; 3] = ["group", "groupofnames", "groupofuniquenames"];

impl LdifSource {
    fn open(&self) -> Result<LdifReader<std::io::BufReader<std::fs::File>>, SourceError> {
        let f = std::fs::File::open(&self.path).map_err(|e| SourceError::Io {
            path: self.path.display().to_string(),
            source: e,
        })?;
        Ok(LdifReader::with_limits(
            std::io::BufReader::with_capacity(1 << 16, f),
            self.limits,
        ))
    }

    fn err(&self, (line, problem): LdifError) -> SourceError {
        SourceError::Ldif {
            path: self.path.display().to_string(),
            line,
            problem,
        }
    }

    /// First pass (only when a rule looks at groups): collect group member lists.
    fn read_groups(&self, req: &ReadRequest) -> Result<GroupIndex, SourceError> {
        let mut idx = GroupIndex::default();
        if !req.uses_groups {
            return Ok(idx);
        }
        let mut rd = self.open()?;
        while let Some(rec) = rd.next_record().map_err(|e| self.err(e))? {
            let classes = rec.object_classes();
            if !GROUP_CLASSES.iter().any(|g| classes.contains(*g)) {
                continue;
            }
            let members: BTreeSet<NormDn> = rec
                .attrs
                .iter()
                .filter(|(k, _)| {
                    k.eq_ignore_ascii_case("member") || k.eq_ignore_ascii_case("uniqueMember")
                })
                .map(|(_, v)| NormDn::new(&String::from_utf8_lossy(v)))
                .collect();
            idx.add_direct(NormDn::new(&rec.dn), members);
        }
        for g in &req.nested_groups {
            idx.expand(&NormDn::new(g));
        }
        Ok(idx)
    }

    pub fn read(
        &self,
        req: &ReadRequest,
        sink: &mut dyn EntrySink,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<ReadSummary, SourceError> {
        sink.groups(self.read_groups(req)?);
        let mut rd = self.open()?;
        let mut summary = ReadSummary::default();
        while let Some(rec) = rd.next_record().map_err(|e| self.err(e))? {
            if cancel.is_cancelled() {
                return Err(SourceError::Cancelled);
            }
            let classes = rec.object_classes();
            let is_person = self.person_classes.iter().any(|c| classes.contains(c))
                && !self.exclude_classes.iter().any(|c| classes.contains(c));
            if !is_person {
                continue;
            }
            let mut text: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut binary: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
            for (k, v) in rec.attrs {
                match String::from_utf8(v) {
                    Ok(s) => text.entry(k).or_default().push(s),
                    Err(e) => binary.entry(k).or_default().push(e.into_bytes()),
                }
            }
            summary.read += 1;
            sink.entry(SourceEntry::build(rec.dn, text, binary, &self.anchor))?;
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records_with(text: &[u8], max_value_bytes: usize) -> Result<Vec<LdifRecord>, LdifError> {
        let mut rd = LdifReader::with_limits(text, LdifLimits { max_value_bytes });
        let mut out = Vec::new();
        while let Some(r) = rd.next_record()? {
            out.push(r);
        }
        Ok(out)
    }

    fn records(text: &str) -> Result<Vec<LdifRecord>, LdifError> {
        records_with(text.as_bytes(), DEFAULT_MAX_VALUE_BYTES)
    }

    /// The error of reading `text`: its line and (a part of) its problem.
    #[track_caller]
    fn fails(text: &str, line: usize, problem: &str) {
        match records(text) {
            Ok(r) => panic!("{text:?} was read as {} records", r.len()),
            Err((l, p)) => {
                assert_eq!(l, line, "{text:?}: {p}");
                assert!(p.contains(problem), "{text:?}: {p:?} lacks {problem:?}");
            }
        }
    }

    /// The number of the line on which `needle` first appears in `text`.
    fn line_of(text: &str, needle: &str) -> usize {
        text[..text.find(needle).unwrap()].matches('\n').count() + 1
    }

    fn dns(text: &str) -> Vec<String> {
        records(text).unwrap().into_iter().map(|r| r.dn).collect()
    }

    #[test]
    fn folded_base64_comments_and_crlf() {
        let text = "version: 1\r\n# a comment\r\n#  folded comment\r\n \
                    continues\r\ndn: CN=Si\r\n ân Evans,DC=x\r\nchangetype: add\r\ngivenName:: U2nDom4=\r\nsn: Evans\r\ncn;lang-cy: x\r\n\r\n\r\ndn: CN=b,DC=x\nobjectGUID:: dqxArwESBUKD+6FwcQnotA==\n\n";
        let recs = records(text).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].dn, "CN=Siân Evans,DC=x");
        assert_eq!(recs[0].line, 5);
        assert_eq!(
            recs[0].attrs,
            vec![
                ("givenName".to_string(), "Siân".as_bytes().to_vec()),
                ("sn".to_string(), b"Evans".to_vec()),
                ("cn".to_string(), b"x".to_vec()),
            ]
        );
        assert_eq!(recs[1].attrs[0].1.len(), 16);
        // A continuation holding only spaces is part of the value it continues.
        let r = records("dn: a\ndescription: x\n   \n y\n\n").unwrap();
        assert_eq!(r[0].attrs[0].1, b"x  y");
    }

    #[test]
    fn errors_name_the_line() {
        fails("dn: a\nfoo\n", 2, "expected \"attribute: value\"");
        fails("sn: x\n", 1, "expected \"dn:\"");
        fails("dn: a\nchangetype: modify\n", 2, "change records");
        fails("dn: a\nphoto:< file:///etc/passwd\n", 2, "URL values");
        fails("dn: a\nx:: !!!\n", 2, "base64");
        fails("version: 2\n\ndn: a\nsn: x\n\n", 1, "only version: 1");
        fails("dn: a\nsn: \u{ff}\n", 2, "");
        assert_eq!(records("").unwrap(), vec![]);
        assert_eq!(records("\n\n").unwrap(), vec![]);
        assert_eq!(records("# nothing exported\n").unwrap(), vec![]);
    }

    #[test]
    fn invalid_utf8_outside_base64_is_an_error() {
        let text = b"dn: a\nsn: \xff\xfe\n\n";
        let (line, problem) = records_with(text, DEFAULT_MAX_VALUE_BYTES).unwrap_err();
        assert_eq!(line, 2);
        assert!(problem.contains("not valid UTF-8"), "{problem}");
    }

    #[test]
    fn a_last_line_without_its_newline_is_an_error() {
        fails(
            "dn: a\nsn: x\n\ndn: b\nsn: y",
            5,
            "the file ends inside this line (no line feed after it)",
        );
        // Also where what was cut is a comment: the rest of the file is unknown.
        fails(
            "dn: a\nsn: x\n\n# numEntries: 1",
            4,
            "ends inside this line",
        );
        fails("dn: a\r\nsn: x\r\n\r", 3, "ends inside this line");
    }

    #[test]
    fn a_record_must_end_with_an_empty_line() {
        // Cut on a line boundary inside a record: what is missing is unknowable.
        fails(
            "dn: a\nsn: x\n\ndn: b\nsn: y\n",
            5,
            "the file ends inside the record that starts on line 4 (no empty line after it)",
        );
        assert_eq!(dns("dn: a\nsn: x\n\ndn: b\nsn: y\n\n"), ["a", "b"]);
        assert_eq!(dns("dn: a\r\nsn: x\r\n\r\n"), ["a"]);
    }

    #[test]
    fn a_dn_without_attributes_is_an_error() {
        // Cut right after the dn: line…
        fails(
            "dn: a\nsn: x\n\ndn: b\n",
            4,
            "ends inside the record that starts on line 4",
        );
        // …or after an empty line following it, or after ldifde's changetype line.
        fails("dn: a\nsn: x\n\ndn: b\n\n", 4, "a DN but no attributes");
        fails("dn: b\nchangetype: add\n\n", 1, "a DN but no attributes");
    }

    #[test]
    fn whitespace_only_lines_never_separate_records() {
        // The parser before this check read the first as ONE record: a line of one space
        // is a continuation (of "sn: x", adding nothing), so "dn: b" and "sn: y" became
        // attributes of a, and b was gone from the read. A tab line separated records.
        fails(
            "dn: a\nsn: x\n \ndn: b\nsn: y\n\n",
            4,
            "a second \"dn:\" inside the record that starts on line 1",
        );
        fails("dn: a\nsn: x\n  \ndn: b\nsn: y\n\n", 4, "a second \"dn:\"");
        fails("dn: a\nsn: x\n\t\ndn: b\nsn: y\n\n", 3, "only whitespace");
        fails(
            "dn: a\nsn: x\n\n \n\ndn: b\nsn: y\n\n",
            4,
            "after an empty line",
        );
        fails(" dn: a\nsn: x\n\n", 1, "no line before it to continue");
    }

    #[test]
    fn a_second_dn_inside_a_record_is_an_error() {
        fails(
            "dn: a\nsn: x\ndn: b\nsn: y\n\n",
            3,
            "a second \"dn:\" inside the record that starts on line 1",
        );
        fails("dn: a\nsn: x\nDN:: Yg==\nsn: y\n\n", 3, "a second \"dn:\"");
    }

    #[test]
    fn classic_mac_line_endings_are_an_error_and_crlf_is_not() {
        fails("dn: a\rsn: x\r\rdn: b\rsn: y\r\r", 1, "carriage return");
        fails("dn: a\r\nsn: x\ry\r\n\r\n", 2, "carriage return");
        fails("dn: a\nsn: x\0\n\n", 2, "NUL");
        assert_eq!(
            dns("dn: a\r\nsn: x\r\n\r\ndn: b\r\nsn: y\r\n\r\n"),
            ["a", "b"]
        );
    }

    #[test]
    fn lines_and_values_over_the_cap_are_errors() {
        let cap = 16;
        let max_line = LdifLimits {
            max_value_bytes: cap,
        }
        .max_line_bytes();
        assert_eq!(max_line, 24 + LINE_SLACK);
        let read = |t: String| records_with(t.as_bytes(), cap);
        let x = |n: usize| "x".repeat(n);
        let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
        // At the cap: read, whether plain, base64 or folded.
        assert!(read(format!("dn: a\nsn: {}\n\n", x(cap))).is_ok());
        assert!(read(format!("dn: a\nsn:: {}\n\n", b64(cap))).is_ok());
        // One byte over, after unfolding or decoding: the line that starts the value.
        for text in [
            format!("dn: a\nsn: {}\n\n", x(cap + 1)),
            format!("dn: a\nsn:: {}\n\n", b64(cap + 1)),
            format!("dn: a\nsn: {}\n {}\n\n", x(10), x(cap - 9)),
            format!("dn: a\nobjectClass: user\nphoto:: {}\n\n", b64(cap + 1)),
        ] {
            let (line, problem) = read(text.clone()).unwrap_err();
            assert_eq!(line, 2 + usize::from(text.contains("photo")), "{text:?}");
            assert!(
                problem
                    .contains("the value is 17 bytes, more than source.ldif_max_value_bytes (16)"),
                "{problem}"
            );
        }
        let (line, problem) = read(format!("dn: {}\nsn: x\n\n", x(cap + 1))).unwrap_err();
        assert_eq!(
            (line, problem.contains("attribute dn: the value is 17")),
            (1, true)
        );
        // A line longer than any value under the cap can need is refused as it is read,
        // newline or not (a file of one endless line is not held in memory)…
        for tail in ["\n\n", ""] {
            let (line, problem) = read(format!("dn: a\nsn: {}{tail}", x(max_line))).unwrap_err();
            assert_eq!(line, 2);
            assert!(
                problem.contains(&format!("longer than {max_line} bytes")),
                "{problem}"
            );
        }
        // …and so is one that grows that long by unfolding.
        let folded = format!("dn: a\nsn: x\n{}\n", format!(" {}\n", x(100)).repeat(11));
        let (line, problem) = read(folded).unwrap_err();
        assert_eq!(line, 2);
        assert!(problem.contains("longer than"), "{problem}");
    }

    // Real output of ldapsearch (OpenLDAP 2.5.13) against slapd, four entries, two of
    // them people: `-L`; `-L -E pr=2/noprompt` (two pages); no `-L`; and no `-L` with a
    // size limit of 2 (`-z 2`, exit status 4).
    const SEARCH_L: &str = "version: 1\n\n#\n# LDAPv3\n# base <dc=example,dc=org> with scope subtree\n# filter: (objectclass=*)\n# requesting: ALL\n#\n\n# example.org\ndn: dc=example,dc=org\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example Care Group\n\n# people, example.org\ndn: ou=people,dc=example,dc=org\nobjectClass: organizationalUnit\nou: people\n\n# p1, people, example.org\ndn: uid=p1,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: p1\ncn: Ann Lee\nsn: Lee\ngivenName: Ann\ndescription: a long description that is certainly going to be folded by ldapse\n arch at seventy-six columns\n\n# p2, people, example.org\ndn: uid=p2,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: p2\ncn:: Wm/DqyBCcm9udMOr\nsn:: QnJvbnTDqw==\ngivenName:: Wm/Dqw==\n\n# search result\n\n# numResponses: 5\n# numEntries: 4\n";
    const SEARCH_L_PAGED: &str = "version: 1\n\n#\n# LDAPv3\n# base <dc=example,dc=org> with scope subtree\n# filter: (objectclass=*)\n# requesting: ALL\n# with pagedResults control: size=2\n#\n\n# example.org\ndn: dc=example,dc=org\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example Care Group\n\n# people, example.org\ndn: ou=people,dc=example,dc=org\nobjectClass: organizationalUnit\nou: people\n\n# search result\n# control: 1.2.840.113556.1.4.319 false MA0CAQAECAIAAAAAAAAA\n# pagedresults: cookie=AgAAAAAAAAA=\nversion: 1\n\n#\n# LDAPv3\n# base <dc=example,dc=org> with scope subtree\n# filter: (objectclass=*)\n# requesting: ALL\n# with pagedResults control: size=2\n#\n\n# p1, people, example.org\ndn: uid=p1,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: p1\ncn: Ann Lee\nsn: Lee\ngivenName: Ann\ndescription: a long description that is certainly going to be folded by ldapse\n arch at seventy-six columns\n\n# p2, people, example.org\ndn: uid=p2,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: p2\ncn:: Wm/DqyBCcm9udMOr\nsn:: QnJvbnTDqw==\ngivenName:: Wm/Dqw==\n\n# search result\n# control: 1.2.840.113556.1.4.319 false MAUCAQAEAA==\n# pagedresults: cookie=\n\n# numResponses: 6\n# numEntries: 4\n";
    const SEARCH_EXTENDED: &str = "# extended LDIF\n#\n# LDAPv3\n# base <dc=example,dc=org> with scope subtree\n# filter: (objectclass=*)\n# requesting: ALL\n#\n\n# example.org\ndn: dc=example,dc=org\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example Care Group\n\n# people, example.org\ndn: ou=people,dc=example,dc=org\nobjectClass: organizationalUnit\nou: people\n\n# p1, people, example.org\ndn: uid=p1,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: p1\ncn: Ann Lee\nsn: Lee\ngivenName: Ann\ndescription: a long description that is certainly going to be folded by ldapse\n arch at seventy-six columns\n\n# p2, people, example.org\ndn: uid=p2,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: p2\ncn:: Wm/DqyBCcm9udMOr\nsn:: QnJvbnTDqw==\ngivenName:: Wm/Dqw==\n\n# search result\nsearch: 2\nresult: 0 Success\n\n# numResponses: 5\n# numEntries: 4\n";
    const SEARCH_EXTENDED_LIMITED: &str = "# extended LDIF\n#\n# LDAPv3\n# base <dc=example,dc=org> with scope subtree\n# filter: (objectclass=*)\n# requesting: ALL\n#\n\n# example.org\ndn: dc=example,dc=org\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example Care Group\n\n# people, example.org\ndn: ou=people,dc=example,dc=org\nobjectClass: organizationalUnit\nou: people\n\n# search result\nsearch: 2\nresult: 4 Size limit exceeded\n\n# numResponses: 3\n# numEntries: 2\n";

    #[test]
    fn ldapsearch_output_with_its_trailer_is_read() {
        let all = [
            "dc=example,dc=org",
            "ou=people,dc=example,dc=org",
            "uid=p1,ou=people,dc=example,dc=org",
            "uid=p2,ou=people,dc=example,dc=org",
        ];
        assert_eq!(dns(SEARCH_L), all);
        assert_eq!(dns(SEARCH_L_PAGED), all);
        assert_eq!(dns(SEARCH_EXTENDED), all);
        // A search that found no one writes no numEntries line.
        let none = "version: 1\n\n#\n# LDAPv3\n# base <dc=example,dc=org> with scope subtree\n# filter: (uid=nobody)\n# requesting: ALL\n#\n\n# search result\n\n# numResponses: 1\n";
        assert_eq!(dns(none), Vec::<String>::new());
        // ldapsearch -LLL: no header, no trailer.
        assert_eq!(dns("dn: a\nsn: x\n\n"), ["a"]);
    }

    #[test]
    fn a_trailer_that_does_not_match_the_read_is_an_error() {
        let more = SEARCH_L.replace("# numEntries: 4", "# numEntries: 5");
        fails(
            &more,
            line_of(&more, "# numEntries"),
            "ldapsearch's trailer says the search returned 5 entries, but 4 records were read before it",
        );
        let fewer = SEARCH_L_PAGED.replace("# numEntries: 4", "# numEntries: 3");
        fails(
            &fewer,
            line_of(&fewer, "# numEntries"),
            "returned 3 entries, but 4 records",
        );
        // No numEntries line means no entries.
        let none = SEARCH_L.replace("# numEntries: 4\n", "");
        fails(
            &none,
            line_of(&none, "# numResponses"),
            "has no \"# numEntries\" line",
        );
        // Cut on a record boundary: without the trailer the header's promise is unkept.
        let cut = &SEARCH_L[..SEARCH_L.find("# p2,").unwrap()];
        fails(
            cut,
            cut.matches('\n').count(),
            "the export opens with ldapsearch's header (line 5) but does not end with its trailer",
        );
        let cut = &SEARCH_L[..SEARCH_L.find("# numEntries").unwrap()];
        fails(
            cut,
            line_of(cut, "# numResponses"),
            "no \"# numEntries\" line",
        );
    }

    #[test]
    fn a_search_result_other_than_success_is_an_error() {
        // ldapsearch without -L, its size limit hit after two entries.
        let limited = SEARCH_EXTENDED_LIMITED;
        fails(
            limited,
            line_of(limited, "result: 4"),
            "the search that wrote this export ended with result 4 (Size limit exceeded), not 0 (Success)",
        );
        let no_result = SEARCH_EXTENDED.replace("result: 0 Success\n", "");
        fails(
            &no_result,
            line_of(&no_result, "search: 2"),
            "has no \"result:\" line",
        );
        // Search references are not entries (nor counted as such).
        let with_ref = SEARCH_EXTENDED.replace(
            "# search result\n",
            "# search reference\nref: ldap://dc2.example.org/DC=other\n\n# search result\n",
        );
        assert_eq!(dns(&with_ref).len(), 4);
        let dn_in_result = SEARCH_EXTENDED.replace("search: 2\n", "search: 2\ndn: x\n");
        fails(
            &dn_in_result,
            line_of(&dn_in_result, "dn: x"),
            &format!(
                "a second \"dn:\" inside the search result that starts on line {}",
                line_of(&dn_in_result, "search: 2")
            ),
        );
    }

    /// A small export with every construct, cut at every byte: each cut is an error, or
    /// falls right after a record's empty line and reads exactly the records before it.
    #[test]
    fn every_cut_is_an_error_or_a_whole_shorter_export() {
        let text = "version: 1\n\n# header\ndn: CN=Si\n ân,DC=x\r\nchangetype: add\r\ngivenName:: U2nDom4=\r\nsn: Evans\r\n\r\n\
                    dn: CN=b,DC=x\nobjectGUID:: dqxArwESBUKD+6FwcQnotA==\ndescription: folded\n  value\n\n\n\
                    # between\ndn: CN=c,DC=x\nsn: c\n\n";
        let full = records(text).unwrap();
        assert_eq!(full.len(), 3);
        // Where each record ends: just after its terminating empty line.
        let ends: Vec<usize> = ["Evans\r\n\r\n", "value\n\n", "sn: c\n\n"]
            .iter()
            .map(|m| text.find(m).unwrap() + m.len())
            .collect();
        let bytes = text.as_bytes();
        let mut whole = 0;
        for cut in 0..=bytes.len() {
            let Ok(got) = records_with(&bytes[..cut], DEFAULT_MAX_VALUE_BYTES) else {
                continue;
            };
            whole += 1;
            let before = ends.iter().filter(|&&e| e <= cut).count();
            assert_eq!(got, full[..before], "cut at {cut}");
            // Only outside every record: before the first, or at or after one's end and
            // before the next one's dn:.
            let inside = [
                (text.find("dn: CN=Si").unwrap(), ends[0]),
                (text.find("dn: CN=b").unwrap(), ends[1]),
                (text.find("dn: CN=c").unwrap(), ends[2]),
            ]
            .iter()
            .any(|&(s, e)| s < cut && cut < e);
            assert!(!inside, "cut at {cut} inside a record was read as whole");
        }
        assert!(whole >= 4, "{whole}");
    }

    /// With ldapsearch's header and trailer even a cut on a record's end shows: every
    /// cut but the whole file is an error.
    #[test]
    fn every_cut_of_an_ldapsearch_l_export_is_an_error() {
        for text in [SEARCH_L, SEARCH_L_PAGED, SEARCH_EXTENDED] {
            let bytes = text.as_bytes();
            for cut in 0..bytes.len() {
                if let Ok(r) = records_with(&bytes[..cut], DEFAULT_MAX_VALUE_BYTES) {
                    // Only a file cut before the header's promise, and so of no one
                    // (which planning refuses while the directory holds accounts).
                    assert!(
                        r.is_empty() && !text[..cut].contains("# base <"),
                        "cut at {cut} of {text:?} read as whole"
                    );
                }
            }
            assert_eq!(records(text).unwrap().len(), 4);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap stand-in for fuzzing: deterministic pseudo-random inputs built from
        // LDIF-ish fragments and raw bytes. The reader must return records or errors.
        let parts: [&[u8]; 14] = [
            b"dn: ",
            b"dn:: ",
            b"\n",
            b"\r\n",
            b" ",
            b"#",
            b":",
            b"::",
            b"sn: x",
            b"-",
            b"changetype: add",
            b"\xff\xfe",
            b"# numEntries: 1",
            b"search: 2\nresult: 0 ok",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..5_000 {
            let mut input = Vec::new();
            for _ in 0..(seed % 24) {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let pick = (seed >> 33) as usize;
                if pick.is_multiple_of(5) {
                    input.push((pick >> 8) as u8);
                } else {
                    input.extend_from_slice(parts[pick % parts.len()]);
                }
            }
            let mut rd =
                LdifReader::with_limits(input.as_slice(), LdifLimits { max_value_bytes: 8 });
            for _ in 0..64 {
                match rd.next_record() {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}
