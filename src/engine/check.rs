//! `check`: the configuration, the agreements as of today, the source (connect, bind,
//! what the server offers, what a read finds) and the directory (registry, refusals), as
//! a list of findings. Reads only, through the same stage calls as a plan.

use super::deploy_check::{self, Verdict};
use super::read::Collected;
use super::read::collect;
use super::{EngineError, Progress};
use crate::config::Config;
use crate::error_text::chain;
use crate::source::AnySource;
use crate::target::portal::PortalTarget;
use crate::target::{AnyTarget, Target, TargetError, TargetState};
use std::collections::BTreeMap;
use time::{Date, OffsetDateTime};
use tokio_util::sync::CancellationToken;

/// How a finding reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// Checked and fine.
    Ok,
    /// Something that will block or fail operations.
    Problem,
    /// A detail under the line above.
    Detail,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub mark: Mark,
    /// What was checked (`source`, `target`, …); empty for details and problems.
    pub label: String,
    pub text: String,
}

#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    pub findings: Vec<Finding>,
}

impl CheckReport {
    fn ok(&mut self, label: &str, text: impl Into<String>) {
        self.push(Mark::Ok, label, text);
    }
    /// A labelled check that failed (shown with ✗, counted as a problem).
    fn fail(&mut self, label: &str, text: impl Into<String>) {
        self.push(Mark::Problem, label, text);
    }
    fn problem(&mut self, text: impl Into<String>) {
        self.push(Mark::Problem, "", text);
    }
    fn detail(&mut self, text: impl Into<String>) {
        self.push(Mark::Detail, "", text);
    }
    fn verdict(&mut self, label: &str, v: Verdict) {
        match v {
            Verdict::Ok(text) => self.ok(label, text),
            Verdict::Problem(text) => self.fail(label, text),
        }
    }
    fn push(&mut self, mark: Mark, label: &str, text: impl Into<String>) {
        self.findings.push(Finding {
            mark,
            label: label.to_string(),
            text: text.into(),
        });
    }

    pub fn problems(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.mark == Mark::Problem)
            .count()
    }
}

fn agreements(cfg: &Config, today: Date, r: &mut CheckReport) {
    match &cfg.agreements.partnering {
        Some(p) if p.validity.covers(today) => r.ok(
            "partnering agreement",
            format!("{} valid until {}", p.reference, p.validity.until),
        ),
        Some(p) => r.problem(format!(
            "partnering agreement {} is not valid today ({} to {})",
            p.reference, p.validity.from, p.validity.until
        )),
        None => r.problem("no partnering agreement: every operation will be blocked"),
    }
    for s in cfg.agreements.sharing.values() {
        let valid = s.validity.covers(today);
        let line = format!(
            "sharing {} with {}: {} {} to {}; operations: {}; attributes: {}",
            s.reference,
            s.ods_code,
            if valid { "valid" } else { "NOT VALID TODAY" },
            s.validity.from,
            s.validity.until,
            s.operations
                .iter()
                .map(|o| o.name())
                .collect::<Vec<_>>()
                .join(", "),
            s.attributes
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join(", "),
        );
        if valid {
            r.detail(line);
        } else {
            r.problem(line);
        }
    }
}

/// The server's side: the state directory, secret files, and the certificates of the CA
/// files and of the servers (see [`deploy_check`]).
async fn deployment(cfg: &Config, r: &mut CheckReport) {
    r.verdict("state directory", deploy_check::state_dir(&cfg.state_dir));
    if cfg.allow_insecure_secret_files {
        r.problem(
            "secrets: [safety] allow_insecure_secret_files = true lets group or others read the password and token files: chmod 600 them and remove the setting",
        );
    } else {
        r.ok(
            "secrets",
            "every secret file is a regular file readable by its owner only (checked as the configuration loaded; systemd credentials are the service's own)",
        );
    }
    let now = OffsetDateTime::now_utc();
    let mut cas: Vec<(&str, &std::path::Path)> = Vec::new();
    // (what, URL, CA file) of each TLS server the agent talks to.
    let mut servers: Vec<(&str, &str, Option<&std::path::Path>)> = Vec::new();
    if let AnySource::Ldap(l) = &cfg.source {
        if let Some(ca) = &l.ca_file {
            cas.push(("source CA file", ca));
        }
        servers.push(("source server certificate", &l.url, l.ca_file.as_deref()));
    }
    if let Some(s) = &cfg.scim {
        if let Some(ca) = &s.ca_file {
            cas.push(("directory CA file", ca));
        }
        servers.push(("directory server certificate", &s.url, s.ca_file.as_deref()));
    }
    for (what, path) in cas {
        match deploy_check::pem_file(path) {
            Ok(certs) => r.verdict(
                what,
                deploy_check::expiry(&path.display().to_string(), &certs, now),
            ),
            Err(e) => r.problem(format!("{what}: {e}")),
        }
    }
    for (what, url, ca) in servers {
        let Some((host, port)) = tls_endpoint(url) else {
            // ldap:// with StartTLS or plain http to loopback: no TLS handshake of its own
            // to look at here (StartTLS is verified at every bind).
            continue;
        };
        match deploy_check::server_chain(&host, port, ca).await {
            Ok(chain) => r.verdict(
                what,
                deploy_check::expiry(&format!("{host}:{port}"), &chain, now),
            ),
            Err(e) => r.problem(format!("{what}: {e}")),
        }
    }
}

/// Host and port of an `ldaps://` or `https://` URL.
fn tls_endpoint(url: &str) -> Option<(String, u16)> {
    let u = url::Url::parse(url).ok()?;
    let default = match u.scheme() {
        "ldaps" => 636,
        "https" => 443,
        _ => return None,
    };
    let host = match u.host()? {
        url::Host::Domain(d) => d.to_string(),
        url::Host::Ipv4(a) => a.to_string(),
        url::Host::Ipv6(a) => a.to_string(),
    };
    Some((host, u.port().unwrap_or(default)))
}

/// Connect, bind and describe the server (LDAP sources); false when that failed.
async fn source(cfg: &Config, r: &mut CheckReport) -> bool {
    let AnySource::Ldap(l) = &cfg.source else {
        return true;
    };
    match l.kerberos_ticket() {
        None => {}
        Some(Ok(k)) => r.ok(
            "kerberos",
            format!(
                "ticket for {} as {} from the KDC (keytab {})",
                k.service(),
                k.principal,
                k.keytab.display()
            ),
        ),
        Some(Err(e)) => {
            // Every bind would fail the same way: say what to do and skip the source.
            r.fail(
                "kerberos",
                format!(
                    "no ticket: {e}; check the keytab (klist -k), the principal, \
                     source.sasl_host and that the KDC in krb5.conf (KRB5_CONFIG) answers"
                ),
            );
            return false;
        }
    }
    let info = match l.probe().await {
        Ok(info) => info,
        Err(e) => {
            r.problem(chain(&EngineError::Probe(e)));
            return false;
        }
    };
    if let Some(t) = &info.current_time {
        r.verdict("clock", deploy_check::clock(t, OffsetDateTime::now_utc()));
    }
    r.ok(
        "source",
        format!(
            "{} — bound as {} over {}; server: {}; paged results: {}; in-chain matching: {}",
            l.url,
            l.identity(),
            info.tls,
            info.vendor.as_deref().unwrap_or("unknown"),
            if info.paged_results { "yes" } else { "NO" },
            if info.in_chain { "yes" } else { "no" }
        ),
    );
    if !info.paged_results {
        r.problem("the server does not offer paged results: large reads will fail");
    }
    true
}

fn source_read(cfg: &Config, collected: &Collected, r: &mut CheckReport) {
    r.ok(
        "source read",
        format!(
            "{} entries: {} in scope, {} out of scope, {} rejected",
            collected.read,
            collected.persons.len(),
            collected.out_of_scope.len(),
            collected.rejected.len()
        ),
    );
    let mut per_rule: BTreeMap<&str, usize> = BTreeMap::new();
    for p in collected.persons.iter() {
        *per_rule.entry(p.rule.as_str()).or_default() += 1;
    }
    for rule in &cfg.rules.rules {
        if let Some(n) = per_rule.get(rule.id.as_str()) {
            r.detail(format!("rule {}: {n} included", rule.id));
        }
    }
}

fn target(cfg: &Config, state: &TargetState, r: &mut CheckReport) {
    r.ok(
        "target",
        format!(
            "{} {}: {} organisations, {} accounts",
            cfg.target.kind(),
            cfg.target.location(),
            state.organisations.len(),
            state.accounts.len()
        ),
    );
    for (ods, answer) in &state.refused {
        r.problem(format!(
            "the directory refuses {ods}'s accounts although a sharing agreement lists it: {answer}"
        ));
    }
    for ods in cfg.agreements.sharing.keys() {
        if !state.organisations.contains_key(ods) {
            r.problem(format!(
                "{ods} has a sharing agreement but is not in the directory's organisation registry"
            ));
        }
    }
}

/// The Portal's files: the template (checked as the configuration loaded), the batch
/// folder, and the report a plan would read now (its path, time and rows), read once
/// for the target line after it too.
fn portal(p: &PortalTarget, r: &mut CheckReport) -> Result<TargetState, TargetError> {
    let s = &p.settings;
    let t = &s.template;
    let blank = t
        .columns
        .iter()
        .filter(|c| **c == crate::target::portal::Column::Blank)
        .count();
    r.ok(
        "upload template",
        format!(
            "{}: {} columns ({} fields, {blank} left blank); batches of up to {} rows, results column {:?}",
            t.path.display(),
            t.headings.len(),
            t.fields().count(),
            s.batch_size,
            s.results_column
        ),
    );
    if s.out_dir.is_dir() {
        r.ok("batch folder", s.out_dir.display().to_string());
    } else {
        r.ok(
            "batch folder",
            format!("{} (created on the first export)", s.out_dir.display()),
        );
    }
    let report = match p.read_report() {
        Ok(report) => report,
        Err(e) => {
            r.fail("mailbox report", chain(&e));
            return Err(e);
        }
    };
    r.ok(
        "mailbox report",
        format!(
            "{} (modified {}): {} rows, {} of the organisations managed here, {} of others (skipped); {}",
            report.path.display(),
            crate::timefmt::rfc3339(report.modified),
            report.state.accounts.len() + report.other_organisations,
            report.state.accounts.len(),
            report.other_organisations,
            report.sha256
        ),
    );
    Ok(report.state)
}

/// Check everything `plan` and `apply` rely on, as of `today`.
pub async fn check(
    cfg: &Config,
    today: Date,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<CheckReport, EngineError> {
    let mut r = CheckReport::default();
    r.ok("configuration", cfg.file.display().to_string());
    r.ok(
        "filters",
        format!(
            "{} rules from {}",
            cfg.rules.rules.len(),
            cfg.filter_files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    agreements(cfg, today, &mut r);
    deployment(cfg, &mut r).await;
    // Every part is checked even when one fails, so that one run lists everything to
    // fix; a failure is a ✗ line with the error and its causes.
    if source(cfg, &mut r).await {
        match collect(cfg, &cfg.source, None, progress, cancel).await {
            Ok(collected) => source_read(cfg, &collected, &mut r),
            Err(e) => r.problem(format!("source read: {}", chain(&e))),
        }
    }
    let read = match &cfg.target {
        AnyTarget::Portal(p) => portal(p, &mut r),
        other => other.read_state(cancel).await,
    };
    match read {
        Ok(state) => target(cfg, &state, &mut r),
        // The report's own ✗ line says what is wrong.
        Err(_) if matches!(cfg.target, AnyTarget::Portal(_)) => {}
        Err(e) => r.problem(format!(
            "target {} {}: {}",
            cfg.target.kind(),
            cfg.target.location(),
            chain(&e)
        )),
    }
    Ok(r)
}
