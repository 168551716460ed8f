//! The pure diff stage alone, at directory scale: `cargo bench --bench diff`.
//!
//! Builds DIFF_BENCH_N (1,000,000) people in scope and a directory state with an account
//! for most of them, then times `tansync::diff::diff` only (not the construction, not
//! dropping the output). Target: ≤ 1 s at 1,000,000 entries (BENCHMARKS.md).
//!
//! Mix (fractions of N): 93% unchanged, 5% updated (another job title), 2% new (no
//! account: provision), plus 2% extra managed accounts whose people are gone (remove).
//! So the directory holds N accounts in all.

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::time::{Duration, Instant};
use tansync::diff::{DiffInput, DiffOutput, diff};
use tansync::ids::{ExternalId, OdsCode, RuleId, TargetId};
use tansync::model::{Field, OrgKind, Organisation, Person, Persons};
use tansync::plan::{MatchKey, OpKind};
use tansync::target::{Account, Status, TargetState};

const AGENT: &str = "tansync-bench";
const GIVEN: [&str; 12] = [
    "Amelia", "Oliver", "Isla", "George", "Ava", "Noah", "Priya", "Ravi", "Siobhan", "Rhys",
    "Olumide", "Zofia",
];
const FAMILY: [&str; 12] = [
    "Smith", "Jones", "Taylor", "Patel", "Khan", "Evans", "Okafor", "Nowak", "Murphy", "Kelly",
    "Hughes", "Mensah",
];
const TITLES: [&str; 8] = [
    "Staff Nurse",
    "Healthcare Assistant",
    "Consultant",
    "Registrar",
    "Physiotherapist",
    "Pharmacist",
    "Ward Clerk",
    "Midwife",
];

/// splitmix64: a fixed, well-spread sequence, so anchors are not in index order.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// An entryUUID-like anchor for index `i`.
fn anchor(i: u64) -> ExternalId {
    let a = mix(i);
    let b = mix(i ^ 0x5555_5555_5555_5555);
    let s = format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    );
    ExternalId::parse(&s).expect("anchor")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unchanged,
    Updated,
    New,
}

fn kind(i: u64) -> Kind {
    match i % 100 {
        0..=1 => Kind::New,
        2..=6 => Kind::Updated,
        _ => Kind::Unchanged,
    }
}

struct World {
    persons: Persons,
    target: TargetState,
    orgs: BTreeSet<OdsCode>,
    expect: BTreeMap<&'static str, usize>,
}

fn build(n: u64) -> World {
    let orgs: Vec<OdsCode> = ["RXA", "RXB", "RXC"]
        .iter()
        .map(|c| OdsCode::parse(c).expect("ods"))
        .collect();
    let rule = RuleId::parse("bench-people").expect("rule");
    let mut persons = Vec::new();
    let mut accounts = Vec::with_capacity(n as usize);
    let mut expect: BTreeMap<&'static str, usize> = BTreeMap::new();
    for i in 0..n {
        let r = mix(i.wrapping_mul(31).wrapping_add(7));
        let given = GIVEN[(r % 12) as usize];
        let family = FAMILY[((r >> 8) % 12) as usize];
        let title = TITLES[((r >> 16) % 8) as usize];
        let ods = orgs[((r >> 24) % 3) as usize].clone();
        let mut attrs = BTreeMap::new();
        attrs.insert(Field::GivenName, given.to_string());
        attrs.insert(Field::FamilyName, family.to_string());
        attrs.insert(Field::DisplayName, format!("{given} {family}"));
        attrs.insert(Field::JobTitle, title.to_string());
        attrs.insert(Field::EmployeeId, format!("E{i:08}"));
        attrs.insert(
            Field::Email,
            format!(
                "{}.{}.{i}@example.org",
                given.to_lowercase(),
                family.to_lowercase()
            ),
        );
        if r >> 32 & 1 == 1 {
            attrs.insert(
                Field::Telephone,
                format!("+44113496{:04}", (r >> 40) % 10_000),
            );
        }
        if r >> 33 & 1 == 1 {
            attrs.insert(Field::Mobile, format!("+4471234{:05}", (r >> 44) % 100_000));
        }
        let xid = anchor(i);
        let k = kind(i);
        if k != Kind::New {
            let mut held: BTreeMap<Field, String> = attrs
                .iter()
                .filter(|(f, _)| f.is_synchronised())
                .map(|(f, v)| (*f, v.clone()))
                .collect();
            if k == Kind::Updated {
                held.insert(Field::JobTitle, format!("Former {title}"));
            }
            accounts.push(Account {
                target_id: TargetId::parse(&format!("nhsdir-{i:08}")).expect("target id"),
                external_id: Some(xid.clone()),
                ods_code: ods.clone(),
                status: Status::Active,
                managed_by: Some(AGENT.to_string()),
                email: Some(format!(
                    "{}.{}{i}@nhs.net",
                    given.to_lowercase(),
                    family.to_lowercase()
                )),
                leaver_since: None,
                attributes: held.into_iter().collect(),
                etag: None,
            });
        }
        *expect
            .entry(match k {
                Kind::Unchanged => "unchanged",
                Kind::Updated => "update",
                Kind::New => "provision",
            })
            .or_default() += 1;
        persons.push(Person {
            external_id: xid,
            dn: format!("uid=u{i:08},ou=people,dc=bench,dc=org"),
            ods_code: ods,
            rule: rule.clone(),
            enabled: true,
            attributes: attrs.into_iter().collect(),
            warnings: Vec::new(),
        });
    }
    // Managed accounts whose people are no longer in the source.
    let gone = n - accounts.len() as u64;
    for j in 0..gone {
        let i = n + j;
        let mut held = BTreeMap::new();
        held.insert(Field::GivenName, "Former".to_string());
        held.insert(Field::FamilyName, format!("Starter{j}"));
        accounts.push(Account {
            target_id: TargetId::parse(&format!("nhsdir-{i:08}")).expect("target id"),
            external_id: Some(anchor(i)),
            ods_code: orgs[(j % 3) as usize].clone(),
            status: Status::Active,
            managed_by: Some(AGENT.to_string()),
            email: None,
            leaver_since: None,
            attributes: held.into_iter().collect(),
            etag: None,
        });
    }
    *expect.entry("remove").or_default() += gone as usize;
    // The directory hands accounts back in its own order, not the anchors'.
    accounts.sort_by(|a, b| a.target_id.cmp(&b.target_id));
    let organisations = orgs
        .iter()
        .map(|c| {
            let o = Organisation {
                ods_code: c.clone(),
                name: format!("Bench Trust {c}"),
                kind: OrgKind::Trust,
                open: true,
                cap: Some(2_000_000),
            };
            (c.clone(), o)
        })
        .collect();
    World {
        persons: Persons::new(persons),
        target: TargetState {
            organisations,
            accounts,
            refused: BTreeMap::new(),
            census: None,
        },
        orgs: orgs.into_iter().collect(),
        expect,
    }
}

fn check(out: &DiffOutput, expect: &BTreeMap<&'static str, usize>) {
    let count = |k: OpKind| out.operations.iter().filter(|o| o.kind() == k).count();
    let got: BTreeMap<&'static str, usize> = [
        ("provision", count(OpKind::Provision)),
        ("update", count(OpKind::Update)),
        ("remove", count(OpKind::Remove)),
        ("unchanged", out.unchanged),
    ]
    .into_iter()
    .collect();
    assert_eq!(&got, expect, "diff output differs from the generated mix");
    assert!(out.blocked.is_empty(), "{} blocked", out.blocked.len());
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument (as for libtest) is ignored.
    let n: u64 = std::env::var("DIFF_BENCH_N")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    let reps: usize = std::env::var("DIFF_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);

    let t = Instant::now();
    let w = build(n);
    println!(
        "diff bench: {} people in scope, {} directory accounts (built in {})",
        w.persons.len(),
        w.target.accounts.len(),
        secs(t.elapsed())
    );
    println!("  expected: {:?}", w.expect);

    let empty = BTreeSet::new();
    let soft = [MatchKey::EmployeeId, MatchKey::Email];
    let now = time::macros::datetime!(2026-11-22 09:00 UTC);
    let input = DiffInput {
        persons: &w.persons,
        out_of_scope: &empty,
        rejected: &empty,
        unanchored_in_scope: 0,
        target: &w.target,
        agent_id: AGENT,
        managed_orgs: &w.orgs,
        soft_match: &soft,
        nhsmail_domain: "nhs.net",
        restore_window: time::Duration::days(30),
        now,
        delta_deleted: None,
    };

    let mut times = Vec::with_capacity(reps);
    for r in 1..=reps {
        let t = Instant::now();
        let out = diff(black_box(&input));
        let el = t.elapsed();
        check(&out, &w.expect);
        times.push(el);
        println!(
            "  run {r}/{reps}: {} ({} operations, {} unchanged, {} managed)",
            secs(el),
            out.operations.len(),
            out.unchanged,
            out.managed
        );
        drop(black_box(out));
    }
    times.sort();
    let median = times[times.len() / 2];
    let target = Duration::from_secs(1);
    println!(
        "diff of {n} entries: min {}, median {} over {reps} runs (target ≤ {}: {})",
        secs(times[0]),
        secs(median),
        secs(target),
        if median <= target { "met" } else { "MISSED" }
    );
}
