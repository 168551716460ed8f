//! What planning makes of what the source read: a read with no one left in scope is
//! refused with the right reason, and an LDIF export cut at any byte is an error or a
//! whole, shorter export that never removes anyone still in it.

use super::plan::{decide, plan_from};
use super::read::collect;
use super::{EngineError, Silent};
use crate::config::Config;
use crate::ids::{ExternalId, ObjectGuid};
use crate::source::ldif::{LdifReader, LdifSource};
use crate::source::{AnySource, SourceEntry, SourceError};
use crate::target::Target;
use crate::testing::{FakeSource, FakeTarget, FakeWriter, managed_user, organisation, person};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use time::macros::datetime;
use tokio_util::sync::CancellationToken;

/// Everyone in RXA, one managed account (the person with anchor 1) in the directory.
fn config(dir: &Path) -> Config {
    std::fs::write(dir.join("src.ldif"), "").unwrap();
    std::fs::write(
        dir.join("rules.toml"),
        "[[rule]]\nid = \"staff\"\naction = \"include\"\nunder = [\"OU=Staff,DC=example\"]\nods = { constant = \"RXA\" }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("agreements.toml"),
        "[partnering]\nreference = \"PA\"\nvalid_from = 2026-01-01\nvalid_until = 2099-12-31\n\n\
         [[sharing]]\nods_code = \"RXA\"\nreference = \"SA\"\nvalid_from = 2026-01-01\nvalid_until = 2099-12-31\n\
         operations = [\"provision\", \"update\", \"remove\"]\nattributes = [\"given_name\", \"family_name\", \"mobile\"]\n",
    )
    .unwrap();
    std::fs::write(dir.join("snapshot.json"), "{}").unwrap();
    let text = "agent_id = \"agent-1\"\n[source]\nkind = \"ldif\"\npath = \"src.ldif\"\n\
                [filters]\nfiles = [\"rules.toml\"]\n[target]\nkind = \"snapshot\"\npath = \"snapshot.json\"\n\
                [agreements]\nfile = \"agreements.toml\"\n";
    Config::from_str(text, "tansync.toml", dir).unwrap()
}

async fn plan_people(people: Vec<SourceEntry>) -> Result<crate::plan::Plan, EngineError> {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let w = FakeWriter::new();
    w.seed(managed_user(1, "t1"));
    let target = FakeTarget::new([organisation("RXA")], w.accounts());
    plan_from(
        &cfg,
        &FakeSource::new(people),
        &target,
        datetime!(2026-06-01 09:00 UTC),
        None,
        &Silent,
        &CancellationToken::new(),
    )
    .await
    .map(|r| r.plan)
}

#[tokio::test]
async fn a_read_whose_every_entry_in_scope_is_rejected_says_so() {
    // A name with an invisible character in it: rejected (a bad mobile would only be
    // dropped with a warning).
    let bad_name = person(4, "De\u{200b}415", "Dunn");
    let people = vec![person(2, "Bea", ""), person(3, "Cy", ""), bad_name];
    let e = plan_people(people).await.err().unwrap();
    assert!(
        matches!(
            &e,
            EngineError::AllRejected { managed: 1, rejected: 3, reasons }
                if reasons == "missing_mandatory: 2, invalid_value: 1"
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.starts_with(
            "every entry in scope was rejected (3 rejected: missing_mandatory: 2, invalid_value: 1), so no one is left in scope while the directory holds 1 accounts this agent manages; refusing to plan their removal"
        ),
        "{text}"
    );
    // The refusal repeats no entry's values (personal data).
    assert!(!text.contains("415") && !text.contains("Bea"), "{text}");
    // One valid person left in scope: a plan, and the rejected ones are in it.
    let plan = plan_people(vec![person(2, "Bea", ""), person(5, "Eve", "Ede")])
        .await
        .unwrap();
    assert_eq!(plan.rejected.len(), 1);
}

#[tokio::test]
async fn a_read_with_no_one_in_scope_says_so() {
    let e = plan_people(Vec::new()).await.err().unwrap();
    assert!(
        matches!(
            e,
            EngineError::EmptySource {
                managed: 1,
                read: 0
            }
        ),
        "{e:?}"
    );
    // Read, but outside the rules' scope.
    let mut elsewhere = person(2, "Bea", "Bell");
    elsewhere.norm_dn = crate::ids::NormDn::new("CN=Bea Bell,OU=Contractors,DC=example");
    elsewhere.dn = "CN=Bea Bell,OU=Contractors,DC=example".into();
    let e = plan_people(vec![elsewhere]).await.err().unwrap();
    assert!(
        matches!(
            e,
            EngineError::EmptySource {
                managed: 1,
                read: 1
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().starts_with(
            "the source returned no one in scope (1 entries read, none of them included by the rules) while the directory holds 1 accounts this agent manages; refusing to plan their removal"
        ),
        "{e}"
    );
}

fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart")
}

/// A record of the full export: where it starts and ends (just after its empty line),
/// and its anchor, if it has one.
struct Span {
    start: usize,
    end: usize,
    anchor: Option<ExternalId>,
}

fn spans(text: &str) -> Vec<Span> {
    let mut line_starts = vec![0];
    line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut rd = LdifReader::new(text.as_bytes());
    let mut out = Vec::new();
    while let Some(r) = rd.next_record().unwrap() {
        let first = r.line - 1;
        let empty = (first..lines.len())
            .find(|&i| lines[i].trim_end_matches(['\r', '\n']).is_empty())
            .unwrap();
        let anchor = r
            .attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("objectGUID"))
            .map(|(_, v)| ExternalId::from(ObjectGuid::from_bytes(v).unwrap()));
        out.push(Span {
            start: line_starts[first],
            end: line_starts[empty + 1],
            anchor,
        });
    }
    out
}

/// Every item of a plan (operation, blocked, rejected, warning, write-back) by the
/// anchor it is about.
fn by_anchor(plan: &crate::plan::Plan) -> BTreeMap<String, Vec<Value>> {
    let v: Value = serde_json::from_str(&plan.to_json()).unwrap();
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for list in [
        "operations",
        "blocked",
        "rejected",
        "warnings",
        "write_back",
    ] {
        for item in v[list].as_array().unwrap() {
            if let Some(x) = item["external_id"].as_str() {
                out.entry(x.to_string()).or_default().push(item.clone());
            }
        }
    }
    for items in out.values_mut() {
        items.sort_by_key(|i| i.to_string());
    }
    out
}

/// The removals a plan makes, or would but for a block: anchor → removal reason.
fn removals(plan: &crate::plan::Plan) -> BTreeMap<String, String> {
    let v: Value = serde_json::from_str(&plan.to_json()).unwrap();
    let ops = v["operations"].as_array().unwrap().iter();
    let held = v["blocked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| &b["operation"]);
    ops.chain(held)
        .filter(|op| op["kind"] == "remove")
        .map(|op| {
            (
                op["external_id"].as_str().unwrap().to_string(),
                op["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The quickstart's export cut at every byte offset. Each cut is an LDIF error naming
/// the file and the line, or a refusal to plan from no one, or — only where it falls
/// exactly after the empty line that ends a record — a plan in which everyone still in
/// the cut file is planned exactly as in the full plan, no one in it is removed as
/// `not_in_source`, and every other removal is one the full plan makes too.
#[tokio::test]
async fn an_export_cut_anywhere_never_removes_anyone_still_in_it() {
    let cfg = Config::load(&quickstart().join("tansync.toml")).unwrap();
    let AnySource::Ldif(configured) = &cfg.source else {
        panic!("the quickstart reads LDIF")
    };
    let text = std::fs::read_to_string(&configured.path).unwrap();
    let cancel = CancellationToken::new();
    let now = datetime!(2026-11-22 10:00 UTC);
    let state = cfg.target.read_state(&cancel).await.unwrap();

    let full = {
        let c = collect(&cfg, &cfg.source, None, &Silent, &cancel)
            .await
            .unwrap();
        decide(&cfg, &c, &state, "ldif", "snapshot", now).unwrap()
    };
    let full_items = by_anchor(&full);
    let full_removals = removals(&full);
    let spans = spans(&text);
    assert!(spans.iter().filter(|s| s.anchor.is_some()).count() >= 10);
    assert!(!full_removals.is_empty(), "the quickstart removes someone");

    let dir = tempfile::tempdir().unwrap();
    let cut_path = dir.path().join("cut.ldif");
    let source = AnySource::Ldif(LdifSource {
        path: cut_path.clone(),
        ..configured.clone()
    });
    let (mut errors, mut refused, mut plans) = (0, 0, 0);
    for cut in 0..=text.len() {
        std::fs::write(&cut_path, &text.as_bytes()[..cut]).unwrap();
        let straddles = spans.iter().any(|s| s.start < cut && cut < s.end);
        let at_end = spans.iter().any(|s| s.end == cut);
        let collected = match collect(&cfg, &source, None, &Silent, &cancel).await {
            Err(SourceError::Ldif { path, line, .. }) => {
                assert_eq!(path, cut_path.display().to_string());
                assert!(line >= 1);
                assert!(!at_end, "cut at {cut}, a record's end, was refused");
                errors += 1;
                continue;
            }
            Err(e) => panic!("cut at {cut}: {e}"),
            Ok(c) => c,
        };
        assert!(
            !straddles,
            "cut at {cut}, inside a record, was read as whole"
        );
        let plan = match decide(&cfg, &collected, &state, "ldif", "snapshot", now) {
            Ok(p) => p,
            Err(EngineError::EmptySource { .. } | EngineError::AllRejected { .. }) => {
                refused += 1;
                continue;
            }
            Err(e) => panic!("cut at {cut}: {e}"),
        };
        plans += 1;
        let present: BTreeSet<String> = spans
            .iter()
            .filter(|s| s.end <= cut)
            .filter_map(|s| s.anchor.as_ref().map(|a| a.to_string()))
            .collect();
        let items = by_anchor(&plan);
        for (x, reason) in removals(&plan) {
            // Removed for its absence while present: the one thing a cut must never do.
            // (Present and removed for what the file says of them, e.g. disabled, is
            // checked below: exactly as in the full plan.)
            assert!(
                !(reason == "not_in_source" && present.contains(&x)),
                "cut at {cut}: {x}, still in the file, is removed as not in the source"
            );
            assert!(
                full_removals.contains_key(&x)
                    || spans
                        .iter()
                        .any(|s| s.start >= cut
                            && s.anchor.as_ref().is_some_and(|a| a.to_string() == x)),
                "cut at {cut}: {x} is removed but is neither removed by the full plan nor cut off"
            );
        }
        for x in &present {
            assert_eq!(
                items.get(x),
                full_items.get(x),
                "cut at {cut}: {x} is planned differently from the full plan"
            );
        }
    }
    eprintln!(
        "{} cuts of {}: {errors} LDIF errors, {refused} refused (no one left in scope), {plans} plans",
        text.len() + 1,
        configured.path.display()
    );
    assert_eq!(errors + refused + plans, text.len() + 1);
    // Every record boundary after the first person is a plan.
    assert!(plans >= spans.iter().filter(|s| s.anchor.is_some()).count() - 1);
}
