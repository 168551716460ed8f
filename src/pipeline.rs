//! Runs the read-and-decide half end to end: source → filter → model → diff → gate →
//! plan. Holds no write-capable client: a plan is a dry run by construction.

use crate::config::Config;
use crate::diff::{self, DiffInput};
use crate::filter::Decision;
use crate::gate::{self, GateInput};
use crate::ids::{ExternalId, NormDn, ObjectGuid, OdsCode};
use crate::model::mapping::map_entry_memo;
use crate::model::validate::PhoneMemo;
use crate::model::{Person, RejectReason, Rejection};
use crate::plan::{Plan, SourceSummary, TargetSummary};
use crate::source::{EntrySink, GroupIndex, ReadRequest, SourceEntry, SourceError};
use crate::target::{Target, TargetError, TargetState};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("reading the source failed, so no plan was made")]
    Source(#[from] SourceError),
    #[error("reading the NHS Directory state failed, so no plan was made")]
    Target(#[from] TargetError),
    #[error(
        "the source returned no one in scope while the directory holds {managed} accounts this agent manages; refusing to plan their removal (set safety.allow_empty_source = true if this is really intended)"
    )]
    EmptySource { managed: usize },
}

/// Who `tansync explain` asks about: a sAMAccountName, a DN or an objectGUID.
#[derive(Clone, Debug)]
pub enum Who {
    Dn(NormDn),
    Anchor(ExternalId),
    Account(String),
}

impl Who {
    pub fn parse(s: &str) -> Who {
        if let Ok(g) = ObjectGuid::parse(s) {
            return Who::Anchor(g.into());
        }
        if s.contains('=') {
            return Who::Dn(NormDn::new(s));
        }
        Who::Account(s.to_lowercase())
    }

    fn matches(&self, e: &SourceEntry, account_attrs: &[&str]) -> bool {
        match self {
            Who::Dn(d) => e.norm_dn == *d,
            Who::Anchor(x) => e.anchor.as_ref().is_ok_and(|a| a == x),
            Who::Account(a) => account_attrs
                .iter()
                .any(|attr| e.values(attr).iter().any(|v| v.to_lowercase() == *a)),
        }
    }
}

/// Attributes that name an account for [`Who::Account`].
pub const ACCOUNT_ATTRS: [&str; 3] = ["sAMAccountName", "uid", "userPrincipalName"];

/// What the filter/model stages made of the source.
#[derive(Debug, Default)]
pub struct Collected {
    pub read: usize,
    pub persons: BTreeMap<ExternalId, Person>,
    pub out_of_scope: BTreeSet<ExternalId>,
    pub rejected: Vec<Rejection>,
    /// Every anchor seen (duplicate detection).
    anchors: std::collections::HashSet<ExternalId>,
    pub groups: GroupIndex,
    /// Entries captured for `explain`.
    pub captured: Vec<SourceEntry>,
    /// With write-back configured: the write-back attribute's current value of every
    /// person in scope.
    pub write_back: BTreeMap<ExternalId, Option<String>>,
}

struct Collector<'a> {
    cfg: &'a Config,
    out: Collected,
    who: Option<&'a Who>,
    progress: Option<indicatif::ProgressBar>,
    phones: PhoneMemo,
    /// One shared copy of each ODS code: a handful of codes for every person.
    ods_codes: BTreeSet<OdsCode>,
}

impl EntrySink for Collector<'_> {
    fn groups(&mut self, index: GroupIndex) {
        self.out.groups = index;
    }

    fn entry(&mut self, e: SourceEntry) -> Result<(), SourceError> {
        self.out.read += 1;
        if let Some(pb) = &self.progress
            && self.out.read.is_multiple_of(256)
        {
            pb.set_position(self.out.read as u64);
        }
        if self.who.is_some_and(|w| w.matches(&e, &ACCOUNT_ATTRS)) {
            self.out.captured.push(e.clone());
        }
        let decision = self.cfg.rules.decide(&e, &self.out.groups);
        if let Ok(x) = &e.anchor
            && !self.out.anchors.insert(x.clone())
        {
            let first_dn = self
                .out
                .persons
                .get(x)
                .map(|p| p.dn.clone())
                .unwrap_or_else(|| "an earlier entry".to_string());
            // Two entries claim one anchor: neither can be trusted.
            let detail = format!("anchor {x} is shared by {first_dn:?} and {:?}", e.dn);
            if self.out.persons.remove(x).is_some() || self.out.out_of_scope.remove(x) {
                self.out.rejected.push(Rejection {
                    dn: first_dn,
                    external_id: Some(x.clone()),
                    reason: RejectReason::DuplicateAnchor,
                    detail: detail.clone(),
                });
            }
            self.out.rejected.push(Rejection {
                dn: e.dn,
                external_id: Some(x.clone()),
                reason: RejectReason::DuplicateAnchor,
                detail,
            });
            return Ok(());
        }
        match decision {
            Decision::Include(rule) => {
                match map_entry_memo(&e, rule, &self.cfg.mapping, &mut self.phones) {
                    Ok(mut p) => {
                        match self.ods_codes.get(&p.ods_code) {
                            Some(c) => p.ods_code = c.clone(),
                            None => {
                                self.ods_codes.insert(p.ods_code.clone());
                            }
                        }
                        if let Some(attr) = &self.cfg.write_back {
                            let current = e.first(attr).map(String::from);
                            self.out.write_back.insert(p.external_id.clone(), current);
                        }
                        self.out.persons.insert(p.external_id.clone(), p);
                    }
                    Err(r) => self.out.rejected.push(r),
                }
            }
            Decision::Exclude(_) | Decision::NoMatch => {
                if let Ok(x) = e.anchor {
                    self.out.out_of_scope.insert(x);
                }
            }
        }
        Ok(())
    }
}

impl Config {
    /// What the source must read for these rules and this mapping.
    pub fn read_request(&self) -> ReadRequest {
        let mut attributes = self.rules.attributes();
        attributes.extend(self.mapping.attributes().map(String::from));
        attributes.extend(ACCOUNT_ATTRS.map(String::from));
        attributes.extend(self.write_back.clone());
        ReadRequest {
            attributes,
            nested_groups: self.rules.nested_groups(),
            uses_groups: self.rules.uses_groups(),
        }
    }
}

fn progress_bar(enabled: bool) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} {pos} entries ({per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    pb.set_message("reading source:");
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(pb)
}

/// Forwards the read to the classifying thread in batches.
struct ChannelSink {
    tx: std::sync::mpsc::SyncSender<Batch>,
    batch: Vec<SourceEntry>,
}

enum Batch {
    Groups(GroupIndex),
    Entries(Vec<SourceEntry>),
}

const BATCH: usize = 256;

impl ChannelSink {
    fn flush(&mut self) -> Result<(), SourceError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let b = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.tx
            .send(Batch::Entries(b))
            .map_err(|_| SourceError::Aborted("the classifying thread stopped".into()))
    }
}

impl EntrySink for ChannelSink {
    fn groups(&mut self, index: GroupIndex) {
        // If the receiver is gone the read ends with an error at the next entry.
        let _ = self.tx.send(Batch::Groups(index));
    }

    fn entry(&mut self, entry: SourceEntry) -> Result<(), SourceError> {
        self.batch.push(entry);
        if self.batch.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }
}

/// Read and classify the whole source. Complete or an error.
///
/// On the multi-threaded runtime the read (LDAP decoding, or LDIF parsing) and the
/// classification (filter rules, mapping, phone-number validation) run on two threads,
/// so a large read uses both cores; elsewhere they run in turn.
pub async fn collect(
    cfg: &Config,
    who: Option<&Who>,
    progress: bool,
) -> Result<Collected, SourceError> {
    let mut c = Collector {
        cfg,
        out: Collected::default(),
        who,
        progress: progress_bar(progress),
        phones: PhoneMemo::default(),
        ods_codes: BTreeSet::new(),
    };
    let req = cfg.read_request();
    let handle = tokio::runtime::Handle::current();
    let res = if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
        tokio::task::block_in_place(|| {
            std::thread::scope(|scope| {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(16);
                let consumer = scope.spawn(move || -> Result<Collector<'_>, SourceError> {
                    // Load the phone-number metadata (every region's patterns compiled,
                    // ~0.3 s of CPU) while the reader is still connecting and waiting for
                    // its first page, instead of on the first entry with a phone.
                    crate::model::validate::load_phone_metadata();
                    for b in rx {
                        match b {
                            Batch::Groups(g) => c.groups(g),
                            Batch::Entries(es) => {
                                for e in es {
                                    c.entry(e)?;
                                }
                            }
                        }
                    }
                    Ok(c)
                });
                let mut sink = ChannelSink {
                    tx,
                    batch: Vec::with_capacity(BATCH),
                };
                let read = handle
                    .block_on(cfg.source.read(&req, &mut sink))
                    .and_then(|_| sink.flush());
                drop(sink);
                let done = consumer.join().map_err(|_| {
                    SourceError::Aborted("classifying the source entries failed".into())
                });
                match (read, done) {
                    (Err(e), _) => Err(e),
                    (Ok(()), Ok(r)) => r,
                    (Ok(()), Err(e)) => Err(e),
                }
            })
        })
    } else {
        cfg.source.read(&req, &mut c).await.map(|_| c)
    };
    match res {
        Ok(mut c) => {
            if let Some(pb) = &c.progress {
                pb.finish_and_clear();
            }
            // Only needed while reading; not held through planning (the run's peak).
            c.out.anchors = Default::default();
            Ok(c.out)
        }
        Err(e) => Err(e),
    }
}

/// `Write` into a SHA-256 (for hashing serialised state without buffering it).
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Fingerprint of the source and target state a plan starts from: same inputs, same
/// fingerprint; any change to a person in scope, the scope itself, or the directory's
/// accounts or organisations changes it.
pub fn fingerprint(c: &Collected, t: &TargetState) -> String {
    let mut w = HashWriter(Sha256::new());
    let mut rejected: Vec<&Rejection> = c.rejected.iter().collect();
    rejected.sort_by(|a, b| (&a.dn, a.reason).cmp(&(&b.dn, b.reason)));
    let mut accounts: Vec<_> = t.accounts.iter().collect();
    accounts.sort_by(|a, b| a.target_id.cmp(&b.target_id));
    // Serialising owned plain data into a hasher cannot fail.
    let _ = serde_json::to_writer(&mut w, &(&c.persons, &c.out_of_scope, &rejected));
    let _ = serde_json::to_writer(&mut w, &(&t.organisations, &accounts));
    format!("sha256:{}", hex::encode(w.0.finalize()))
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// The result of planning, with what `explain` needs.
pub struct PlanRun {
    pub plan: Plan,
    pub collected: Collected,
    pub target: TargetState,
}

/// Plan from already-read state (pure).
pub fn decide(
    cfg: &Config,
    collected: &Collected,
    target: &TargetState,
    target_kind: &'static str,
    now: OffsetDateTime,
) -> Result<Plan, PipelineError> {
    // The fingerprint (serialising every person and account into SHA-256) does not depend
    // on the diff: hash on a second core meanwhile. Same bytes hashed, same value.
    std::thread::scope(|scope| {
        let fp = scope.spawn(|| fingerprint(collected, target));
        decide_with(cfg, collected, target, target_kind, now, || {
            fp.join().unwrap_or_else(|_| fingerprint(collected, target))
        })
    })
}

fn decide_with(
    cfg: &Config,
    collected: &Collected,
    target: &TargetState,
    target_kind: &'static str,
    now: OffsetDateTime,
    fingerprint: impl FnOnce() -> String,
) -> Result<Plan, PipelineError> {
    let managed_orgs = cfg.agreements.sharing.keys().cloned().collect();
    let rejected_ids: BTreeSet<ExternalId> = collected
        .rejected
        .iter()
        .filter_map(|r| r.external_id.clone())
        .collect();
    let d = diff::diff(&DiffInput {
        persons: &collected.persons,
        out_of_scope: &collected.out_of_scope,
        rejected: &rejected_ids,
        target,
        agent_id: &cfg.agent_id,
        managed_orgs: &managed_orgs,
        soft_match: &cfg.soft_match,
        nhsmail_domain: &cfg.nhsmail_domain,
        restore_window: time::Duration::days(cfg.restore_window_days),
        now,
    });
    if collected.persons.is_empty() && d.managed > 0 && !cfg.allow_empty_source {
        return Err(PipelineError::EmptySource { managed: d.managed });
    }
    let g = gate::gate(GateInput {
        candidates: d.operations,
        persons: &collected.persons,
        target,
        agreements: &cfg.agreements,
        policy: &cfg.policy,
        managed: d.managed,
        now,
    });
    let mut blocked = d.blocked;
    blocked.extend(g.blocked);
    Ok(Plan::new(
        rfc3339(now),
        fingerprint(),
        SourceSummary {
            kind: cfg.source.kind().to_string(),
            read: collected.read,
            in_scope: collected.persons.len(),
            rejected: collected.rejected.len(),
        },
        TargetSummary {
            kind: target_kind.to_string(),
            read: target.accounts.len(),
        },
        g.operations,
        blocked,
        collected.rejected.clone(),
        d.unchanged + g.unchanged,
    ))
}

/// Read source and target, then plan.
pub async fn plan<T: Target>(
    cfg: &Config,
    target: &T,
    now: OffsetDateTime,
    who: Option<&Who>,
    progress: bool,
) -> Result<PlanRun, PipelineError> {
    let collected = collect(cfg, who, progress).await?;
    let state = target.read_state().await?;
    let plan = decide(cfg, &collected, &state, target.kind(), now)?;
    Ok(PlanRun {
        plan,
        collected,
        target: state,
    })
}
