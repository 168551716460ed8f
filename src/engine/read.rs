//! Read the whole source through the filter and model stages: every entry is decided by
//! the rules ([`crate::filter`]) and, if included, mapped and validated
//! ([`crate::model::mapping`]). Complete or an error; nothing is written.
//!
//! On the multi-threaded runtime the read (LDAP decoding, or LDIF parsing) and the
//! classification (rules, mapping, phone-number validation) run on two threads, so a large
//! read uses both cores; elsewhere they run in turn.

use super::Progress;
use crate::config::Config;
use crate::filter::{Action, Decision, RuleTrace};
use crate::ids::{ExternalId, NormDn, ObjectGuid, OdsCode, RuleId};
use crate::model::mapping::map_entry_memo;
use crate::model::validate::PhoneMemo;
use crate::model::{Field, Person, Persons, RejectReason, Rejection};
use crate::source::delta::{Delta, Watermark};
use crate::source::{EntrySink, GroupIndex, ReadRequest, Source, SourceEntry, SourceError};
use std::collections::{BTreeMap, BTreeSet};
use tokio_util::sync::CancellationToken;

/// Who `tansync explain` asks about: a sAMAccountName, a DN or an objectGUID.
#[derive(Clone, Debug)]
pub enum Who {
    Dn(NormDn),
    Anchor(ExternalId),
    Account(String),
}

/// Attributes that name an account for [`Who::Account`].
pub const ACCOUNT_ATTRS: [&str; 3] = ["sAMAccountName", "uid", "userPrincipalName"];

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

    fn matches(&self, e: &SourceEntry) -> bool {
        match self {
            Who::Dn(d) => e.norm_dn == *d,
            Who::Anchor(x) => e.anchor.as_ref().is_ok_and(|a| a == x),
            Who::Account(a) => ACCOUNT_ATTRS
                .iter()
                .any(|attr| e.values(attr).iter().any(|v| v.to_lowercase() == *a)),
        }
    }
}

/// What the read made of one entry `explain` asked about: the very results the plan
/// used, recorded as they were computed.
#[derive(Clone, Debug)]
pub struct Captured {
    pub entry: SourceEntry,
    /// Every rule with every condition evaluated, in order.
    pub traces: Vec<RuleTrace>,
    /// The deciding rule and its action; `None`: no rule matched (excluded).
    pub decided_by: Option<(RuleId, Action)>,
    /// For an included entry: the ODS code the rule assigns (or why not), the raw values
    /// the mapping read, and the mapped person or the rejection.
    pub ods_code: Option<Result<OdsCode, String>>,
    pub raw: BTreeMap<Field, String>,
    pub mapped: Option<Result<Person, Rejection>>,
}

/// What the filter and model stages made of the source.
#[derive(Debug, Default)]
pub struct Collected {
    pub read: usize,
    pub persons: Persons,
    pub out_of_scope: BTreeSet<ExternalId>,
    pub rejected: Vec<Rejection>,
    /// The source's display name of each rejected entry that has one, by DN (the human
    /// plan names the person; the plan JSON does not carry it).
    pub rejected_names: BTreeMap<String, String>,
    pub groups: GroupIndex,
    /// Entries captured for `explain`.
    pub captured: Vec<Captured>,
    /// With write-back configured: the write-back attribute's current value of every
    /// person in scope.
    pub write_back: BTreeMap<ExternalId, Option<String>>,
}

struct Collector<'a> {
    cfg: &'a Config,
    out: Collected,
    who: Option<&'a Who>,
    progress: &'a dyn Progress,
    cancel: &'a CancellationToken,
    phones: PhoneMemo,
    /// One shared copy of each ODS code: a handful of codes for every person.
    ods_codes: BTreeSet<OdsCode>,
    /// Every anchor seen (duplicate detection), with the person's place in `persons`
    /// where the entry is in scope.
    anchors: std::collections::HashMap<ExternalId, Option<usize>>,
    /// The people in scope in read order, sorted into `Collected::persons` when the
    /// read is done, less those at the places in `shared` (a later entry claimed the
    /// same anchor). Not a vector of `Option`s: taking the `None`s out of that needs a
    /// second vector as large (20 MB at 100,000 people, then the plan's peak).
    persons: Vec<Person>,
    shared: Vec<usize>,
}

impl Collector<'_> {
    fn note_rejected_name(&mut self, e: &SourceEntry) {
        let name = self
            .cfg
            .mapping
            .fields
            .get(&Field::DisplayName)
            .and_then(|attr| e.first(attr));
        if let Some(name) = name {
            self.out
                .rejected_names
                .insert(e.dn.clone(), name.to_string());
        }
    }
}

/// One debug line per person in scope (`TANSYNC_LOG=tansync::engine=debug`). Personal
/// data goes in named fields only, which the log formatter redacts by default; never in
/// the message.
fn log_in_scope(p: &Person) {
    tracing::debug!(
        external_id = %p.external_id,
        ods = %p.ods_code,
        dn = %p.dn,
        display_name = p.get(Field::DisplayName),
        email = p.get(Field::Email),
        mobile = p.get(Field::Mobile),
        telephone = p.get(Field::Telephone),
        "in scope"
    );
    for w in &p.warnings {
        tracing::debug!(
            external_id = %w.external_id,
            dn = %w.dn,
            field = %w.field,
            reason = %code(&w.reason),
            detail = %w.detail,
            "optional field dropped"
        );
    }
}

/// A reason's code as the plan writes it (`invalid_mobile`).
pub(super) fn code(reason: &RejectReason) -> String {
    crate::plan::render::code(reason)
}

fn log_rejected(r: &Rejection) {
    tracing::debug!(
        external_id = r.external_id.as_ref().map(tracing::field::display),
        dn = %r.dn,
        reason = %code(&r.reason),
        detail = %r.detail,
        "entry rejected"
    );
}

impl EntrySink for Collector<'_> {
    fn groups(&mut self, index: GroupIndex) {
        self.out.groups = index;
    }

    fn entry(&mut self, e: SourceEntry) -> Result<(), SourceError> {
        self.out.read += 1;
        if self.out.read.is_multiple_of(256) {
            if self.cancel.is_cancelled() {
                return Err(SourceError::Cancelled);
            }
            self.progress.reading(self.out.read);
        }
        let capture = self.who.is_some_and(|w| w.matches(&e));
        let (decision, traces) = if capture {
            let (d, t) = self.cfg.rules.explain(&e, &self.out.groups);
            (d, Some(t))
        } else {
            (self.cfg.rules.decide(&e, &self.out.groups), None)
        };
        let mut captured = traces.map(|traces| Captured {
            entry: e.clone(),
            traces,
            decided_by: decision.rule_id().cloned().zip(match decision {
                Decision::Include(_) => Some(Action::Include),
                Decision::Exclude(_) => Some(Action::Exclude),
                Decision::NoMatch => None,
            }),
            ods_code: None,
            raw: BTreeMap::new(),
            mapped: None,
        });
        if let Ok(x) = &e.anchor
            && let Some(&first_at) = self.anchors.get(x)
        {
            // An anchor's place is forgotten (`None`) when it is shared, so `first_at`
            // never names a place in `shared`.
            let first = first_at.and_then(|i| self.persons.get(i));
            if let Some(name) = first.and_then(|p| p.get(Field::DisplayName)) {
                let dn = first.map(|p| p.dn.clone()).unwrap_or_default();
                self.out.rejected_names.insert(dn, name.to_string());
            }
            let first_dn = first
                .map(|p| p.dn.clone())
                .unwrap_or_else(|| "an earlier entry".to_string());
            self.note_rejected_name(&e);
            // Two entries claim one anchor: neither can be trusted.
            let detail = format!("anchor {x} is shared by {first_dn:?} and {:?}", e.dn);
            let first_in_scope = first_at.is_some();
            self.shared.extend(first_at);
            self.anchors.insert(x.clone(), None);
            if first_in_scope || self.out.out_of_scope.remove(x) {
                self.out.rejected.push(Rejection {
                    dn: first_dn,
                    external_id: Some(x.clone()),
                    reason: RejectReason::DuplicateAnchor,
                    detail: detail.clone(),
                });
            }
            let r = Rejection {
                dn: e.dn,
                external_id: Some(x.clone()),
                reason: RejectReason::DuplicateAnchor,
                detail,
            };
            log_rejected(&r);
            self.out.rejected.push(r);
            self.out.captured.extend(captured);
            return Ok(());
        }
        if let Ok(x) = &e.anchor {
            self.anchors.insert(x.clone(), None);
        }
        match decision {
            Decision::Include(rule) => {
                let mapped = map_entry_memo(&e, rule, &self.cfg.mapping, &mut self.phones);
                if let Some(c) = &mut captured {
                    c.ods_code = Some(rule.ods_code(&e));
                    c.raw = self.cfg.mapping.raw_values(&e, rule);
                    c.mapped = Some(mapped.clone());
                }
                match mapped {
                    Ok(mut p) => {
                        match self.ods_codes.get(&p.ods_code) {
                            Some(c) => p.ods_code = c.clone(),
                            None => {
                                self.ods_codes.insert(p.ods_code.clone());
                            }
                        }
                        if let Some(w) = &self.cfg.write_back {
                            let current = e.first(&w.attribute).map(String::from);
                            self.out.write_back.insert(p.external_id.clone(), current);
                        }
                        log_in_scope(&p);
                        self.anchors
                            .insert(p.external_id.clone(), Some(self.persons.len()));
                        self.persons.push(p);
                    }
                    Err(r) => {
                        log_rejected(&r);
                        self.note_rejected_name(&e);
                        self.out.rejected.push(r);
                    }
                }
            }
            Decision::Exclude(_) | Decision::NoMatch => {
                tracing::trace!(dn = %e.dn, rule = ?decision.rule_id(), "out of scope");
                if let Ok(x) = e.anchor {
                    self.out.out_of_scope.insert(x);
                }
            }
        }
        self.out.captured.extend(captured);
        Ok(())
    }
}

impl Config {
    /// What the source must read for these rules and this mapping.
    pub fn read_request(&self) -> ReadRequest {
        let mut attributes = self.rules.attributes();
        attributes.extend(self.mapping.attributes().map(String::from));
        attributes.extend(ACCOUNT_ATTRS.map(String::from));
        attributes.extend(self.write_back.as_ref().map(|w| w.attribute.clone()));
        ReadRequest {
            attributes,
            nested_groups: self.rules.nested_groups(),
            uses_groups: self.rules.uses_groups(),
        }
    }
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

/// Read and classify the whole source. Complete or an error (also
/// [`SourceError::Cancelled`] once `cancel` fires). `who`: also capture what happened to
/// the entries it names (for `explain`).
pub async fn collect<S: Source>(
    cfg: &Config,
    source: &S,
    who: Option<&Who>,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<Collected, SourceError> {
    collect_since(cfg, source, None, who, progress, cancel)
        .await
        .map(|(c, _)| c)
}

/// The full read (`since: None`) or the delta since a watermark, as the source's
/// [`Source::read_delta`] hands it over.
async fn read_into<S: Source>(
    source: &S,
    req: &ReadRequest,
    since: Option<&Watermark>,
    sink: &mut dyn EntrySink,
    cancel: &CancellationToken,
) -> Result<Option<Delta>, SourceError> {
    match since {
        None => source.read(req, sink, cancel).await.map(|_| None),
        Some(w) => source.read_delta(req, w, sink, cancel).await.map(Some),
    }
}

/// [`collect`], or with `since` the source's delta since that watermark through the
/// same filter and model stages: what changed, classified as a full read would, and
/// the source's [`Delta`] (`Delta::Full`: the watermark cannot be used, and `Collected`
/// must not be planned from).
pub async fn collect_since<S: Source>(
    cfg: &Config,
    source: &S,
    since: Option<&Watermark>,
    who: Option<&Who>,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<(Collected, Option<Delta>), SourceError> {
    let mut c = Collector {
        cfg,
        out: Collected::default(),
        who,
        progress,
        cancel,
        phones: PhoneMemo::default(),
        ods_codes: BTreeSet::new(),
        anchors: Default::default(),
        persons: Vec::new(),
        shared: Vec::new(),
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
                    .block_on(read_into(source, &req, since, &mut sink, cancel))
                    .and_then(|d| sink.flush().map(|_| d));
                drop(sink);
                let done = consumer.join().map_err(|_| {
                    SourceError::Aborted("classifying the source entries failed".into())
                });
                match (read, done) {
                    (Err(e), _) => Err(e),
                    (Ok(d), Ok(r)) => r.map(|c| (c, d)),
                    (Ok(_), Err(e)) => Err(e),
                }
            })
        })
    } else {
        read_into(source, &req, since, &mut c, cancel)
            .await
            .map(|d| (c, d))
    };
    progress.read_done();
    let (c, delta) = res?;
    if cancel.is_cancelled() {
        return Err(SourceError::Cancelled);
    }
    // The anchors are only needed while reading: not held through planning.
    let Collector {
        mut out,
        mut persons,
        mut shared,
        ..
    } = c;
    // In place: the read's vector, less the duplicates, sorted (see `Persons`).
    shared.sort_unstable();
    let mut place = 0;
    persons.retain(|_| {
        let keep = shared.binary_search(&place).is_err();
        place += 1;
        keep
    });
    out.persons = Persons::new(persons);
    Ok((out, delta))
}
