//! `check`: the configuration, the agreements as of today, the source (connect, bind,
//! what the server offers, what a read finds) and the directory (registry, refusals), as
//! a list of findings. Reads only, through the same stage calls as a plan.

use super::read::collect;
use super::{EngineError, Progress};
use crate::config::Config;
use crate::source::AnySource;
use crate::target::Target;
use std::collections::BTreeMap;
use time::Date;
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
    if let AnySource::Ldap(l) = &cfg.source {
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
                // Every bind would fail the same way: say what to do and stop here.
                r.fail(
                    "kerberos",
                    format!(
                        "no ticket: {e}; check the keytab (klist -k), the principal, \
                         source.sasl_host and that the KDC in krb5.conf (KRB5_CONFIG) answers"
                    ),
                );
                return Ok(r);
            }
        }
        let info = l.probe().await.map_err(EngineError::Probe)?;
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
    }
    let collected = collect(cfg, &cfg.source, None, progress, cancel).await?;
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
    for p in collected.persons.values() {
        *per_rule.entry(p.rule.as_str()).or_default() += 1;
    }
    for rule in &cfg.rules.rules {
        if let Some(n) = per_rule.get(rule.id.as_str()) {
            r.detail(format!("rule {}: {n} included", rule.id));
        }
    }
    let state = cfg.target.read_state(cancel).await?;
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
    Ok(r)
}
