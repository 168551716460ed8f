//! Delta reads from LDAP (see [`crate::source::delta`]): what changed since a watermark.
//!
//! - **Active Directory** (the root DSE advertises the AD capability OID): `uSNChanged`
//!   above the watermark's `highestCommittedUSN`, pinned to one domain controller by its
//!   `dsServiceName` and `invocationId`. Deleted objects come from `CN=Deleted Objects`
//!   through the Show Deleted control, by `objectGUID`.
//! - **Generic LDAP** (OpenLDAP): `entryCSN`, which back_mdb keeps on every entry with or
//!   without the syncprov overlay and which has an ordering rule (`CSNOrderingMatch`), so
//!   `(!(entryCSN<=X))` is exactly "changed after X". Chosen over `modifyTimestamp`,
//!   whose one-second resolution either re-reads a second's changes or misses some; and
//!   over RFC 4533 refreshOnly, which needs the syncprov overlay on the server. The high-
//!   water mark is the naming context's `contextCSN` where syncprov keeps one, else the
//!   greatest `entryCSN` under the naming context. OpenLDAP cannot show deletions
//!   without accesslog or syncrepl: the full reconcile removes them.
//!
//! Both: the changed entries under the base DNs that match the configured filter go to
//! the sink as in a full read (with the same group index). Entries changed elsewhere in
//! the naming context, or changed so that the filter no longer matches, are evidence
//! that they left the read's scope: their anchors are reported with the deleted ones.
//! The next watermark is the one read *before* the changed entries, so a change made
//! during the delta is read again next time, never missed.
//!
//! Never does: use a watermark from another server, kind or (AD) restored database; read
//! absence as removal.

use super::{LdapSource, SourceError};
use crate::ids::{ExternalId, NormDn, ObjectGuid};
use crate::source::delta::{Delta, Watermark};
use crate::source::{EntrySink, ReadRequest, SourceEntry};
use ldap3::controls::RawControl;
use ldap3::{Ldap, Scope, SearchEntry};
use std::collections::BTreeSet;
use tokio_util::sync::CancellationToken;

/// The AD capability OID (LDAP_CAP_ACTIVE_DIRECTORY_OID); Samba advertises it too.
const AD_CAPABILITY: &str = "1.2.840.113556.1.4.800";
/// The RFC 4533 content synchronisation control: advertised where OpenLDAP's syncprov
/// overlay runs, the only case in which `contextCSN` is kept current.
const SYNC_CONTROL: &str = "1.3.6.1.4.1.4203.1.9.1.1";
/// LDAP_SERVER_SHOW_DELETED_OID: lets a search see tombstones.
const SHOW_DELETED: &str = "1.2.840.113556.1.4.417";
/// `Watermark::kind` for AD update sequence numbers on one DC.
pub const KIND_AD_USN: &str = "ad_usn";
/// `Watermark::kind` for OpenLDAP change sequence numbers.
pub const KIND_LDAP_CSN: &str = "ldap_csn";

/// What the root DSE says that deltas need.
#[derive(Debug, Default)]
struct RootDse {
    ad: bool,
    /// The server advertises content synchronisation (syncprov): `contextCSN` is live.
    sync: bool,
    ds_service_name: Option<String>,
    highest_usn: Option<String>,
    naming_contexts: Vec<String>,
}

/// The naming context (partition) `base` lies in: the longest of `contexts` that is
/// `base` or an ancestor of it.
fn naming_context_of<'a>(base: &str, contexts: &'a [String]) -> Option<&'a String> {
    let base = NormDn::new(base);
    contexts
        .iter()
        .filter(|nc| !nc.is_empty() && base.is_within(&NormDn::new(nc)))
        .max_by_key(|nc| NormDn::new(nc).as_str().len())
}

/// Why an AD watermark cannot be used against the DC as it is now (`current`), or the
/// USN the delta starts after.
fn usable_ad(since: &Watermark, current: &Watermark) -> Result<u64, String> {
    if since.kind != KIND_AD_USN {
        return Err(format!(
            "the watermark is of kind {:?} and this source is Active Directory ({KIND_AD_USN})",
            since.kind
        ));
    }
    if !since.server.eq_ignore_ascii_case(&current.server) {
        return Err(format!(
            "the watermark belongs to domain controller {:?} and this read reached {:?}; \
             update sequence numbers are per domain controller",
            since.server, current.server
        ));
    }
    if since.invocation_id != current.invocation_id {
        return Err(format!(
            "the domain controller's invocationId changed from {} to {} (its database was \
             restored)",
            since.invocation_id.as_deref().unwrap_or("none"),
            current.invocation_id.as_deref().unwrap_or("none")
        ));
    }
    let parse = |w: &Watermark| {
        w.position
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("the position {:?} is not a USN", w.position))
    };
    let (from, now) = (parse(since)?, parse(current)?);
    if now < from {
        return Err(format!(
            "highestCommittedUSN went back from {from} to {now} on the domain controller"
        ));
    }
    Ok(from)
}

/// Why a CSN watermark cannot be used against this server, if it cannot.
fn usable_csn(since: &Watermark, url: &str, context_csn: Option<&str>) -> Result<(), String> {
    if since.kind != KIND_LDAP_CSN {
        return Err(format!(
            "the watermark is of kind {:?} and this source is generic LDAP ({KIND_LDAP_CSN})",
            since.kind
        ));
    }
    if since.server != url {
        return Err(format!(
            "the watermark belongs to {:?} and this source is {url:?}",
            since.server
        ));
    }
    if !is_csn(&since.position) {
        return Err(format!("the position {:?} is not a CSN", since.position));
    }
    match context_csn {
        Some(now) if now < since.position.as_str() => Err(format!(
            "the server's contextCSN went back from {} to {now}",
            since.position
        )),
        _ => Ok(()),
    }
}

/// An OpenLDAP 2.4+ CSN: `YYYYmmddHHMMSS.ffffffZ#cccccc#sid#mmmmmm`, which orders as
/// text (fixed-width fields), so the greatest string is the latest change.
fn is_csn(s: &str) -> bool {
    let parts: Vec<&str> = s.split('#').collect();
    let hex = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_hexdigit());
    match parts.as_slice() {
        [time, count, sid, modc] => {
            time.len() == 22
                && time.ends_with('Z')
                && time
                    .chars()
                    .enumerate()
                    .all(|(i, c)| c.is_ascii_digit() || (i == 14 && c == '.') || i == 21)
                && hex(count)
                && hex(sid)
                && hex(modc)
        }
        _ => false,
    }
}

/// The first value of an attribute, names compared case-insensitively.
fn first(e: &SearchEntry, attr: &str) -> Option<String> {
    e.attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .and_then(|(_, v)| v.first().cloned())
}

/// A binary GUID attribute (text or binary, as ldap3 sorts it) in the AD string form.
fn guid(e: &SearchEntry, attr: &str) -> Option<String> {
    let bin = e
        .bin_attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .and_then(|(_, v)| v.first().cloned());
    let raw = bin.or_else(|| first(e, attr).map(String::into_bytes))?;
    ObjectGuid::from_bytes(&raw).ok().map(|g| g.to_string())
}

impl LdapSource {
    /// One entry by a base search (`what` names it in errors); `None` if it does not exist.
    async fn base_entry(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        attrs: &[&str],
        what: &str,
        cancel: &CancellationToken,
    ) -> Result<Option<SearchEntry>, SourceError> {
        let context = format!("read {what}");
        let search = ldap.with_timeout(self.operation_timeout).search(
            dn,
            Scope::Base,
            "(objectClass=*)",
            attrs.to_vec(),
        );
        let ldap3::SearchResult(entries, res) = tokio::select! {
            r = search => r.map_err(self.ldap_err(&context))?,
            () = cancel.cancelled() => return Err(SourceError::Cancelled),
        };
        if res.rc == 32 {
            return Ok(None);
        }
        self.check_result(&context, res)?;
        match entries.into_iter().next() {
            None => Ok(None),
            Some(re) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                SearchEntry::construct(re)
            }))
            .map(Some)
            .map_err(|_| {
                SourceError::Aborted(format!(
                    "LDAP {}: {context}: the server sent an entry that cannot be decoded",
                    self.url
                ))
            }),
        }
    }

    async fn root_dse(
        &self,
        ldap: &mut Ldap,
        cancel: &CancellationToken,
    ) -> Result<RootDse, SourceError> {
        let attrs = [
            "supportedCapabilities",
            "supportedControl",
            "dsServiceName",
            "highestCommittedUSN",
            "namingContexts",
        ];
        let Some(e) = self
            .base_entry(ldap, "", &attrs, "the root DSE", cancel)
            .await?
        else {
            return Ok(RootDse::default());
        };
        let values = |k: &str| {
            e.attrs
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        Ok(RootDse {
            ad: values("supportedCapabilities")
                .iter()
                .any(|c| c == AD_CAPABILITY),
            sync: values("supportedControl").iter().any(|c| c == SYNC_CONTROL),
            ds_service_name: first(&e, "dsServiceName"),
            highest_usn: first(&e, "highestCommittedUSN"),
            naming_contexts: values("namingContexts"),
        })
    }

    /// The naming contexts the base DNs lie in (each once), or the base DNs themselves
    /// where the root DSE names none that holds them.
    fn contexts(&self, dse: &RootDse) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for base in &self.base_dns {
            let nc = naming_context_of(base, &dse.naming_contexts)
                .cloned()
                .unwrap_or_else(|| base.clone());
            if !out.iter().any(|o| NormDn::new(o) == NormDn::new(&nc)) {
                out.push(nc);
            }
        }
        out
    }

    /// The DC's watermark now: its identity and `highestCommittedUSN`.
    async fn ad_watermark(
        &self,
        ldap: &mut Ldap,
        dse: &RootDse,
        cancel: &CancellationToken,
    ) -> Result<Watermark, SourceError> {
        let missing = |what: &str| {
            SourceError::refused(
                &self.url,
                format!("the root DSE of this Active Directory server has no {what}"),
            )
        };
        let server = dse
            .ds_service_name
            .clone()
            .ok_or_else(|| missing("dsServiceName"))?;
        let position = dse
            .highest_usn
            .clone()
            .ok_or_else(|| missing("highestCommittedUSN"))?;
        let settings = self
            .base_entry(
                ldap,
                &server,
                &["invocationId"],
                "the domain controller's invocationId",
                cancel,
            )
            .await?;
        let invocation_id = settings.as_ref().and_then(|e| guid(e, "invocationId"));
        if invocation_id.is_none() {
            return Err(SourceError::refused(
                &self.url,
                format!(
                    "cannot read the invocationId of {server}: without it a restored \
                     domain controller would not be noticed"
                ),
            ));
        }
        Ok(Watermark {
            kind: KIND_AD_USN.to_string(),
            server,
            invocation_id,
            position,
        })
    }

    /// `contextCSN` of the naming contexts (the greatest value), where syncprov keeps one
    /// current. A `contextCSN` on a server without syncprov (left by `slapadd -w`, say)
    /// is stale and never used.
    async fn context_csn(
        &self,
        ldap: &mut Ldap,
        dse: &RootDse,
        contexts: &[String],
        cancel: &CancellationToken,
    ) -> Result<Option<String>, SourceError> {
        let mut best: Option<String> = None;
        if !dse.sync {
            return Ok(None);
        }
        for nc in contexts {
            let Some(e) = self
                .base_entry(ldap, nc, &["contextCSN"], "contextCSN", cancel)
                .await?
            else {
                continue;
            };
            for v in e
                .attrs
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("contextCSN"))
                .flat_map(|(_, v)| v)
            {
                if is_csn(v) && best.as_deref().is_none_or(|b| v.as_str() > b) {
                    best = Some(v.clone());
                }
            }
        }
        Ok(best)
    }

    /// Entries under the naming contexts matching `filter`: their anchors, and (`csn`:
    /// generic LDAP) the greatest `entryCSN` among them.
    async fn changed_anchors(
        &self,
        ldap: &mut Ldap,
        contexts: &[String],
        filter: &str,
        csn: bool,
        cancel: &CancellationToken,
    ) -> Result<(BTreeSet<ExternalId>, Option<String>), SourceError> {
        let mut attrs = vec![self.anchor.attribute().to_string()];
        if csn {
            attrs.push("entryCSN".to_string());
        }
        let mut anchors = BTreeSet::new();
        let mut max_csn: Option<String> = None;
        for nc in contexts {
            self.paged_search(ldap, nc, filter, &attrs, cancel, |e| {
                if let Some(csn) = first(&e, "entryCSN").filter(|c| is_csn(c))
                    && max_csn.as_deref().is_none_or(|m| csn.as_str() > m)
                {
                    max_csn = Some(csn);
                }
                let entry = SourceEntry::build(e.dn, e.attrs, e.bin_attrs, &self.anchor);
                if let Ok(a) = entry.anchor {
                    anchors.insert(a);
                }
                Ok(())
            })
            .await?;
        }
        Ok((anchors, max_csn))
    }

    /// Which of `anchors` (values of the text attribute `attr`) an entry in scope holds:
    /// under the base DNs and matching the filter.
    async fn held_in_scope(
        &self,
        ldap: &mut Ldap,
        attr: &str,
        anchors: &BTreeSet<ExternalId>,
        cancel: &CancellationToken,
    ) -> Result<BTreeSet<ExternalId>, SourceError> {
        /// Anchors asked about per search, to keep each filter small.
        const BATCH: usize = 100;
        let wanted: Vec<&ExternalId> = anchors.iter().collect();
        let mut held = BTreeSet::new();
        for batch in wanted.chunks(BATCH) {
            let any: String = batch
                .iter()
                .map(|a| format!("({attr}={})", ldap3::ldap_escape(a.as_str())))
                .collect();
            let filter = format!("(&{}(|{any}))", self.filter);
            for base in &self.base_dns {
                self.paged_search(ldap, base, &filter, &[attr.to_string()], cancel, |e| {
                    let entry = SourceEntry::build(e.dn, e.attrs, e.bin_attrs, &self.anchor);
                    if let Ok(a) = entry.anchor {
                        held.insert(a);
                    }
                    Ok(())
                })
                .await?;
            }
        }
        Ok(held)
    }

    /// Anchors of objects deleted with `uSNChanged` in `filter`'s range (AD tombstones,
    /// through Show Deleted). `None` when the bind may not see them (logged).
    async fn deleted_anchors(
        &self,
        ldap: &mut Ldap,
        contexts: &[String],
        range: &str,
        cancel: &CancellationToken,
    ) -> Result<Option<BTreeSet<ExternalId>>, SourceError> {
        let filter = format!("(&(isDeleted=TRUE){range})");
        let attrs = vec!["objectGUID".to_string(), "lastKnownParent".to_string()];
        let mut out = BTreeSet::new();
        for nc in contexts {
            let container = format!("CN=Deleted Objects,{nc}");
            ldap.with_controls(RawControl {
                ctype: SHOW_DELETED.to_string(),
                crit: true,
                val: None,
            });
            let found = self
                .paged_search(ldap, &container, &filter, &attrs, cancel, |e| {
                    if let Some(a) = guid(&e, "objectGUID").and_then(|g| ExternalId::parse(&g).ok())
                    {
                        out.insert(a);
                    }
                    Ok(())
                })
                .await;
            match found {
                Ok(()) => {}
                // Not allowed to use Show Deleted, or to see the container: the full
                // reconcile removes deleted people instead.
                Err(SourceError::LdapResult { code, text, .. })
                    if matches!(code, 12 | 32 | 50 | 53) =>
                {
                    tracing::warn!(
                        container = %container,
                        code,
                        result = text,
                        "this bind cannot read deleted objects (Show Deleted control); \
                         deleted people become leavers at the next full reconcile, not in \
                         this delta"
                    );
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Some(out))
    }

    /// Where the source stands now (before a full read): the DC's USN for AD, the
    /// greatest CSN for OpenLDAP; `None` for a server with neither (every cycle full).
    pub async fn watermark(
        &self,
        cancel: &CancellationToken,
    ) -> Result<Option<Watermark>, SourceError> {
        let mut ldap = self.connect_or_cancel(cancel).await?;
        let dse = self.root_dse(&mut ldap, cancel).await?;
        let mark = if dse.ad {
            Some(self.ad_watermark(&mut ldap, &dse, cancel).await?)
        } else {
            let contexts = self.contexts(&dse);
            let position = match self.context_csn(&mut ldap, &dse, &contexts, cancel).await? {
                Some(csn) => Some(csn),
                None => {
                    self.changed_anchors(&mut ldap, &contexts, "(entryCSN=*)", true, cancel)
                        .await?
                        .1
                }
            };
            position.map(|position| Watermark {
                kind: KIND_LDAP_CSN.to_string(),
                server: self.url.clone(),
                invocation_id: None,
                position,
            })
        };
        let _ = ldap.unbind().await;
        Ok(mark)
    }

    /// The entries changed since `since` to the sink, and the anchors of those that left
    /// the read's scope (deleted, moved out of every base DN, no longer matching the
    /// filter); or [`Delta::Full`] saying why `since` cannot be used.
    pub async fn read_delta(
        &self,
        req: &ReadRequest,
        since: &Watermark,
        sink: &mut dyn EntrySink,
        cancel: &CancellationToken,
    ) -> Result<Delta, SourceError> {
        // Each step's time, at debug level: where a delta's time goes on this server.
        let started = std::time::Instant::now();
        let step = |what: &str| {
            tracing::debug!(
                step = what,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "delta read"
            );
        };
        let mut ldap = self.connect_or_cancel(cancel).await?;
        step("connected and bound");
        let dse = self.root_dse(&mut ldap, cancel).await?;
        step("root DSE read");
        let contexts = self.contexts(&dse);
        // `changed`: what changed in (since, next] anywhere in the naming contexts.
        let (next, changed, deleted, after) = if dse.ad {
            let next = self.ad_watermark(&mut ldap, &dse, cancel).await?;
            step("DC identity and USN read");
            let from = match usable_ad(since, &next) {
                Ok(from) => from,
                Err(why) => return Ok(Delta::Full { why }),
            };
            let after = format!("(uSNChanged>={})", from.saturating_add(1));
            // Bounded above by `next`: what changes from now on is the next delta's, and
            // an in-scope entry changed while this delta reads must not look moved out.
            let range = format!("{after}(uSNChanged<={})", next.position.trim());
            let (changed, _) = self
                .changed_anchors(&mut ldap, &contexts, &format!("(&{range})"), false, cancel)
                .await?;
            step("changed objects listed");
            let deleted = match self.anchor {
                super::AnchorKind::ObjectGuid => {
                    self.deleted_anchors(&mut ldap, &contexts, &range, cancel)
                        .await?
                }
                super::AnchorKind::Text(ref a) => {
                    tracing::warn!(
                        anchor = %a,
                        "deleted objects are not reported by anchor: AD tombstones keep \
                         objectGUID, not {a}; deleted people become leavers at the next full \
                         reconcile"
                    );
                    None
                }
            };
            step("deleted objects listed");
            (next, changed, deleted.unwrap_or_default(), after)
        } else {
            let context_csn = self.context_csn(&mut ldap, &dse, &contexts, cancel).await?;
            if let Err(why) = usable_csn(since, &self.url, context_csn.as_deref()) {
                return Ok(Delta::Full { why });
            }
            let after = format!("(!(entryCSN<={}))", ldap3::ldap_escape(&since.position));
            let range = match &context_csn {
                Some(c) => format!("(&{after}(entryCSN<={}))", ldap3::ldap_escape(c)),
                None => after.clone(),
            };
            let (changed, max_seen) = self
                .changed_anchors(&mut ldap, &contexts, &range, true, cancel)
                .await?;
            let position = context_csn
                .or(max_seen)
                .unwrap_or_else(|| since.position.clone());
            let next = Watermark {
                kind: KIND_LDAP_CSN.to_string(),
                server: self.url.clone(),
                invocation_id: None,
                position,
            };
            (next, changed, BTreeSet::new(), after)
        };
        let mut seen = BTreeSet::new();
        let filter = format!("(&{}{after})", self.filter);
        self.read_entries(
            &mut super::Session::Ldap3(&mut ldap),
            req,
            &filter,
            sink,
            Some(&mut seen),
            cancel,
        )
        .await?;
        step("changed entries read");
        let mut gone: BTreeSet<ExternalId> = changed.difference(&seen).cloned().collect();
        if let super::AnchorKind::Text(attr) = &self.anchor {
            // A text anchor need not be unique in the naming context (an administrator's
            // second account with the same employeeID, say): a changed entry elsewhere
            // is evidence only while no entry in scope holds that anchor.
            let held = self.held_in_scope(&mut ldap, attr, &gone, cancel).await?;
            gone.retain(|a| !held.contains(a));
        }
        let _ = ldap.unbind().await;
        gone.extend(deleted);
        Ok(Delta::Changes {
            deleted: gone.into_iter().collect(),
            next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ad(server: &str, inv: &str, usn: &str) -> Watermark {
        Watermark {
            kind: KIND_AD_USN.into(),
            server: server.into(),
            invocation_id: Some(inv.into()),
            position: usn.into(),
        }
    }

    #[test]
    fn an_ad_watermark_is_used_only_on_its_own_dc_and_database() {
        let dc = "CN=NTDS Settings,CN=DC1,CN=Servers,CN=Site,CN=Sites,CN=Configuration,DC=x";
        let now = ad(dc, "g1", "500");
        assert_eq!(usable_ad(&ad(dc, "g1", "400"), &now), Ok(400));
        assert_eq!(usable_ad(&ad(dc, "g1", "500"), &now), Ok(500));
        // Case differs only: the same DN.
        assert_eq!(usable_ad(&ad(&dc.to_uppercase(), "g1", "1"), &now), Ok(1));
        for (since, want) in [
            (
                ad("CN=NTDS Settings,CN=DC2", "g1", "400"),
                "domain controller",
            ),
            (ad(dc, "g2", "400"), "invocationId changed from g2 to g1"),
            (ad(dc, "g1", "501"), "went back from 501 to 500"),
            (ad(dc, "g1", "x"), "is not a USN"),
        ] {
            let why = usable_ad(&since, &now).unwrap_err();
            assert!(why.contains(want), "{why}");
        }
        let mut csn = ad(dc, "g1", "400");
        csn.kind = KIND_LDAP_CSN.into();
        assert!(usable_ad(&csn, &now).unwrap_err().contains("kind"));
    }

    #[test]
    fn a_csn_watermark_is_used_only_on_its_own_server_and_never_backwards() {
        let url = "ldaps://ldap.example:636";
        let w = |pos: &str| Watermark {
            kind: KIND_LDAP_CSN.into(),
            server: url.into(),
            invocation_id: None,
            position: pos.into(),
        };
        let c1 = "20261201120000.000001Z#000000#000#000000";
        let c2 = "20261201120000.000002Z#000000#000#000000";
        assert_eq!(usable_csn(&w(c1), url, None), Ok(()));
        assert_eq!(usable_csn(&w(c1), url, Some(c2)), Ok(()));
        assert!(
            usable_csn(&w(c2), url, Some(c1))
                .unwrap_err()
                .contains("went back")
        );
        assert!(
            usable_csn(&w(c1), "ldaps://other:636", None)
                .unwrap_err()
                .contains("belongs to")
        );
        assert!(
            usable_csn(&w("12"), url, None)
                .unwrap_err()
                .contains("not a CSN")
        );
    }

    #[test]
    fn csns_are_recognised_and_order_as_text() {
        assert!(is_csn("20261201213000.123456Z#000000#000#000000"));
        assert!(is_csn("20261201213000.123456Z#00000a#001#000000"));
        for bad in [
            "",
            "20261201213000Z",
            "20261201213000.123456Z#000000#000",
            "2026120121300x.123456Z#000000#000#000000",
            "20261201213000.123456Z#zz#000#000000",
            "20261201213000.123456Z#000000#000#000000)(x=*",
        ] {
            assert!(!is_csn(bad), "{bad}");
        }
        assert!(
            "20261201213000.123456Z#000001#000#000000" > "20261201213000.123456Z#000000#000#000000"
        );
    }

    #[test]
    fn a_base_dn_lies_in_the_longest_naming_context_that_holds_it() {
        let ncs: Vec<String> = [
            "DC=x,DC=test",
            "CN=Configuration,DC=x,DC=test",
            "DC=DomainDnsZones,DC=x,DC=test",
            "",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            naming_context_of("OU=People, dc=X,DC=test", &ncs).map(String::as_str),
            Some("DC=x,DC=test")
        );
        assert_eq!(
            naming_context_of("CN=Sites,CN=Configuration,DC=x,DC=test", &ncs).map(String::as_str),
            Some("CN=Configuration,DC=x,DC=test")
        );
        assert_eq!(naming_context_of("dc=other", &ncs), None);
    }
}
