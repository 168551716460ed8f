//! The bad-input corpus: `tests/fixtures/gen_bad_corpus.py` writes an LDIF export of
//! hostile and malformed people (control and invisible characters, homoglyphs, 1 MB
//! values, 10,000-value attributes, bad and duplicate anchors, bad ODS codes, malformed
//! and non-UK phones, invalid UTF-8 …) with the outcome each must get. One plan over it
//! must give every entry exactly that outcome, and still plan every good person.

mod common;
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

#[test]
fn every_corpus_entry_gets_its_expected_outcome() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new("python3")
        .arg(repo().join("tests/fixtures/gen_bad_corpus.py"))
        .arg(tmp.path())
        .output()
        .expect("run the corpus generator");
    assert!(
        out.status.success(),
        "generator: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: BTreeMap<String, Value> = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("expected.json")).expect("expected.json"),
    )
    .expect("expected JSON");
    assert!(expected.len() >= 200, "{} entries", expected.len());

    let (r, plan) = plan_json(&tmp.path().join("tansync.toml"));
    assert_eq!(r.code, 2, "{}", r.stderr);

    let provisioned: BTreeMap<&str, &Value> = plan["operations"]
        .as_array()
        .expect("operations")
        .iter()
        .filter(|o| o["kind"] == "provision")
        .map(|o| (o["external_id"].as_str().unwrap_or_default(), o))
        .collect();
    let rejected: BTreeMap<&str, &Value> = plan["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| (r["dn"].as_str().unwrap_or_default(), r))
        .collect();
    let mut warnings: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for w in plan["warnings"].as_array().expect("warnings") {
        warnings
            .entry(w["dn"].as_str().unwrap_or_default())
            .or_default()
            .push(w);
    }
    assert!(
        plan["blocked"].as_array().is_some_and(Vec::is_empty),
        "nothing in the corpus is blocked: {:#}",
        plan["blocked"]
    );

    let mut wrong = Vec::new();
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for (dn, e) in &expected {
        let class = e["class"].as_str().unwrap_or_default();
        let expect = e["expect"].as_str().unwrap_or_default();
        *tally.entry(expect.to_string()).or_default() += 1;
        let xid = e["external_id"].as_str();
        let planned = xid.and_then(|x| provisioned.get(x));
        let rej = rejected.get(dn.as_str());
        let warns = warnings.get(dn.as_str()).cloned().unwrap_or_default();
        let got = format!(
            "planned: {}, rejected: {}, warnings: {}",
            planned.is_some(),
            rej.map(|r| format!("{} ({})", r["reason"], r["detail"]))
                .unwrap_or_else(|| "no".into()),
            serde_json::to_string(&warns).unwrap_or_default()
        );
        let good = match expect {
            "accepted" => {
                planned.is_some_and(|op| {
                    e.as_object().is_some_and(|o| {
                        o.iter()
                            .filter(|(k, _)| {
                                !matches!(k.as_str(), "class" | "expect" | "external_id")
                            })
                            .all(|(k, v)| op["attributes"][k] == *v)
                    })
                }) && rej.is_none()
                    && warns.is_empty()
            }
            "ignored" => planned.is_none() && rej.is_none(),
            "rejected" => {
                planned.is_none()
                    && rej.is_some_and(|r| {
                        r["reason"] == e["reason"]
                            && e["detail"]
                                .as_str()
                                .is_none_or(|d| r["detail"].as_str().is_some_and(|t| t.contains(d)))
                    })
            }
            "warning" => {
                let field = e["field"].as_str().unwrap_or_default();
                planned.is_some_and(|op| op["attributes"].get(field).is_none())
                    && rej.is_none()
                    && warns.iter().any(|w| {
                        w["field"] == field
                            && e["reason"].as_str().is_none_or(|r| w["reason"] == r)
                            && xid.is_none_or(|x| w["external_id"] == x)
                    })
            }
            other => panic!("unknown expectation {other:?}"),
        };
        if !good {
            let short: String = dn.chars().take(60).collect();
            wrong.push(format!("[{class}] {short:?}: expected {e}, got {got}"));
        }
    }
    // Nothing in the plan that the corpus does not account for.
    let known: BTreeSet<&str> = expected
        .values()
        .filter_map(|e| e["external_id"].as_str())
        .collect();
    for x in provisioned.keys() {
        if !known.contains(x) {
            wrong.push(format!(
                "a provision for {x}, which is no corpus entry's anchor"
            ));
        }
    }
    eprintln!("corpus: {} entries, {tally:?}", expected.len());
    assert!(
        wrong.is_empty(),
        "{} of {} entries got the wrong outcome:\n{}",
        wrong.len(),
        expected.len(),
        wrong.join("\n")
    );
    let want_planned =
        tally.get("accepted").copied().unwrap_or(0) + tally.get("warning").copied().unwrap_or(0);
    assert_eq!(provisioned.len(), want_planned);
}
