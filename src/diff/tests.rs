use super::*;
use crate::ids::RuleId;
use crate::model::{OrgKind, Organisation};
use crate::target::Census;
use time::macros::datetime;

const AGENT: &str = "agent-1";
const NOW: OffsetDateTime = datetime!(2026-11-22 10:00 UTC);

fn xid(n: u32) -> ExternalId {
    ExternalId::parse(&format!("00000000-0000-0000-0000-{n:012}")).unwrap()
}
fn ods(s: &str) -> OdsCode {
    OdsCode::parse(s).unwrap()
}

fn person(n: u32, org: &str, attrs: &[(Field, &str)]) -> Person {
    let mut a: BTreeMap<Field, String> = [
        (Field::GivenName, "Ann".to_string()),
        (Field::FamilyName, format!("P{n}")),
    ]
    .into();
    for (f, v) in attrs {
        a.insert(*f, v.to_string());
    }
    Person {
        external_id: xid(n),
        dn: format!("CN=p{n},DC=x"),
        ods_code: ods(org),
        rule: RuleId::parse("r").unwrap(),
        enabled: true,
        attributes: a.into_iter().collect(),
        warnings: Vec::new(),
    }
}

fn account(n: u32, org: &str, status: Status, attrs: &[(Field, &str)]) -> Account {
    let mut a: BTreeMap<Field, String> = [
        (Field::GivenName, "Ann".to_string()),
        (Field::FamilyName, format!("P{n}")),
    ]
    .into();
    for (f, v) in attrs {
        a.insert(*f, v.to_string());
    }
    Account {
        target_id: TargetId::parse(&format!("t{n}")).unwrap(),
        external_id: Some(xid(n)),
        ods_code: ods(org),
        status,
        managed_by: Some(AGENT.into()),
        email: None,
        leaver_since: None,
        attributes: a.into_iter().collect(),
        etag: None,
    }
}

struct Case {
    persons: Vec<Person>,
    accounts: Vec<Account>,
    out_of_scope: Vec<u32>,
    rejected: Vec<u32>,
}

fn run(c: Case) -> DiffOutput {
    run_with(c, 0)
}

fn run_with(c: Case, unanchored_in_scope: usize) -> DiffOutput {
    run_full_or_delta(c, unanchored_in_scope, None)
}

fn run_full_or_delta(c: Case, unanchored_in_scope: usize, deleted: Option<&[u32]>) -> DiffOutput {
    run_on(c, unanchored_in_scope, deleted, None)
}

/// As [`run_full_or_delta`], the state holding only `c.accounts` of those `census` counts.
fn run_on(
    c: Case,
    unanchored_in_scope: usize,
    deleted: Option<&[u32]>,
    census: Option<Census>,
) -> DiffOutput {
    let deleted: Option<BTreeSet<ExternalId>> =
        deleted.map(|d| d.iter().copied().map(xid).collect());
    let persons = Persons::new(c.persons);
    let orgs = ["RXA", "RXB"].map(ods);
    let target = TargetState {
        organisations: orgs
            .iter()
            .map(|o| {
                (
                    o.clone(),
                    Organisation {
                        ods_code: o.clone(),
                        name: String::new(),
                        kind: OrgKind::Trust,
                        open: true,
                        cap: None,
                    },
                )
            })
            .collect(),
        accounts: c.accounts,
        refused: BTreeMap::new(),
        census,
    };
    let oos: BTreeSet<_> = c.out_of_scope.into_iter().map(xid).collect();
    let rej: BTreeSet<_> = c.rejected.into_iter().map(xid).collect();
    let managed: BTreeSet<_> = orgs.into_iter().collect();
    diff(&DiffInput {
        persons: &persons,
        out_of_scope: &oos,
        rejected: &rej,
        unanchored_in_scope,
        target: &target,
        agent_id: AGENT,
        managed_orgs: &managed,
        soft_match: &[MatchKey::EmployeeId, MatchKey::Email],
        nhsmail_domain: "nhs.net",
        restore_window: Duration::days(30),
        now: NOW,
        delta_deleted: deleted.as_ref(),
    })
}

fn kinds(out: &DiffOutput) -> Vec<String> {
    out.operations
        .iter()
        .map(|o| {
            format!(
                "{}:{}",
                o.kind(),
                o.external_id()
                    .as_str()
                    .trim_start_matches("00000000-0000-0000-0000-")
            )
        })
        .collect()
}

#[test]
fn provision_update_unchanged_and_no_false_changes() {
    let out = run(Case {
        persons: vec![
            person(1, "RXA", &[]),
            person(
                2,
                "RXA",
                &[
                    (Field::JobTitle, "Senior Nurse"),
                    (Field::Department, "Emergency Department"),
                ],
            ),
            person(3, "RXA", &[(Field::Department, "Cardiology")]),
        ],
        accounts: vec![
            account(
                2,
                "RXA",
                Status::Active,
                &[
                    (Field::JobTitle, "Nurse"),
                    (Field::Department, "emergency  department"),
                ],
            ),
            account(
                3,
                "RXA",
                Status::Active,
                &[(Field::Department, "CARDIOLOGY")],
            ),
        ],
        out_of_scope: vec![],
        rejected: vec![],
    });
    assert_eq!(
        kinds(&out),
        ["provision:000000000001", "update:000000000002"]
    );
    assert_eq!(out.unchanged, 1);
    let Operation::Update { changes, .. } = &out.operations[1] else {
        panic!()
    };
    assert_eq!(
        changes,
        &vec![FieldChange {
            field: Field::JobTitle,
            old: Some("Nurse".into()),
            new: Some("Senior Nurse".into())
        }]
    );
}

#[test]
fn removals_have_reasons_and_spare_rejected_and_unmanaged() {
    let mut disabled = person(1, "RXA", &[]);
    disabled.enabled = false;
    let mut other = account(5, "RXA", Status::Active, &[]);
    other.managed_by = Some("someone-else".into());
    let mut elsewhere = account(6, "ZZZ", Status::Active, &[]);
    elsewhere.ods_code = ods("ZZZ");
    let out = run(Case {
        persons: vec![disabled],
        accounts: vec![
            account(1, "RXA", Status::Active, &[]),
            account(2, "RXA", Status::Active, &[]),
            account(3, "RXA", Status::Active, &[]),
            account(4, "RXA", Status::Active, &[]),
            other,
            elsewhere,
            account(7, "RXA", Status::Leaver, &[]),
        ],
        out_of_scope: vec![2],
        rejected: vec![4],
    });
    let reasons: Vec<(String, RemoveReason)> = out
        .operations
        .iter()
        .map(|o| match o {
            Operation::Remove {
                target_id, reason, ..
            } => (target_id.to_string(), *reason),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("t1".into(), RemoveReason::Disabled),
            ("t2".into(), RemoveReason::OutOfScope),
            ("t3".into(), RemoveReason::NotInSource),
        ]
    );
    assert_eq!(out.managed, 5);
}

#[test]
fn move_restore_pending_and_window() {
    let mut leaver = account(2, "RXA", Status::Leaver, &[]);
    leaver.leaver_since = Some(datetime!(2026-11-12 09:00 UTC));
    let mut old_leaver = account(3, "RXA", Status::Leaver, &[]);
    old_leaver.leaver_since = Some(datetime!(2026-10-01 09:00 UTC));
    let mut joiner = account(5, "RXA", Status::Leaver, &[]);
    joiner.leaver_since = Some(datetime!(2026-11-20 09:00 UTC));
    let out = run(Case {
        persons: vec![
            person(1, "RXB", &[]),
            person(2, "RXA", &[]),
            person(3, "RXA", &[]),
            person(4, "RXA", &[(Field::JobTitle, "Matron")]),
            person(5, "RXB", &[]),
        ],
        accounts: vec![
            account(1, "RXA", Status::Active, &[]),
            leaver,
            old_leaver,
            account(4, "RXA", Status::Pending, &[(Field::JobTitle, "Sister")]),
            joiner,
        ],
        out_of_scope: vec![],
        rejected: vec![],
    });
    assert_eq!(
        kinds(&out),
        [
            "move:000000000001",
            "restore:000000000002",
            "move:000000000005"
        ]
    );
    let reasons: Vec<BlockReason> = out.blocked.iter().map(|b| b.reason).collect();
    assert_eq!(
        reasons,
        [BlockReason::RestoreWindowPassed, BlockReason::TargetPending]
    );
}

#[test]
fn soft_match_joins_once_and_nhsmail_without_account_is_blocked() {
    let mut unanchored = account(9, "RXA", Status::Active, &[(Field::EmployeeId, "E1")]);
    unanchored.external_id = None;
    unanchored.managed_by = None;
    let mut by_mail = account(8, "RXA", Status::Active, &[]);
    by_mail.external_id = None;
    by_mail.email = Some("Jo.Bloggs@nhs.net".into());
    let out = run(Case {
        persons: vec![
            person(1, "RXA", &[(Field::EmployeeId, "e1")]),
            person(2, "RXA", &[(Field::EmployeeId, "E1")]),
            person(3, "RXA", &[(Field::Email, "jo.bloggs@nhs.net")]),
            person(4, "RXA", &[(Field::Email, "someone@nhs.net")]),
        ],
        accounts: vec![unanchored, by_mail],
        out_of_scope: vec![],
        rejected: vec![],
    });
    assert_eq!(kinds(&out), ["join:000000000001", "join:000000000003"]);
    let Operation::Join {
        matched_on,
        target_id,
        ..
    } = &out.operations[1]
    else {
        panic!()
    };
    assert_eq!((*matched_on, target_id.as_str()), (MatchKey::Email, "t8"));
    let reasons: Vec<BlockReason> = out.blocked.iter().map(|b| b.reason).collect();
    assert_eq!(
        reasons,
        [
            BlockReason::AmbiguousMatch,
            BlockReason::ExistingNhsmailAccount
        ]
    );
}

#[test]
fn two_accounts_sharing_a_present_anchor_are_not_removed() {
    // The anchor index keeps one account per anchor; the other must still count as held
    // by the person in the source (as a lookup in `persons` would say), not be removed.
    let mut other = account(1, "RXA", Status::Active, &[]);
    other.target_id = TargetId::parse("t1-copy").unwrap();
    let out = run(Case {
        persons: vec![person(1, "RXA", &[])],
        accounts: vec![other, account(1, "RXA", Status::Active, &[])],
        out_of_scope: vec![],
        rejected: vec![],
    });
    assert!(kinds(&out).is_empty(), "{:?}", kinds(&out));
    assert_eq!((out.unchanged, out.managed), (1, 2));
}

#[test]
fn no_removal_for_absence_while_some_in_scope_entry_had_no_readable_anchor() {
    let mut disabled = person(1, "RXA", &[]);
    disabled.enabled = false;
    let case = || Case {
        persons: vec![disabled.clone()],
        accounts: vec![
            account(1, "RXA", Status::Active, &[]),
            account(2, "RXA", Status::Active, &[]),
            account(3, "RXA", Status::Active, &[]),
        ],
        out_of_scope: vec![2],
        rejected: vec![],
    };
    // Evidence still removes: disabled, and out of scope.
    let out = run_with(case(), 1);
    let removed: Vec<String> = out
        .operations
        .iter()
        .map(|o| match o {
            Operation::Remove { target_id, .. } => target_id.to_string(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(removed, ["t1", "t2"]);
    // Mere absence does not: it is held, saying why.
    assert_eq!(out.blocked.len(), 1);
    assert_eq!(out.blocked[0].reason, BlockReason::UnverifiedAbsence);
    assert!(
        out.blocked[0]
            .detail
            .contains("1 in-scope source entry had no readable anchor")
    );
    // Without unanchored entries the same absence is a removal.
    assert_eq!(run_with(case(), 0).operations.len(), 3);
}

/// The changes planned for person 1 against account 1.
fn changes_for(p: Person, a: Account) -> Vec<FieldChange> {
    let out = run(Case {
        persons: vec![p],
        accounts: vec![a],
        out_of_scope: vec![],
        rejected: vec![],
    });
    match out.operations.as_slice() {
        [] => Vec::new(),
        [Operation::Update { changes, .. }] => changes.clone(),
        other => panic!("expected at most an update: {other:?}"),
    }
}

#[test]
fn phones_compare_in_e164_on_both_sides() {
    let mobile = |v: &str| (Field::Mobile, v.to_string());
    let tel = |v: &str| (Field::Telephone, v.to_string());
    // (directory holds, source has, planned change?)
    let cases: Vec<((Field, String), &str, bool)> = vec![
        (mobile("07700 900123"), "+447700900123", false),
        (mobile("07700-900-123"), "+447700900123", false),
        (mobile("+44 7700 900123"), "+447700900123", false),
        (mobile("0044 7700 900123"), "+447700900123", false),
        (mobile("+44 (0)7700 900123"), "+447700900123", false),
        // A block the phonenumber metadata does not list: still the same number.
        (mobile("07700 212345"), "+447700212345", false),
        (tel("0113 496 0000"), "+441134960000", false),
        (tel("(0113) 496 0000"), "+441134960000", false),
        // The source side in national form too (E.164 is what mapping makes, but the
        // comparison does not rely on it).
        (tel("+441134960000"), "0113 496 0000", false),
        // Different numbers are a change.
        (mobile("07700 900124"), "+447700900123", true),
        (tel("0113 496 0001"), "+441134960000", true),
        // Not a number on the directory side: compared as text.
        (tel("call the ward"), "+441134960000", true),
        (tel("Ext 4411"), "ext 4411", false),
    ];
    for ((f, held), new, change) in cases {
        let got = changes_for(
            person(1, "RXA", &[(f, new)]),
            account(1, "RXA", Status::Active, &[(f, &held)]),
        );
        let want = if change {
            vec![FieldChange {
                field: f,
                old: Some(held.clone()),
                new: Some(new.to_string()),
            }]
        } else {
            Vec::new()
        };
        assert_eq!(got, want, "{f}: directory {held:?}, source {new:?}");
    }
}

#[test]
fn a_field_dropped_as_invalid_is_left_as_the_directory_holds_it() {
    let held = [(Field::Mobile, "+447700900123"), (Field::JobTitle, "Nurse")];
    // The source's mobile was invalid: dropped with a warning, so not part of what the
    // person should look like. The directory's mobile stays; the title still updates.
    let mut p = person(1, "RXA", &[(Field::JobTitle, "Senior Nurse")]);
    p.warnings.push(crate::model::Warning {
        external_id: xid(1),
        dn: p.dn.clone(),
        field: Field::Mobile,
        reason: crate::model::RejectReason::InvalidMobile,
        detail: "mobile \"07700\" is not a valid phone number".into(),
    });
    assert_eq!(
        changes_for(p.clone(), account(1, "RXA", Status::Active, &held)),
        [FieldChange {
            field: Field::JobTitle,
            old: Some("Nurse".into()),
            new: Some("Senior Nurse".into()),
        }]
    );
    // Only the title dropped too: nothing to do at all.
    p.attributes.remove(&Field::JobTitle);
    p.warnings.push(crate::model::Warning {
        field: Field::JobTitle,
        ..p.warnings[0].clone()
    });
    assert_eq!(changes_for(p, account(1, "RXA", Status::Active, &held)), []);
    // Whereas a mobile the source no longer has at all is cleared.
    assert_eq!(
        changes_for(
            person(1, "RXA", &[(Field::JobTitle, "Nurse")]),
            account(1, "RXA", Status::Active, &held)
        ),
        [FieldChange {
            field: Field::Mobile,
            old: Some("+447700900123".into()),
            new: None,
        }]
    );
}

/// What README.md promises for disabled accounts without any rule about them: never
/// provisioned or joined; an existing active or inactive account is marked leaver
/// `disabled`; a pending one is held; a leaver stays as it is.
#[test]
fn disabled_people_are_never_provisioned_and_their_accounts_become_leavers() {
    let disabled = |n: u32, attrs: &[(Field, &str)]| {
        let mut p = person(n, "RXA", attrs);
        p.enabled = false;
        p
    };
    // Unanchored accounts a first sync would join on employee id or email.
    let mut by_employee = account(12, "RXA", Status::Active, &[(Field::EmployeeId, "E12")]);
    by_employee.external_id = None;
    let mut by_email = account(13, "RXA", Status::Active, &[]);
    by_email.external_id = None;
    by_email.email = Some("p13@nhs.net".into());
    let out = run(Case {
        persons: vec![
            disabled(1, &[]),
            disabled(2, &[]),
            disabled(3, &[]),
            disabled(4, &[]),
            disabled(11, &[]),
            disabled(12, &[(Field::EmployeeId, "E12")]),
            disabled(13, &[(Field::Email, "p13@nhs.net")]),
        ],
        accounts: vec![
            account(1, "RXA", Status::Active, &[]),
            account(2, "RXA", Status::Inactive, &[]),
            account(3, "RXA", Status::Pending, &[]),
            account(4, "RXA", Status::Leaver, &[]),
            by_employee,
            by_email,
        ],
        out_of_scope: vec![],
        rejected: vec![],
    });
    let ops: Vec<(crate::plan::OpKind, String)> = out
        .operations
        .iter()
        .map(|o| match o {
            Operation::Remove {
                target_id, reason, ..
            } => {
                assert_eq!(*reason, RemoveReason::Disabled);
                (o.kind(), target_id.to_string())
            }
            other => panic!("a disabled person got {other:?}"),
        })
        .collect();
    assert_eq!(
        ops,
        [
            (crate::plan::OpKind::Remove, "t1".into()),
            (crate::plan::OpKind::Remove, "t2".into())
        ]
    );
    let blocked: Vec<(BlockReason, &str)> = out
        .blocked
        .iter()
        .map(|b| (b.reason, b.external_id.as_str()))
        .collect();
    assert_eq!(
        blocked,
        [(BlockReason::TargetPending, xid(3).as_str())],
        "{:?}",
        out.blocked
    );
}

#[test]
fn a_delta_removes_only_on_evidence() {
    // Accounts 1–5; the delta read saw 2 (changed), 3 (disabled), 4 (now excluded by the
    // rules) and reports 5 deleted. 1 was not in the read: not removed.
    let case = || Case {
        persons: vec![
            person(2, "RXA", &[(Field::GivenName, "Bob")]),
            Person {
                enabled: false,
                ..person(3, "RXA", &[])
            },
        ],
        accounts: (1..=5)
            .map(|n| account(n, "RXA", Status::Active, &[]))
            .collect(),
        out_of_scope: vec![4],
        rejected: vec![],
    };
    let out = run_full_or_delta(case(), 0, Some(&[5]));
    let removals: Vec<String> = out
        .operations
        .iter()
        .filter_map(|o| match o {
            Operation::Remove {
                external_id,
                reason,
                ..
            } => Some(format!(
                "{}:{reason:?}",
                external_id
                    .as_str()
                    .trim_start_matches("00000000-0000-0000-0000-")
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        removals,
        [
            "000000000003:Disabled",
            "000000000004:OutOfScope",
            "000000000005:NotInSource"
        ]
    );
    assert!(
        kinds(&out).contains(&"update:000000000002".to_string()),
        "{:?}",
        kinds(&out)
    );
    // The guard still counts every managed account.
    assert_eq!(out.managed, 5);
    // The same read as a full cycle would remove 1 as well.
    let full = run(case());
    assert!(kinds(&full).contains(&"remove:000000000001".to_string()));
}

#[test]
fn a_partial_state_counts_managed_accounts_from_its_census() {
    // A delta's state: the one changed person's account, of 4,000 the agent manages in
    // its organisations (RXC's are not its to manage, whatever managedBy says).
    let census = Census {
        held: [(ods("RXA"), 2500), (ods("RXC"), 900)].into(),
        managed: [(ods("RXA"), 2500), (ods("RXB"), 1500), (ods("RXC"), 900)].into(),
    };
    let case = || Case {
        persons: vec![person(1, "RXA", &[(Field::JobTitle, "Nurse")])],
        accounts: vec![account(1, "RXA", Status::Active, &[])],
        out_of_scope: vec![],
        rejected: vec![],
    };
    let out = run_on(case(), 0, Some(&[]), Some(census));
    assert_eq!(out.managed, 4000);
    assert_eq!(kinds(&out), vec!["update:000000000001"]);
    // Without a census the state is all there is.
    assert_eq!(run_on(case(), 0, Some(&[]), None).managed, 1);
}

// ---- the optimised diff against the straightforward one, on random small inputs ----

#[allow(clippy::too_many_lines)]
/// The diff as it was written before it ran in parallel: one thread, one pass per step.
/// The optimised [`diff_on`] must give exactly its output.
fn reference_diff(input: &DiffInput<'_>) -> DiffOutput {
    let mut out = DiffOutput::default();
    let accounts = &input.target.accounts;
    // Anchor → index of the (last) live account holding it. Only looked up, never
    // iterated, so a HashMap cannot reach the plan's order; at directory scale it is
    // several times faster than a BTreeMap of string keys. foldhash (already in the tree
    // through hashbrown) rather than SipHash: hashing was a quarter of the diff's
    // instructions; it is still seeded per process, and the keys come from our own AD
    // and the directory, not from strangers.
    let mut by_anchor: HashMap<&ExternalId, usize, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(accounts.len(), Default::default());
    // Whether the agent manages each account, decided once in this pass over the
    // accounts: both later passes need it, and at directory scale each test is a cache
    // miss (the account's `managed_by` text).
    let mut managed = Vec::with_capacity(accounts.len());
    for (i, a) in accounts.iter().enumerate() {
        managed.push(is_managed(a, input.agent_id, input.managed_orgs));
        if a.status != Status::Deleted
            && let Some(x) = &a.external_id
        {
            by_anchor.insert(x, i);
        }
    }
    // Accounts whose anchor a person in scope holds (set while walking the persons, so
    // the removal pass needs no lookup in `persons` for them).
    let mut in_source = vec![false; accounts.len()];
    // Unanchored accounts are the candidates for first-sync soft-match.
    let mut by_key: BTreeMap<(MatchKey, String), Vec<&Account>> = BTreeMap::new();
    for a in input
        .target
        .accounts
        .iter()
        .filter(|a| is_join_candidate(a))
    {
        for (key, v) in account_match_values(a) {
            by_key.entry((key, v)).or_default().push(a);
        }
    }
    let mut joined: BTreeSet<&TargetId> = BTreeSet::new();

    for p in input.persons {
        let xid = &p.external_id;
        match by_anchor.get(xid) {
            Some(&i) => {
                in_source[i] = true;
                let a = &accounts[i];
                let managed = managed[i];
                match existing(p, a, input) {
                    Outcome::Unchanged => out.unchanged += 1,
                    Outcome::Planned(op) if managed => out.operations.push(op),
                    Outcome::Planned(op) => out.blocked.push(Blocked::new(
                        op,
                        BlockReason::NotManaged,
                        format!(
                            "account {} is managed by {}",
                            a.target_id,
                            a.managed_by.as_deref().unwrap_or("no agent")
                        ),
                    )),
                    Outcome::Held(b) => out.blocked.push(b),
                }
            }
            None if !p.enabled => {} // Disabled and never provisioned: nothing to do.
            None => match soft_match(p, input, &by_key, &mut joined) {
                Outcome::Planned(op) => out.operations.push(op),
                Outcome::Held(b) => out.blocked.push(b),
                Outcome::Unchanged => out.unchanged += 1,
            },
        }
    }

    for (i, a) in accounts.iter().enumerate() {
        if !managed[i] {
            continue;
        }
        out.managed += 1;
        let Some(xid) = &a.external_id else { continue };
        // A person holds this anchor if they matched this account, or (when two accounts
        // share an anchor) the one `by_anchor` kept. Deleted accounts are in neither, and
        // whatever the answer they get no operation below.
        let in_persons = in_source[i] || by_anchor.get(xid).is_some_and(|&j| in_source[j]);
        if in_persons || input.rejected.contains(xid) {
            continue;
        }
        let reason = if input.out_of_scope.contains(xid) {
            RemoveReason::OutOfScope
        } else if input.delta_deleted.is_none_or(|d| d.contains(xid)) {
            RemoveReason::NotInSource
        } else {
            // A delta read that did not mention this person: nothing is known of them.
            continue;
        };
        let op = Operation::Remove {
            external_id: xid.clone(),
            target_id: a.target_id.clone(),
            ods_code: a.ods_code.clone(),
            reason,
            etag: a.etag.clone(),
        };
        match a.status {
            Status::Active | Status::Inactive
                if reason == RemoveReason::NotInSource && input.unanchored_in_scope > 0 =>
            {
                out.blocked.push(Blocked::new(
                    op,
                    BlockReason::UnverifiedAbsence,
                    format!(
                        "not in the source, but {} in-scope source entr{} had no readable anchor: any of them could be this person",
                        input.unanchored_in_scope,
                        if input.unanchored_in_scope == 1 { "y" } else { "ies" }
                    ),
                ));
            }
            Status::Active | Status::Inactive => out.operations.push(op),
            Status::Pending => out.blocked.push(pending(op, a)),
            Status::Leaver | Status::Deleted => {}
        }
    }
    if let Some(c) = &input.target.census {
        // The state holds some of the accounts (a delta cycle's): the guard's
        // percentage is of every account the agent manages.
        out.managed = c
            .managed
            .iter()
            .filter(|(ods, _)| input.managed_orgs.contains(*ods))
            .map(|(_, n)| *n as usize)
            .sum();
    }
    out
}

fn random_case(
    rng: &mut fastrand::Rng,
) -> (
    Vec<Person>,
    Vec<Account>,
    BTreeSet<ExternalId>,
    BTreeSet<ExternalId>,
) {
    const ORGS: [&str; 3] = ["RXA", "RXB", "RXC"]; // RXC is not managed.
    const TITLES: [&str; 4] = ["Nurse", "nurse ", "Senior  Nurse", "Ward Clerk"];
    const PHONES: [&str; 4] = [
        "+447700900123",
        "07700 900123",
        "+447700900999",
        "not a number",
    ];
    const EMAILS: [&str; 4] = [
        "a@example.org",
        "A@Example.org ",
        "b@nhs.net",
        "c@example.org",
    ];
    const EMPLOYEES: [&str; 4] = ["E1", "e1", "E2", " E3"];
    let ids = 1 + rng.u32(..40);
    let pick = |rng: &mut fastrand::Rng, v: &[&'static str]| v[rng.usize(..v.len())];
    let attrs = |rng: &mut fastrand::Rng| {
        let mut a: Vec<(Field, &'static str)> = Vec::new();
        if rng.bool() {
            a.push((Field::JobTitle, pick(rng, &TITLES)));
        }
        if rng.bool() {
            a.push((Field::Mobile, pick(rng, &PHONES)));
        }
        if rng.u8(..4) == 0 {
            a.push((Field::Telephone, pick(rng, &PHONES)));
        }
        if rng.bool() {
            a.push((Field::EmployeeId, pick(rng, &EMPLOYEES)));
        }
        if rng.u8(..3) == 0 {
            a.push((Field::Email, pick(rng, &EMAILS)));
        }
        if rng.u8(..4) == 0 {
            a.push((Field::Department, "   "));
        }
        a
    };
    let mut persons = Vec::new();
    for n in 0..ids {
        if rng.u8(..3) == 0 {
            continue;
        }
        let a = attrs(rng);
        let mut p = person(n, pick(rng, &ORGS), &a);
        p.enabled = rng.u8(..5) != 0;
        if rng.u8(..6) == 0 {
            p.warnings.push(crate::model::Warning {
                external_id: p.external_id.clone(),
                dn: p.dn.clone(),
                field: Field::JobTitle,
                reason: crate::model::RejectReason::InvalidValue,
                detail: String::new(),
            });
        }
        persons.push(p);
    }
    let mut accounts = Vec::new();
    for k in 0..rng.u32(..50) {
        let a = attrs(rng);
        let status = [
            Status::Active,
            Status::Inactive,
            Status::Pending,
            Status::Leaver,
            Status::Deleted,
        ][rng.usize(..5)];
        let mut acc = account(rng.u32(..ids + 5), pick(rng, &ORGS), status, &a);
        acc.target_id = TargetId::parse(&format!("t{k}")).unwrap();
        if rng.u8(..4) == 0 {
            acc.external_id = None;
            acc.email = Some(pick(rng, &EMAILS).to_string());
        }
        acc.managed_by = match rng.u8(..6) {
            0 => None,
            1 => Some("another-agent".into()),
            _ => Some(AGENT.into()),
        };
        if status == Status::Leaver && rng.bool() {
            acc.leaver_since = Some(NOW - Duration::days(rng.i64(0..60)));
        }
        accounts.push(acc);
    }
    let some = |rng: &mut fastrand::Rng| -> BTreeSet<ExternalId> {
        (0..rng.u32(..4)).map(|_| xid(rng.u32(..ids + 5))).collect()
    };
    let oos = some(rng);
    let rej = some(rng);
    (persons, accounts, oos, rej)
}

#[test]
fn the_parallel_diff_gives_the_reference_output_on_random_inputs() {
    for seed in 0..400u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let (persons, accounts, oos, rej) = random_case(&mut rng);
        let persons = Persons::new(persons);
        let deleted: BTreeSet<ExternalId> = (0..rng.u32(..4)).map(|_| xid(rng.u32(..45))).collect();
        let census = rng.u8(..5) == 0;
        let target = TargetState {
            organisations: BTreeMap::new(),
            accounts,
            refused: BTreeMap::new(),
            census: census.then(|| Census {
                managed: [(ods("RXA"), 7), (ods("RXC"), 3)].into(),
                ..Default::default()
            }),
        };
        let managed: BTreeSet<_> = ["RXA", "RXB"].map(ods).into_iter().collect();
        let soft: &[MatchKey] = match rng.u8(..3) {
            0 => &[],
            1 => &[MatchKey::Email],
            _ => &[MatchKey::EmployeeId, MatchKey::Email],
        };
        let input = DiffInput {
            persons: &persons,
            out_of_scope: &oos,
            rejected: &rej,
            unanchored_in_scope: if rng.u8(..4) == 0 { 2 } else { 0 },
            target: &target,
            agent_id: AGENT,
            managed_orgs: &managed,
            soft_match: soft,
            nhsmail_domain: "nhs.net",
            restore_window: Duration::days(30),
            now: NOW,
            delta_deleted: rng.bool().then_some(&deleted),
        };
        let want = reference_diff(&input);
        for threads in [1, 2, 3, 7] {
            let got = diff_on(&input, threads);
            assert_eq!(
                got.operations, want.operations,
                "seed {seed}, {threads} threads"
            );
            assert_eq!(got.blocked, want.blocked, "seed {seed}, {threads} threads");
            assert_eq!(
                got.unchanged, want.unchanged,
                "seed {seed}, {threads} threads"
            );
            assert_eq!(got.managed, want.managed, "seed {seed}, {threads} threads");
        }
    }
}
