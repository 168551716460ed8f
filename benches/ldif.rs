//! The LDIF source alone: `cargo bench --bench ldif`.
//!
//! Writes LDIF_BENCH_N (200,000) AD-style user records to a temporary file, in the shape
//! `ldapsearch -LLL` writes them (lines folded at 76 columns, base64 `objectGUID` and
//! non-ASCII names, three long `memberOf` values each), then times
//! `tansync::source::ldif::LdifSource::read` over it: parsing, unfolding, base64 decoding
//! and building each `SourceEntry`, into a sink that only counts. The file is read once
//! untimed first, so every timed run reads it from the page cache. Figures go in
//! BENCHMARKS.md; there is no target beyond "no slower than before a parser change".

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};
use tansync::source::ldif::{LdifLimits, LdifSource};
use tansync::source::{AnchorKind, EntrySink, GroupIndex, ReadRequest, SourceEntry, SourceError};
use tokio_util::sync::CancellationToken;

const GIVEN: [&str; 8] = [
    "Amelia", "Oliver", "Siân", "George", "Zoë", "Noah", "Priya", "Rhys",
];
const FAMILY: [&str; 8] = [
    "Smith", "Jones", "Brontë", "Patel", "Khan", "Evans", "Okafor", "Nowak",
];
const TITLES: [&str; 4] = ["Staff Nurse", "Consultant", "Registrar", "Midwife"];

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One attribute line as ldapsearch writes it: base64 unless plain ASCII, folded at 76.
fn line(out: &mut String, name: &str, value: &[u8]) {
    let safe = value.iter().all(|&b| (0x20..0x7f).contains(&b))
        && !value.starts_with(b" ")
        && !value.starts_with(b":")
        && !value.starts_with(b"<");
    let text = if safe {
        format!("{name}: {}", String::from_utf8_lossy(value))
    } else {
        format!("{name}:: {}", b64(value))
    };
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut width = 76;
    while start < bytes.len() {
        let end = (start + width).min(bytes.len());
        if start > 0 {
            out.push(' ');
        }
        // Generated text is ASCII once base64-encoded, so any byte is a char boundary.
        out.push_str(&text[start..end]);
        out.push('\n');
        start = end;
        width = 75;
    }
}

fn record(out: &mut String, i: u64) {
    let given = GIVEN[(i % 8) as usize];
    let family = FAMILY[(i / 8 % 8) as usize];
    let dn =
        format!("CN={given} {family} {i},OU=Staff,OU=Northgate General,DC=northgate,DC=example");
    line(out, "dn", dn.as_bytes());
    for c in ["top", "person", "organizationalPerson", "user"] {
        line(out, "objectClass", c.as_bytes());
    }
    let mut guid = [0u8; 16];
    guid[..8].copy_from_slice(&i.to_le_bytes());
    guid[8..].copy_from_slice(&(i ^ 0x5555_5555).to_be_bytes());
    line(out, "objectGUID", &guid);
    line(out, "sAMAccountName", format!("u{i:07}").as_bytes());
    line(out, "givenName", given.as_bytes());
    line(out, "sn", family.as_bytes());
    line(out, "displayName", format!("{given} {family}").as_bytes());
    line(out, "title", TITLES[(i % 4) as usize].as_bytes());
    line(out, "department", b"Emergency Department");
    line(out, "physicalDeliveryOfficeName", b"Northgate General");
    line(out, "mail", format!("u{i:07}@northgate.example").as_bytes());
    line(
        out,
        "telephoneNumber",
        format!("0113 496 {:04}", i % 1000).as_bytes(),
    );
    line(
        out,
        "mobile",
        format!("07123 4{:05}", i % 100_000).as_bytes(),
    );
    line(out, "employeeID", format!("NG{i:07}").as_bytes());
    line(out, "userAccountControl", b"512");
    line(out, "company", b"RXA");
    for g in [
        "All Staff",
        "Clinical Staff in the Emergency Department",
        "NHSmail Eligible",
    ] {
        line(
            out,
            "memberOf",
            format!("CN={g},OU=Groups,OU=Northgate General,DC=northgate,DC=example").as_bytes(),
        );
    }
    out.push('\n');
}

struct Count(usize);

impl EntrySink for Count {
    fn groups(&mut self, _: GroupIndex) {}
    fn entry(&mut self, e: SourceEntry) -> Result<(), SourceError> {
        self.0 += 1;
        black_box(e);
        Ok(())
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; a filter argument (as for libtest) is ignored.
    let n: u64 = std::env::var("LDIF_BENCH_N")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(200_000);
    let reps: usize = std::env::var("LDIF_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.ldif");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        let mut buf = String::new();
        for i in 0..n {
            buf.clear();
            record(&mut buf, i);
            f.write_all(buf.as_bytes())?;
        }
        f.flush()?;
    }
    let size = std::fs::metadata(&path)?.len();
    let source = LdifSource {
        path: path.clone(),
        anchor: AnchorKind::ObjectGuid,
        person_classes: vec!["user".into()],
        exclude_classes: vec!["computer".into()],
        limits: LdifLimits::default(),
    };
    let req = ReadRequest::default();
    let cancel = CancellationToken::new();
    let run = || -> Result<Duration, SourceError> {
        let mut sink = Count(0);
        let t = Instant::now();
        let summary = source.read(&req, &mut sink, &cancel)?;
        let d = t.elapsed();
        assert_eq!((summary.read, sink.0), (n as usize, n as usize));
        Ok(d)
    };
    println!(
        "ldif bench: {n} records, {:.1} MB ({} bytes a record)",
        size as f64 / 1e6,
        size / n.max(1)
    );
    run()?; // warm the page cache
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        times.push(run()?);
    }
    let runs: Vec<String> = times.iter().map(|d| secs(*d)).collect();
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "  LdifSource::read, median of {reps}: {} ({:.0} MB/s); runs {}",
        secs(median),
        size as f64 / 1e6 / median.as_secs_f64(),
        runs.join(", ")
    );
    Ok(())
}
