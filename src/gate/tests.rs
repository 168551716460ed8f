use super::agreements::{Partnering, Sharing, Validity};
use super::*;
use crate::ids::{ExternalId, RuleId, TargetId};
use crate::model::{OrgKind, Organisation};
use crate::plan::RemoveReason;
use crate::target::Account;
use time::macros::{date, datetime};

fn xid(n: u32) -> ExternalId {
    ExternalId::parse(&format!("00000000-0000-0000-0000-{n:012}")).unwrap()
}
fn ods(s: &str) -> OdsCode {
    OdsCode::parse(s).unwrap()
}

fn provision(n: u32, org: &str) -> Operation {
    Operation::Provision {
        external_id: xid(n),
        ods_code: ods(org),
        rule: RuleId::parse("r").unwrap(),
        attributes: [
            (Field::GivenName, "A".to_string()),
            (Field::FamilyName, "B".to_string()),
            (Field::Mobile, "+447123456789".to_string()),
        ]
        .into(),
    }
}

fn remove(n: u32) -> Operation {
    Operation::Remove {
        external_id: xid(n),
        target_id: TargetId::parse(&format!("t{n}")).unwrap(),
        ods_code: ods("RXA"),
        reason: RemoveReason::NotInSource,
        etag: None,
    }
}

fn org(code: &str, open: bool, cap: Option<u32>) -> (OdsCode, Organisation) {
    (
        ods(code),
        Organisation {
            ods_code: ods(code),
            name: code.into(),
            kind: OrgKind::Trust,
            open,
            cap,
        },
    )
}

fn sharing(code: &str, until: time::Date, attrs: &[Field]) -> (OdsCode, Sharing) {
    (
        ods(code),
        Sharing {
            ods_code: ods(code),
            reference: format!("SA-{code}"),
            validity: Validity {
                from: date!(2026 - 01 - 01),
                until,
            },
            operations: OpKind::ALL.into_iter().collect(),
            attributes: attrs.iter().copied().collect(),
        },
    )
}

fn agreements() -> Agreements {
    let all = Field::ALL;
    Agreements {
        partnering: Some(Partnering {
            reference: "PA".into(),
            validity: Validity {
                from: date!(2026 - 01 - 01),
                until: date!(2027 - 12 - 31),
            },
        }),
        sharing: [
            sharing("RXA", date!(2027 - 12 - 31), &all),
            sharing(
                "RXB",
                date!(2027 - 12 - 31),
                &[Field::GivenName, Field::FamilyName],
            ),
            sharing("RXC", date!(2026 - 06 - 30), &all),
            sharing("SHUT", date!(2027 - 12 - 31), &all),
            sharing("RXA2", date!(2027 - 12 - 31), &all),
        ]
        .into(),
    }
}

fn run(
    cands: Vec<Operation>,
    a: &Agreements,
    accounts: Vec<Account>,
    managed: usize,
    persons: &Persons,
) -> GateOutput {
    run_on(cands, a, accounts, managed, persons, None)
}

/// As [`run`], the state holding only `accounts` of those `census` counts.
fn run_on(
    cands: Vec<Operation>,
    a: &Agreements,
    accounts: Vec<Account>,
    managed: usize,
    persons: &Persons,
    census: Option<crate::target::Census>,
) -> GateOutput {
    let target = TargetState {
        organisations: [
            org("RXA", true, None),
            org("RXB", true, Some(2)),
            org("RXC", true, None),
            org("RXD", true, None),
            org("SHUT", false, None),
            org("RXA2", true, None),
        ]
        .into(),
        accounts,
        // RXA2 is in the agreements file, but the directory refused to show it.
        refused: [(ods("RXA2"), "HTTP 403: no_sharing_agreement".to_string())].into(),
        census,
    };
    gate(GateInput {
        candidates: cands,
        persons,
        target: &target,
        agreements: a,
        policy: &GatePolicy::default(),
        managed,
        now: datetime!(2026-11-22 10:00 UTC),
    })
}

fn reasons(out: &GateOutput) -> Vec<(u32, BlockReason)> {
    out.blocked
        .iter()
        .map(|b| {
            let n = b
                .external_id
                .as_str()
                .rsplit('-')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            (n, b.reason)
        })
        .collect()
}

#[test]
fn fail_closed_on_agreements_and_organisations() {
    let none = Persons::default();
    let out = run(
        vec![
            provision(1, "RXA"),
            provision(2, "RXC"),
            provision(3, "RXD"),
            provision(4, "SHUT"),
            provision(5, "NOPE"),
            provision(6, "RXA2"),
        ],
        &agreements(),
        vec![],
        0,
        &none,
    );
    assert_eq!(out.operations.len(), 1);
    assert_eq!(
        reasons(&out),
        vec![
            (2, BlockReason::AgreementExpired),
            (3, BlockReason::NoSharingAgreement),
            (4, BlockReason::OrganisationClosed),
            (5, BlockReason::UnknownOrganisation),
            (6, BlockReason::NoSharingAgreement),
        ]
    );
    assert!(out.blocked[4].detail.contains("refused access to RXA2"));
    let mut no_pa = agreements();
    no_pa.partnering = None;
    let out = run(vec![provision(1, "RXA")], &no_pa, vec![], 0, &none);
    assert_eq!(reasons(&out), vec![(1, BlockReason::NoPartneringAgreement)]);
    let mut not_permitted = agreements();
    not_permitted
        .sharing
        .get_mut(&ods("RXA"))
        .unwrap()
        .operations
        .remove(&OpKind::Provision);
    let out = run(vec![provision(1, "RXA")], &not_permitted, vec![], 0, &none);
    assert_eq!(reasons(&out), vec![(1, BlockReason::OperationNotPermitted)]);
}

#[test]
fn strips_unpermitted_attributes_and_caps_deterministically() {
    let none = Persons::default();
    let held = Account {
        target_id: TargetId::parse("t0").unwrap(),
        external_id: None,
        ods_code: ods("RXB"),
        status: Status::Active,
        managed_by: None,
        email: None,
        leaver_since: None,
        attributes: Default::default(),
        etag: None,
    };
    // RXB's cap is 2 and it holds 1: of three provisions only the lowest anchor is kept.
    let out = run(
        vec![
            provision(7, "RXB"),
            provision(3, "RXB"),
            provision(5, "RXB"),
        ],
        &agreements(),
        vec![held],
        0,
        &none,
    );
    assert_eq!(out.operations.len(), 1);
    assert_eq!(out.operations[0].op.external_id(), &xid(3));
    assert_eq!(out.operations[0].stripped, vec![Field::Mobile]);
    let Operation::Provision { attributes, .. } = &out.operations[0].op else {
        panic!()
    };
    assert!(!attributes.contains_key(&Field::Mobile));
    assert_eq!(
        reasons(&out),
        vec![(5, BlockReason::AccountCap), (7, BlockReason::AccountCap)]
    );
    assert!(out.blocked[0].detail.contains("RXB holds 1 of 2 accounts"));
}

#[test]
fn a_partial_state_caps_by_its_census_not_by_the_accounts_it_holds() {
    let none = Persons::default();
    // A delta's state holds none of RXB's accounts; the census says RXB holds 1 of its
    // cap of 2 (a deleted account would not be in `held`).
    let census = crate::target::Census {
        held: [(ods("RXB"), 1)].into(),
        managed: BTreeMap::new(),
    };
    let out = run_on(
        vec![provision(7, "RXB"), provision(3, "RXB")],
        &agreements(),
        vec![],
        0,
        &none,
        Some(census),
    );
    assert_eq!(out.operations.len(), 1);
    assert_eq!(out.operations[0].op.external_id(), &xid(3));
    assert_eq!(reasons(&out), vec![(7, BlockReason::AccountCap)]);
    assert!(out.blocked[0].detail.contains("RXB holds 1 of 2 accounts"));
}

#[test]
fn mass_change_guard_blocks_all_removals() {
    let none = Persons::default();
    // 51 removals > absolute 50.
    let out = run(
        (1..=51).map(remove).collect(),
        &agreements(),
        vec![],
        1000,
        &none,
    );
    assert!(out.operations.is_empty());
    assert_eq!(out.blocked.len(), 51);
    assert!(
        out.blocked
            .iter()
            .all(|b| b.reason == BlockReason::MassChangeThreshold)
    );
    // 11 of 100 managed = 11% > 10%.
    let out = run(
        (1..=11).map(remove).collect(),
        &agreements(),
        vec![],
        100,
        &none,
    );
    assert_eq!(out.blocked.len(), 11);
    // 10 of 100 is at the limit, allowed; 11 of 99 managed is under the percentage floor.
    assert_eq!(
        run(
            (1..=10).map(remove).collect(),
            &agreements(),
            vec![],
            100,
            &none
        )
        .operations
        .len(),
        10
    );
    assert_eq!(
        run(
            (1..=11).map(remove).collect(),
            &agreements(),
            vec![],
            99,
            &none
        )
        .operations
        .len(),
        11
    );
}

#[test]
fn ineligible_mailbox_domain_blocks_provision() {
    let p = Person {
        external_id: xid(1),
        dn: "CN=a".into(),
        ods_code: ods("RXA"),
        rule: RuleId::parse("r").unwrap(),
        enabled: true,
        attributes: [(Field::Email, "a.b@leeds.gov.uk".to_string())].into(),
        warnings: Vec::new(),
    };
    let persons = Persons::new(vec![p]);
    let out = run(
        vec![provision(1, "RXA")],
        &agreements(),
        vec![],
        0,
        &persons,
    );
    assert_eq!(reasons(&out), vec![(1, BlockReason::IneligibleEmailDomain)]);
    assert!(out.blocked[0].detail.contains("AUP §2.10"));
}
