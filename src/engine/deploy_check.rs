//! The deployment checks of `tansync check`: what a server needs beyond a valid
//! configuration — a state directory this user can write and nobody holds, certificates
//! (CA files and the servers' own) that do not expire within 30 days, a clock close
//! enough to the domain controller's for Kerberos. Each gives a finding with what to do.

use std::path::Path;
use std::time::Duration;
use time::OffsetDateTime;

/// Certificates expiring sooner than this are a problem (renewal takes lead time).
pub const CERT_WARNING_DAYS: i64 = 30;

/// Kerberos refuses a clock further than this from the KDC's (its default `clockskew`).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// How long a TLS handshake to fetch a server's certificate may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a check found: fine (with a description), or a problem and what to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok(String),
    Problem(String),
}

/// The state directory: it exists (or its parent lets the first run create it), this
/// user can write in it, and no other tansync process holds its lock.
pub fn state_dir(dir: &Path) -> Verdict {
    let shown = dir.display();
    if !dir.exists() {
        let parent = dir.parent().unwrap_or(Path::new("/"));
        return match probe_write(parent) {
            Ok(()) => Verdict::Ok(format!(
                "{shown} does not exist yet; the first run creates it"
            )),
            Err(e) => Verdict::Problem(format!(
                "{shown} does not exist and cannot be created ({}: {e}): create it, owned by \
                 the user tansync runs as (the package's service has StateDirectory=tansync)",
                parent.display()
            )),
        };
    }
    if let Err(e) = probe_write(dir) {
        return Verdict::Problem(format!(
            "{shown} is not writable by this user ({e}): give it to the user tansync runs as \
             (chown -R tansync: {shown})"
        ));
    }
    let lock = dir.join("lock");
    match std::fs::File::options().read(true).write(true).open(&lock) {
        // No lock file yet: nobody has run here.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Verdict::Problem(format!(
                "cannot open {}: {e}: give the state directory to the user tansync runs as",
                lock.display()
            ));
        }
        Ok(f) => match f.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Verdict::Problem(format!(
                    "{shown} is locked by another tansync process (a running `tansync run` \
                     service, or an apply or sync): apply, sync, run and quarantine clear \
                     refuse to start beside it (plan, status and approve-removals work); \
                     stop it first if it should not be running"
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Verdict::Problem(format!("cannot lock {}: {e}", lock.display()));
            }
        },
    }
    Verdict::Ok(format!("{shown}: writable, not locked"))
}

/// Create and remove a file in `dir`.
fn probe_write(dir: &Path) -> std::io::Result<()> {
    let p = dir.join(format!(".tansync-check-{}", std::process::id()));
    std::fs::File::create(&p)?;
    std::fs::remove_file(&p)
}

/// A certificate's subject and end of validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertValidity {
    pub subject: String,
    pub not_after: OffsetDateTime,
}

/// The validity of each certificate of a DER chain or bundle.
fn validities<'a>(ders: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<CertValidity>, String> {
    ders.into_iter()
        .map(|der| {
            let (_, cert) = x509_parser::parse_x509_certificate(der)
                .map_err(|e| format!("not an X.509 certificate: {e}"))?;
            Ok(CertValidity {
                subject: cert.subject().to_string(),
                not_after: cert.validity().not_after.to_datetime(),
            })
        })
        .collect()
}

/// The certificates of a PEM file (a CA bundle).
pub fn pem_file(path: &Path) -> Result<Vec<CertValidity>, String> {
    let certs = crate::tls::pem_certs(path)?;
    validities(certs.iter().map(|c| c.as_ref())).map_err(|e| format!("{}: {e}", path.display()))
}

/// The certificate chain a TLS server presents on `host:port`, verified as the agent
/// verifies it (`ca_file`, else the system's trust store): a chain that does not verify
/// is an error, as it would be for a read.
pub async fn server_chain(
    host: &str,
    port: u16,
    ca_file: Option<&Path>,
) -> Result<Vec<CertValidity>, String> {
    let config = crate::tls::client_config(ca_file)?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host} is not a host name or address: {e}"))?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let connect = async {
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
        connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}:{port}: {e}"))
    };
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, connect)
        .await
        .map_err(|_| {
            format!("no TLS handshake with {host}:{port} within {HANDSHAKE_TIMEOUT:?}")
        })??;
    let (_, session) = tls.get_ref();
    let chain = session
        .peer_certificates()
        .ok_or_else(|| format!("{host}:{port} presented no certificate"))?;
    validities(chain.iter().map(|c| c.as_ref()))
}

/// A problem for each certificate that has expired or expires within
/// [`CERT_WARNING_DAYS`]; else a line naming the one that expires first.
pub fn expiry(what: &str, certs: &[CertValidity], now: OffsetDateTime) -> Verdict {
    let Some(first) = certs.iter().min_by_key(|c| c.not_after) else {
        return Verdict::Problem(format!("{what}: no certificate"));
    };
    let left = first.not_after - now;
    let date = first.not_after.date();
    if left.is_negative() {
        Verdict::Problem(format!(
            "{what}: {} expired on {date}: renew it",
            first.subject
        ))
    } else if left.whole_days() < CERT_WARNING_DAYS {
        Verdict::Problem(format!(
            "{what}: {} expires on {date}, in {} days: renew it before then",
            first.subject,
            left.whole_days()
        ))
    } else {
        Verdict::Ok(format!(
            "{what}: valid until {date} ({} certificate{}, the first to expire: {})",
            certs.len(),
            if certs.len() == 1 { "" } else { "s" },
            first.subject
        ))
    }
}

/// How far this machine's clock is from the domain controller's (`currentTime` of its
/// root DSE, GeneralizedTime `YYYYMMDDHHMMSS.0Z`).
pub fn clock(dc_time: &str, now: OffsetDateTime) -> Verdict {
    let Some(dc) = generalized_time(dc_time) else {
        return Verdict::Problem(format!(
            "the domain controller's currentTime {dc_time:?} is not a GeneralizedTime"
        ));
    };
    let skew = (now - dc).unsigned_abs();
    let secs = skew.as_secs();
    let ahead = if now > dc { "ahead of" } else { "behind" };
    if skew > MAX_CLOCK_SKEW {
        Verdict::Problem(format!(
            "this machine's clock is {secs} s {ahead} the domain controller's: Kerberos \
             fails beyond {} s; synchronise both with NTP (timedatectl, chrony)",
            MAX_CLOCK_SKEW.as_secs()
        ))
    } else {
        Verdict::Ok(format!(
            "{secs} s {ahead} the domain controller (Kerberos allows {} s)",
            MAX_CLOCK_SKEW.as_secs()
        ))
    }
}

/// `YYYYMMDDHHMMSS[.f]Z` (what AD and Samba publish as `currentTime`).
fn generalized_time(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim().strip_suffix('Z')?;
    let whole = s.split('.').next()?;
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| whole[r].parse::<u16>().ok();
    let date = time::Date::from_calendar_date(
        i32::from(n(0..4)?),
        time::Month::try_from(u8::try_from(n(4..6)?).ok()?).ok()?,
        u8::try_from(n(6..8)?).ok()?,
    )
    .ok()?;
    let t = time::Time::from_hms(
        u8::try_from(n(8..10)?).ok()?,
        u8::try_from(n(10..12)?).ok()?,
        u8::try_from(n(12..14)?).ok()?,
    )
    .ok()?;
    Some(date.with_time(t).assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn clock_skew_beyond_five_minutes_is_a_problem() {
        let now = datetime!(2026-12-01 10:00:00 UTC);
        assert_eq!(
            clock("20261201100130.0Z", now),
            Verdict::Ok("90 s behind the domain controller (Kerberos allows 300 s)".into())
        );
        let Verdict::Problem(p) = clock("20261201095400.0Z", now) else {
            panic!("six minutes is too far")
        };
        assert!(p.contains("360 s ahead of"), "{p}");
        assert!(matches!(clock("yesterday", now), Verdict::Problem(_)));
        assert!(matches!(
            clock("20261301100000.0Z", now),
            Verdict::Problem(_)
        ));
    }

    #[test]
    fn certificates_expiring_within_thirty_days_are_a_problem() {
        let now = datetime!(2026-12-01 10:00 UTC);
        let cert = |days: i64| CertValidity {
            subject: format!("CN=in {days} days"),
            not_after: now + time::Duration::days(days),
        };
        assert!(matches!(
            expiry("CA", &[cert(400), cert(31)], now),
            Verdict::Ok(_)
        ));
        let Verdict::Problem(p) = expiry("CA", &[cert(400), cert(29)], now) else {
            panic!()
        };
        assert!(
            p.contains("CN=in 29 days expires on 2026-12-30, in 29 days"),
            "{p}"
        );
        let Verdict::Problem(p) = expiry("server", &[cert(-1)], now) else {
            panic!()
        };
        assert!(p.contains("expired on 2026-11-30"), "{p}");
        assert!(matches!(expiry("CA", &[], now), Verdict::Problem(_)));
    }

    #[test]
    fn a_state_directory_is_writable_and_its_lock_free() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(state_dir(d.path()), Verdict::Ok(_)));
        assert!(matches!(state_dir(&d.path().join("new")), Verdict::Ok(_)));
        let lock = std::fs::File::create(d.path().join("lock")).unwrap();
        lock.lock().unwrap();
        let Verdict::Problem(p) = state_dir(d.path()) else {
            panic!("a held lock is a problem")
        };
        assert!(p.contains("locked by another tansync process"), "{p}");
    }
}
