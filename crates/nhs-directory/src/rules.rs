//! The NHS Directory rules the reference directory enforces, as pure functions: the
//! account lifecycle (pending → active → leaver → deleted → purged), which status
//! changes a client may ask for, whether an organisation may take an account (registry,
//! open, cap), the server-side sharing agreement, and the mandatory attributes.
//!
//! Every refusal is an [`ApiError`] whose detail starts with the rule code the agent's
//! plan uses (`account_cap`, `organisation_closed`, `unknown_organisation`,
//! `no_sharing_agreement`, `target_pending`, `duplicate_anchor`, `missing_mandatory`,
//! `invalid_value`, …). No I/O and no clock: `now` and counts are passed in.

use super::config::{Lifecycle, OrgEntry};
use super::error::ApiError;
use super::text;
use nhs_model::Field;
use nhs_model::ids::OdsCode;
use nhs_model::scim::{ENTERPRISE_SCHEMA, NHS_SCHEMA, User};
use std::collections::BTreeSet;
use std::time::Duration;
use time::OffsetDateTime;

pub use nhs_model::Status;

/// A status a client sent, or a SCIM error naming the allowed ones.
pub fn parse_status(s: &str) -> Result<Status, ApiError> {
    Status::parse(s).ok_or_else(|| {
        ApiError::invalid_value(format!(
            "invalid_value: status {:?} is not one of pending, active, leaver, inactive, deleted",
            s.trim().to_ascii_lowercase()
        ))
    })
}

/// A lifecycle step the directory takes by itself as time passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// pending → active, at the given time.
    Activate(OffsetDateTime),
    /// leaver → deleted, at the given time.
    Delete(OffsetDateTime),
    /// deleted and past the restore window: gone.
    Purge,
}

/// The times the lifecycle runs from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Times {
    pub created: OffsetDateTime,
    pub leaver_since: Option<OffsetDateTime>,
    pub deleted_since: Option<OffsetDateTime>,
}

fn after(t: OffsetDateTime, d: Duration) -> OffsetDateTime {
    t + time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

/// The next step due at `now`, if any. Apply it and ask again: a leaver far past its
/// window is deleted, then purged.
pub fn due_step(status: Status, t: &Times, now: OffsetDateTime, life: &Lifecycle) -> Option<Step> {
    match status {
        Status::Pending => {
            let at = after(t.created, life.pending);
            (at <= now).then_some(Step::Activate(at))
        }
        // Access Policy v4, "No longer eligible": a leaver may be a joiner within 30 days
        // "to avoid the account being deleted" (seeds/000_25ad0de7e95731c4.txt).
        Status::Leaver => {
            let at = after(t.leaver_since.unwrap_or(t.created), life.leaver);
            (at <= now).then_some(Step::Delete(at))
        }
        // "Accounts that move to deleted state will then have 30 days to be restored"
        // (seeds/003_4c4cf53838ee439f.txt).
        Status::Deleted => {
            let at = after(t.deleted_since.unwrap_or(t.created), life.deleted);
            (at <= now).then_some(Step::Purge)
        }
        Status::Active | Status::Inactive => None,
    }
}

/// The status of a new account: pending until `pending_seconds` pass ("do not edit until
/// active", DESIGN.md status lifecycle), or active at once when that delay is zero.
pub fn initial_status(life: &Lifecycle) -> Status {
    if life.pending.is_zero() {
        Status::Active
    } else {
        Status::Pending
    }
}

/// The status a create starts an account in, from the NHS status and the core `active`
/// flag the client sent (the status wins, as on a change): `active` (or nothing) is a
/// new account, which starts pending or active ([`initial_status`]); `leaver` (or
/// `active: false` without a status) creates a leaver. The directory's own statuses
/// (pending, inactive, deleted) are refused, as on a change.
pub fn create_status(
    asked: Option<Status>,
    active: Option<bool>,
    life: &Lifecycle,
) -> Result<Status, ApiError> {
    match (asked, active) {
        (Some(Status::Active), _) | (None, Some(true) | None) => Ok(initial_status(life)),
        (Some(Status::Leaver), _) | (None, Some(false)) => Ok(Status::Leaver),
        (Some(other), _) => Err(status_not_writable(other)),
    }
}

fn status_not_writable(target: Status) -> ApiError {
    ApiError::new(
        400,
        Some("invalidValue"),
        format!(
            "status_not_writable: the directory sets {} itself; clients may write active or leaver",
            target.as_str()
        ),
    )
}

/// What a change of status and/or organisation amounts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Status and organisation unchanged.
    Stay,
    /// active → leaver.
    Leave,
    /// leaver/deleted/inactive → active in the same organisation.
    Restore,
    /// leaver/deleted/inactive → active in another organisation (a joiner).
    Join,
    /// active → active in another organisation.
    Move,
}

impl Transition {
    /// Does the account become active in its (new) organisation, so that the
    /// organisation must take it?
    pub fn admits(self) -> bool {
        matches!(
            self,
            Transition::Restore | Transition::Join | Transition::Move
        )
    }
}

/// Refusal for any change to a pending account.
pub fn target_pending(id: &str) -> ApiError {
    ApiError::rule(
        409,
        "target_pending",
        format!("account {id} is pending (a new mailbox) and cannot be changed until active"),
    )
}

/// Which transition a request for `target` status (and maybe a new organisation) is, or
/// why it is refused.
pub fn transition(
    current: Status,
    target: Status,
    org_changes: bool,
) -> Result<Transition, ApiError> {
    use Status::*;
    if current == Pending {
        return Err(ApiError::rule(
            409,
            "target_pending",
            "the account is pending",
        ));
    }
    if target != current && matches!(target, Pending | Inactive | Deleted) {
        return Err(status_not_writable(target));
    }
    let leaver_move = || {
        ApiError::new(
            400,
            Some("invalidValue"),
            "leaver_move: a leaver keeps its organisation; to move it, set status active \
             with the new odsCode (a joiner)",
        )
    };
    match (current, target) {
        (Active, Active) | (Inactive, Inactive) => Ok(if org_changes {
            Transition::Move
        } else {
            Transition::Stay
        }),
        (Active | Inactive, Leaver) => {
            if org_changes {
                Err(leaver_move())
            } else {
                Ok(Transition::Leave)
            }
        }
        (Leaver | Deleted | Inactive, Active) => Ok(if org_changes {
            Transition::Join
        } else {
            Transition::Restore
        }),
        (Leaver, Leaver) => {
            if org_changes {
                Err(leaver_move())
            } else {
                Ok(Transition::Stay)
            }
        }
        (Deleted, _) => Err(ApiError::rule(
            409,
            "account_deleted",
            "a deleted account can only be restored (status active), within its restore window",
        )),
        // Pending was handled above; statuses the client cannot write were refused.
        _ => Err(ApiError::invalid_value(format!(
            "invalid_value: cannot go from {} to {}",
            current.as_str(),
            target.as_str()
        ))),
    }
}

/// The server-side sharing agreement: the client may act for `ods` only if it is listed.
pub fn agreement(client: &str, orgs: &BTreeSet<OdsCode>, ods: &OdsCode) -> Result<(), ApiError> {
    if orgs.contains(ods) {
        Ok(())
    } else {
        Err(ApiError::rule(
            403,
            "no_sharing_agreement",
            format!("client {client} has no agreement for {ods}"),
        ))
    }
}

/// May the organisation take one more account? `held`: accounts it holds that count
/// towards the cap, not counting the one being admitted.
pub fn admit(ods: &OdsCode, org: Option<&OrgEntry>, held: u32) -> Result<(), ApiError> {
    let Some(org) = org else {
        return Err(ApiError::new(
            400,
            Some("invalidValue"),
            format!("unknown_organisation: {ods} is not in the NHS Directory's registry"),
        ));
    };
    if !org.open {
        return Err(ApiError::rule(
            400,
            "organisation_closed",
            format!("{ods} is closed: no accounts can be created in or moved to it"),
        ));
    }
    // Access Policy v4 "Who can use NHSmail?": at most 50 accounts (hosted 1-20; care
    // providers 10 per site, seeds/003): the cap comes resolved from the registry.
    if held >= org.cap {
        return Err(ApiError::rule(
            400,
            "account_cap",
            format!("{ods} holds {held} of {} accounts", org.cap),
        ));
    }
    Ok(())
}

/// An ODS code from a request.
pub fn parse_ods(s: &str) -> Result<OdsCode, ApiError> {
    OdsCode::parse(s).map_err(|e| ApiError::invalid_value(format!("invalid_value: {e}")))
}

/// Every text value of a User's client-writable content, with its SCIM path.
fn texts(u: &User) -> Vec<(String, &str)> {
    let name = u.name.as_ref();
    let ent = u.enterprise.as_ref();
    let nhs = u.nhs.as_ref();
    let mut out: Vec<(String, Option<&String>)> = vec![
        (
            "name.givenName".into(),
            name.and_then(|n| n.given_name.as_ref()),
        ),
        (
            "name.familyName".into(),
            name.and_then(|n| n.family_name.as_ref()),
        ),
        (
            "name.formatted".into(),
            name.and_then(|n| n.formatted.as_ref()),
        ),
        ("displayName".into(), u.display_name.as_ref()),
        ("title".into(), u.title.as_ref()),
        (
            format!("{ENTERPRISE_SCHEMA}:employeeNumber"),
            ent.and_then(|e| e.employee_number.as_ref()),
        ),
        (
            format!("{ENTERPRISE_SCHEMA}:department"),
            ent.and_then(|e| e.department.as_ref()),
        ),
        (
            format!("{NHS_SCHEMA}:site"),
            nhs.and_then(|n| n.site.as_ref()),
        ),
        (
            format!("{NHS_SCHEMA}:managedBy"),
            nhs.and_then(|n| n.managed_by.as_ref()),
        ),
    ];
    for (i, p) in u.phone_numbers.iter().enumerate() {
        out.push((format!("phoneNumbers[{i}].value"), Some(&p.value)));
        out.push((format!("phoneNumbers[{i}].type"), p.kind.as_ref()));
    }
    out.into_iter()
        .filter_map(|(path, v)| v.map(|v| (path, v.as_str())))
        .collect()
}

/// Refuse a User whose client-writable text holds a control or invisible character
/// (`text`), naming the attribute and the code point. Run on what the client sent as
/// well as on what is stored, so that a value of only such characters is refused, not
/// dropped as blank.
pub fn check_texts(u: &User) -> Result<(), ApiError> {
    for (path, v) in texts(u) {
        text::check(&path, v)?;
    }
    Ok(())
}

/// The mandatory names (DESIGN.md "Mandatory to provision"), the characters a stored
/// value may hold (`text`) and the directory's length limits ([`Field::max_len`]).
pub fn check_content(u: &User) -> Result<(), ApiError> {
    let name = u.name.clone().unwrap_or_default();
    for (what, v) in [
        ("name.givenName", name.given_name),
        ("name.familyName", name.family_name),
    ] {
        if v.as_deref().is_none_or(|s| s.trim().is_empty()) {
            return Err(ApiError::invalid_value(format!(
                "missing_mandatory: {what} is required"
            )));
        }
    }
    check_texts(u)?;
    for (f, v) in &u.fields() {
        if v.chars().count() > f.max_len() {
            return Err(ApiError::invalid_value(format!(
                "invalid_value: {f} is longer than {} characters",
                f.max_len()
            )));
        }
    }
    if let Some(v) = u.name.as_ref().and_then(|n| n.formatted.as_deref())
        && v.chars().count() > Field::DisplayName.max_len()
    {
        return Err(ApiError::invalid_value(format!(
            "invalid_value: name.formatted is longer than {} characters",
            Field::DisplayName.max_len()
        )));
    }
    Ok(())
}

/// The uniqueness key of an externalId (anchors compare ignoring case, as
/// [`nhs_model::ids::ExternalId`] does), or why it is not one.
pub fn anchor_key(external_id: &str) -> Result<String, ApiError> {
    text::check("externalId", external_id)?;
    nhs_model::ids::ExternalId::parse(external_id)
        .map(|e| e.as_str().to_string())
        .map_err(|e| ApiError::invalid_value(format!("invalid_value: {e}")))
}

/// Refusal for a second account with the same anchor (AUP §2.9: one account per person).
pub fn duplicate_anchor() -> ApiError {
    ApiError::uniqueness("duplicate_anchor: an account with this externalId already exists")
}

#[cfg(test)]
mod tests {
    use super::*;
    use nhs_model::OrgKind;
    use time::macros::datetime;

    fn life() -> Lifecycle {
        Lifecycle {
            pending: Duration::from_secs(60),
            leaver: Duration::from_secs(30 * 86_400),
            deleted: Duration::from_secs(30 * 86_400),
        }
    }

    fn org(open: bool, cap: u32) -> OrgEntry {
        OrgEntry {
            ods_code: OdsCode::parse("RXA").unwrap(),
            name: "Test".into(),
            kind: OrgKind::Trust,
            open,
            cap,
        }
    }

    #[test]
    fn lifecycle_steps_fall_due_on_time() {
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let times = Times {
            created: t0,
            leaver_since: Some(t0 + time::Duration::days(1)),
            deleted_since: Some(t0 + time::Duration::days(31)),
        };
        let l = life();
        assert_eq!(
            due_step(
                Status::Pending,
                &times,
                t0 + time::Duration::seconds(59),
                &l
            ),
            None
        );
        assert_eq!(
            due_step(
                Status::Pending,
                &times,
                t0 + time::Duration::seconds(60),
                &l
            ),
            Some(Step::Activate(t0 + time::Duration::seconds(60)))
        );
        assert_eq!(
            due_step(Status::Leaver, &times, t0 + time::Duration::days(30), &l),
            None
        );
        assert_eq!(
            due_step(Status::Leaver, &times, t0 + time::Duration::days(40), &l),
            Some(Step::Delete(t0 + time::Duration::days(31)))
        );
        assert_eq!(
            due_step(Status::Deleted, &times, t0 + time::Duration::days(60), &l),
            None
        );
        assert_eq!(
            due_step(Status::Deleted, &times, t0 + time::Duration::days(61), &l),
            Some(Step::Purge)
        );
        assert_eq!(
            due_step(Status::Active, &times, t0 + time::Duration::days(999), &l),
            None
        );
        assert_eq!(initial_status(&l), Status::Pending);
    }

    #[test]
    fn a_create_starts_new_or_leaver_as_asked() {
        use Status::*;
        let l = life();
        for (asked, active, want) in [
            (None, None, Pending),
            (Some(Active), Some(true), Pending),
            // The status wins over the flag.
            (Some(Active), Some(false), Pending),
            (Some(Leaver), Some(true), Leaver),
            (None, Some(false), Leaver),
        ] {
            assert_eq!(
                create_status(asked, active, &l).unwrap(),
                want,
                "{asked:?} {active:?}"
            );
        }
        let at_once = Lifecycle {
            pending: Duration::ZERO,
            ..l
        };
        assert_eq!(create_status(None, None, &at_once).unwrap(), Active);
        for s in [Pending, Inactive, Deleted] {
            let e = create_status(Some(s), None, &l).unwrap_err();
            assert!(e.detail.starts_with("status_not_writable"), "{e}");
        }
    }

    #[test]
    fn transitions_follow_the_lifecycle() {
        use Status::*;
        use Transition::*;
        let ok = [
            (Active, Active, false, Stay),
            (Active, Active, true, Move),
            (Active, Leaver, false, Leave),
            (Leaver, Active, false, Restore),
            (Leaver, Active, true, Join),
            (Deleted, Active, false, Restore),
            (Deleted, Active, true, Join),
            (Leaver, Leaver, false, Stay),
        ];
        for (from, to, moves, want) in ok {
            assert_eq!(
                transition(from, to, moves).unwrap(),
                want,
                "{from:?}->{to:?}"
            );
        }
        let refused = [
            (Pending, Active, false, "target_pending"),
            (Active, Deleted, false, "status_not_writable"),
            (Active, Pending, false, "status_not_writable"),
            (Active, Leaver, true, "leaver_move"),
            (Leaver, Leaver, true, "leaver_move"),
            (Deleted, Deleted, false, "account_deleted"),
            (Deleted, Leaver, false, "account_deleted"),
        ];
        for (from, to, moves, code) in refused {
            let e = transition(from, to, moves).unwrap_err();
            assert!(e.detail.starts_with(code), "{from:?}->{to:?}: {e}");
        }
    }

    #[test]
    fn organisations_admit_within_cap_when_open() {
        let rxa = OdsCode::parse("RXA").unwrap();
        assert!(admit(&rxa, Some(&org(true, 50)), 49).is_ok());
        let e = admit(&rxa, Some(&org(true, 50)), 50).unwrap_err();
        assert_eq!(e.detail, "account_cap: RXA holds 50 of 50 accounts");
        assert_eq!(e.status, 400);
        let e = admit(&rxa, Some(&org(false, 50)), 0).unwrap_err();
        assert!(e.detail.starts_with("organisation_closed"));
        let e = admit(&rxa, None, 0).unwrap_err();
        assert!(e.detail.starts_with("unknown_organisation"));
    }

    #[test]
    fn agreements_and_content() {
        let rxa = OdsCode::parse("RXA").unwrap();
        let ryy = OdsCode::parse("RYY").unwrap();
        let orgs = BTreeSet::from([rxa.clone()]);
        assert!(agreement("agent-a", &orgs, &rxa).is_ok());
        let e = agreement("agent-a", &orgs, &ryy).unwrap_err();
        assert_eq!(e.status, 403);
        assert_eq!(
            e.detail,
            "no_sharing_agreement: client agent-a has no agreement for RYY"
        );

        let mut u = User::default();
        u.set_field(Field::GivenName, Some("Siân".into()));
        let e = check_content(&u).unwrap_err();
        assert!(
            e.detail.starts_with("missing_mandatory: name.familyName"),
            "{e}"
        );
        u.set_field(Field::FamilyName, Some("Evans".into()));
        assert!(check_content(&u).is_ok());
        u.set_field(Field::JobTitle, Some("x".repeat(129)));
        assert!(
            check_content(&u)
                .unwrap_err()
                .detail
                .starts_with("invalid_value: job_title")
        );
        assert_eq!(anchor_key(" AF40AC76-1201 ").unwrap(), "af40ac76-1201");
        assert!(anchor_key("  ").is_err());
        let e = anchor_key("af40ac76\u{200B}").unwrap_err();
        assert!(e.detail.contains("externalId holds U+200B"), "{e}");
    }

    #[test]
    fn every_stored_text_is_checked_for_control_and_invisible_characters() {
        let mut ok = User::default();
        ok.set_field(Field::GivenName, Some("Siân".into()));
        ok.set_field(Field::FamilyName, Some("Evans".into()));
        assert!(check_content(&ok).is_ok());
        let nhs_site = format!("{NHS_SCHEMA}:site");
        let department = format!("{ENTERPRISE_SCHEMA}:department");
        for (f, path) in [
            (Field::GivenName, "name.givenName"),
            (Field::FamilyName, "name.familyName"),
            (Field::DisplayName, "displayName"),
            (Field::JobTitle, "title"),
            (Field::Department, department.as_str()),
            (Field::Site, nhs_site.as_str()),
            (Field::Telephone, "phoneNumbers[0].value"),
        ] {
            let mut u = ok.clone();
            u.set_field(f, Some("A\u{202E}B".into()));
            let e = check_content(&u).unwrap_err();
            assert_eq!(e.scim_type, Some("invalidValue"), "{path}");
            assert!(
                e.detail
                    .starts_with(&format!("invalid_value: {path} holds U+202E")),
                "{path}: {e}"
            );
        }
        let mut u = ok.clone();
        u.nhs.get_or_insert_with(Default::default).managed_by = Some("agent\n1".into());
        assert!(
            check_content(&u)
                .unwrap_err()
                .detail
                .contains("managedBy holds U+000A")
        );
        let mut u = ok;
        u.name.get_or_insert_with(Default::default).formatted = Some("\u{3164}".into());
        assert!(
            check_content(&u)
                .unwrap_err()
                .detail
                .contains("name.formatted holds U+3164")
        );
    }
}
