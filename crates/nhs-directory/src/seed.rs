//! The directory's state as a target snapshot (`tansync.snapshot/v1`, the format the
//! agent's `[target] kind = "snapshot"` reads): the directory starts from one
//! (`seed = "SNAPSHOT.json"`) and writes its state as one (`nhs-directory export`), so
//! a plan against the live service equals the plan against the snapshot it was seeded
//! from.
//!
//! Seeding:
//! - The snapshot's organisations join the configuration's in the registry on every
//!   start (`config`); an organisation in both must be the same in both.
//! - Its accounts are stored only in a database that has never held an account (a new
//!   file, or `:memory:`), all or none, with the ids, anchors, addresses, statuses,
//!   leaver dates and versions (`etag` `W/"N"`; none: version 1) the snapshot gives.
//!   A database that has held accounts keeps them; the snapshot's accounts are checked
//!   all the same and not stored (a warning says so).
//! - Every account must pass the rules a create does: its organisation in the
//!   registry, within its cap; mandatory names; no control or invisible characters;
//!   length limits; an NHSmail address in the directory's mail domain, held once; an
//!   anchor held once. An error names the record (`persons[3] (target_id …)`).
//! - Lifecycle timers run from the seeding: a pending account becomes active
//!   `lifecycle.pending_seconds` after it, a deleted one is purged `deleted_days` after
//!   it; a leaver is deleted `leaver_days` after its `leaver_since`.
//!
//! Exporting writes the registry (caps resolved) and every account, sorted by ODS code
//! and target id, without `taken_at`: the same state exports the same bytes, and a
//! directory seeded from an export exports it again unchanged. The format holds what
//! the agent models; a `name.formatted` or a telephone entry of another type than work
//! or mobile is not in it.

use super::clock::from_ms;
use super::clock::to_ms;
use super::config::{Config, Database, Seed};
use super::error::ApiError;
use super::rules;
use super::service::etag;
use super::store::{self, Account};
use super::text;
use nhs_model::ids::{ExternalId, OdsCode, TargetId};
use nhs_model::scim::{Nhs, User};
use nhs_model::snapshot::{self, FORMAT, Snapshot};
use nhs_model::{Field, Organisation, Status};
use rusqlite::Connection;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// A snapshot that cannot seed the directory, with the record at fault.
#[derive(Debug, thiserror::Error)]
#[error("seed {file}: {record}: {problem}")]
pub struct SeedError {
    pub file: PathBuf,
    /// `persons[3] (target_id nhsd-7f3a13)`, or `persons` for what concerns several.
    pub record: String,
    pub problem: String,
}

/// Longest target id a seed may give (ids appear in URLs).
const MAX_ID_CHARS: usize = 128;

/// The seed's accounts as the store keeps them, created at `now`; or what is wrong.
pub fn accounts(cfg: &Config, seed: &Seed, now: OffsetDateTime) -> Result<Vec<Account>, SeedError> {
    let err = |record: String, problem: String| SeedError {
        file: seed.path.clone(),
        record,
        problem,
    };
    let mut out = Vec::new();
    let mut addresses: BTreeMap<String, usize> = BTreeMap::new();
    let mut held: BTreeMap<&OdsCode, u32> = BTreeMap::new();
    for (i, p) in seed.snapshot.persons.iter().enumerate() {
        let record = format!("persons[{i}] (target_id {})", p.target_id);
        let a = account(cfg, p, now).map_err(|problem| err(record.clone(), problem))?;
        if let Some(first) = addresses.insert(a.user_name.clone(), i) {
            return Err(err(
                record,
                format!("email {} is persons[{first}]'s too", a.user_name),
            ));
        }
        if p.status.counts_towards_cap() {
            *held.entry(&p.ods_code).or_default() += 1;
        }
        out.push(a);
    }
    for (ods, n) in held {
        // Caps as on a create (Access Policy v4; `rules::admit`).
        if let Some(org) = cfg.organisation(ods)
            && n > org.cap
        {
            return Err(err(
                "persons".into(),
                format!(
                    "account_cap: {ods} would hold {n} accounts, over its cap of {}",
                    org.cap
                ),
            ));
        }
    }
    Ok(out)
}

fn account(cfg: &Config, p: &snapshot::Account, now: OffsetDateTime) -> Result<Account, String> {
    let detail = |e: ApiError| e.detail;
    if cfg.organisation(&p.ods_code).is_none() {
        return Err(format!(
            "unknown_organisation: {} is in neither the configuration's registry nor the \
             snapshot's organisations",
            p.ods_code
        ));
    }
    let id = p.target_id.as_str();
    text::check("target_id", id).map_err(detail)?;
    if id.chars().count() > MAX_ID_CHARS {
        return Err(format!(
            "invalid_value: target_id is longer than {MAX_ID_CHARS} characters"
        ));
    }
    let user_name = address(cfg, p.email.as_deref())?;
    if let Some(x) = &p.external_id {
        rules::anchor_key(x.as_str()).map_err(detail)?;
    }
    if let Some(m) = &p.managed_by {
        text::check("managed_by", m).map_err(detail)?;
    }
    let mut content = User::default();
    for (f, v) in &p.attributes {
        if f == Field::Email {
            return Err(
                "attributes.email: the address is the record's email, not an attribute".into(),
            );
        }
        if v.trim().is_empty() {
            return Err(format!("attributes.{f} is blank (leave it out instead)"));
        }
        content.set_field(f, Some(v.to_string()));
    }
    if let Some(m) = &p.managed_by {
        content.nhs.get_or_insert_with(Nhs::default).managed_by = Some(m.clone());
    }
    rules::check_content(&content).map_err(detail)?;
    let leaver_since = match p.leaver_since {
        None => None,
        Some(_) if !matches!(p.status, Status::Leaver | Status::Deleted) => {
            return Err(format!(
                "leaver_since is given, but the status is {} (only leavers and deleted \
                 accounts have one)",
                p.status.as_str()
            ));
        }
        Some(t) => {
            let kept = from_ms(to_ms(t));
            if kept != t {
                return Err(format!(
                    "leaver_since {t} is more precise than the milliseconds the directory keeps"
                ));
            }
            Some(kept)
        }
    };
    Ok(Account {
        seq: 0,
        id: id.to_string(),
        external_id: p.external_id.as_ref().map(|x| x.as_str().to_string()),
        user_name,
        ods_code: p.ods_code.to_string(),
        status: p.status,
        created: now,
        modified: now,
        leaver_since,
        deleted_since: (p.status == Status::Deleted).then_some(now),
        version: version(p.etag.as_deref())?,
        content,
    })
}

/// The address a record holds: required, lowercase, in the directory's mail domain.
fn address(cfg: &Config, email: Option<&str>) -> Result<String, String> {
    let Some(email) = email else {
        return Err("email is missing: every directory account holds an NHSmail address".into());
    };
    let lower = email.trim().to_lowercase();
    let (local, domain) = lower.split_once('@').unwrap_or((&lower, ""));
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'));
    if !local_ok || domain != cfg.mail_domain {
        return Err(format!(
            "email {email:?} is not an address in the directory's mail domain {}",
            cfg.mail_domain
        ));
    }
    Ok(lower)
}

/// The version an `etag` (`W/"N"`) stands for; 1 without one.
fn version(etag: Option<&str>) -> Result<u64, String> {
    let Some(tag) = etag else {
        return Ok(1);
    };
    let n = tag.trim().trim_start_matches("W/").trim_matches('"');
    match n.parse::<u64>() {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err(format!(
            "etag {tag:?} is not one of the directory's (W/\"N\", N at least 1)"
        )),
    }
}

/// Store the accounts in one transaction if the database has never held any. Whether
/// they were stored.
pub fn store_if_new(conn: &Connection, accounts: &[Account]) -> Result<bool, ApiError> {
    if !store::never_held_accounts(conn)? {
        return Ok(false);
    }
    for a in accounts {
        store::insert(conn, a)?;
    }
    Ok(true)
}

/// The directory's state in the snapshot format (see the module doc for the order).
pub fn snapshot_of(cfg: &Config, accounts: &[Account]) -> Result<Snapshot, String> {
    let organisations = cfg
        .registry
        .values()
        .map(|o| Organisation {
            ods_code: o.ods_code.clone(),
            name: o.name.clone(),
            kind: o.kind,
            open: o.open,
            cap: Some(o.cap),
        })
        .collect();
    let mut persons = Vec::new();
    for a in accounts {
        let bad = |e: nhs_model::ids::IdError| format!("stored account {}: {e}", a.id);
        persons.push(snapshot::Account {
            target_id: TargetId::parse(&a.id).map_err(bad)?,
            external_id: a
                .external_id
                .as_deref()
                .map(ExternalId::parse)
                .transpose()
                .map_err(bad)?,
            ods_code: OdsCode::parse(&a.ods_code).map_err(bad)?,
            status: a.status,
            managed_by: a.content.nhs.as_ref().and_then(|n| n.managed_by.clone()),
            email: Some(a.user_name.clone()),
            leaver_since: a.leaver_since,
            attributes: a.content.fields(),
            etag: Some(etag(a.version)),
        });
    }
    persons.sort_by(|a, b| a.target_id.cmp(&b.target_id));
    Ok(Snapshot {
        format: FORMAT.to_string(),
        taken_at: None,
        organisations,
        persons,
    })
}

/// `nhs-directory export`: the state of the configured database file as a snapshot
/// document. It only reads, and may run beside the directory.
pub fn export(config: &Path) -> anyhow::Result<String> {
    let cfg = Config::load(config)?;
    let path = match &cfg.database {
        Database::Memory => anyhow::bail!(
            "{}: database is \":memory:\": its state lives only inside the running \
             directory; export needs a database file",
            config.display()
        ),
        Database::File(p) => p.clone(),
    };
    if !path.is_file() {
        anyhow::bail!(
            "{}: there is no database at {} (the directory makes it when it first starts)",
            config.display(),
            path.display()
        );
    }
    let conn = store::open_read_only(&path)?;
    let accounts = store::all(&conn)?;
    let snapshot = snapshot_of(&cfg, &accounts).map_err(anyhow::Error::msg)?;
    Ok(snapshot.to_json())
}

/// Seed a freshly opened store (see the module doc); every account is checked first.
pub async fn seed(cfg: &Config, store: &store::Store, now: OffsetDateTime) -> anyhow::Result<()> {
    let Some(seed) = &cfg.seed else {
        return Ok(());
    };
    let accounts = accounts(cfg, seed, now)?;
    let n = accounts.len();
    let stored = store.run(move |conn| store_if_new(conn, &accounts)).await?;
    if stored {
        tracing::info!(seed = %seed.path.display(), accounts = n, "seeded the directory");
    } else {
        tracing::warn!(
            seed = %seed.path.display(),
            "the database has held accounts before: the seed's accounts are not stored \
             (its organisations are in the registry)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-22 10:00 UTC);

    struct Setup {
        _dir: tempfile::TempDir,
        cfg: Result<Config, String>,
    }

    /// A configuration with `organisations` (TOML tables) seeded from `snapshot`.
    fn setup(organisations: &str, snapshot: &serde_json::Value) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.token"), "tok").unwrap();
        std::fs::write(dir.path().join("s.json"), snapshot.to_string()).unwrap();
        let file = dir.path().join("d.toml");
        std::fs::write(
            &file,
            format!(
                "listen = \"127.0.0.1:0\"\ndatabase = \":memory:\"\nseed = \"s.json\"\n\
                 [[client]]\nid = \"a\"\ntoken_file = \"a.token\"\n{organisations}"
            ),
        )
        .unwrap();
        Setup {
            cfg: Config::load(&file).map_err(|e| e.to_string()),
            _dir: dir,
        }
    }

    fn person(id: &str, email: &str) -> serde_json::Value {
        json!({"target_id": id, "ods_code": "RXA", "status": "active", "email": email,
               "attributes": {"given_name": "Ann", "family_name": "Lee"}})
    }

    fn snapshot(persons: Vec<serde_json::Value>) -> serde_json::Value {
        json!({"format": FORMAT,
               "organisations": [{"ods_code": "RXA", "name": "Trust", "kind": "trust",
                                  "open": true, "cap": 3}],
               "persons": persons})
    }

    fn seeded(s: &Setup) -> Result<Vec<Account>, String> {
        let cfg = s.cfg.as_ref().map_err(Clone::clone)?;
        let seed = cfg.seed.as_ref().ok_or("no seed")?;
        accounts(cfg, seed, NOW).map_err(|e| e.to_string())
    }

    #[test]
    fn every_kind_of_account_is_seeded_as_given() {
        let mut leaver = person("t3", "bo.leaver@nhs.net");
        leaver["status"] = json!("leaver");
        leaver["leaver_since"] = json!("2026-11-12T09:00:00.250Z");
        leaver["etag"] = json!("W/\"4\"");
        let mut anchored = person("t1", "Ann.Lee@NHS.net");
        anchored["external_id"] = json!("AF40AC76-1201-4205-83FB-A1707109E8B4");
        anchored["managed_by"] = json!("tansync-northgate");
        anchored["attributes"]["mobile"] = json!("+447700900123");
        let mut pending = person("t2", "cy.pending@nhs.net");
        pending["status"] = json!("pending");
        let mut deleted = person("t4", "di.deleted@nhs.net");
        deleted["status"] = json!("deleted");
        let s = setup("", &snapshot(vec![anchored, pending, leaver, deleted]));
        let a = seeded(&s).unwrap();
        assert_eq!(a.len(), 4);
        assert_eq!(a[0].user_name, "ann.lee@nhs.net");
        assert_eq!(
            a[0].external_id.as_deref(),
            Some("af40ac76-1201-4205-83fb-a1707109e8b4")
        );
        assert_eq!(&a[0].content.fields()[&Field::Mobile], "+447700900123");
        assert_eq!(a[1].status, Status::Pending);
        assert_eq!(a[1].external_id, None);
        assert_eq!(
            (a[2].status, a[2].leaver_since, a[2].version),
            (
                Status::Leaver,
                Some(datetime!(2026-11-12 09:00:00.25 UTC)),
                4
            )
        );
        assert_eq!(
            (a[3].status, a[3].deleted_since),
            (Status::Deleted, Some(NOW))
        );
        // The deleted one does not count towards the cap of 3.
        assert!(a.iter().all(|x| x.created == NOW && x.version >= 1));
    }

    #[test]
    fn records_that_break_a_rule_are_named() {
        let with = |edit: serde_json::Value| {
            let mut p = person("t9", "ann.lee@nhs.net");
            for (k, v) in edit.as_object().unwrap() {
                p[k] = v.clone();
            }
            seeded(&setup("", &snapshot(vec![person("t1", "x.y@nhs.net"), p]))).unwrap_err()
        };
        for (edit, want) in [
            (json!({"ods_code": "RZZ"}), "unknown_organisation: RZZ"),
            (json!({"email": null}), "email is missing"),
            (
                json!({"email": "ann.lee@example.org"}),
                "mail domain nhs.net",
            ),
            (
                json!({"email": "X.Y@nhs.net"}),
                "email x.y@nhs.net is persons[0]'s too",
            ),
            (
                json!({"attributes": {"given_name": "Ann"}}),
                "missing_mandatory: name.familyName",
            ),
            (
                json!({"attributes": {"given_name": "A\u{200B}nn", "family_name": "Lee"}}),
                "name.givenName holds U+200B",
            ),
            (
                json!({"attributes": {"given_name": "Ann", "family_name": "Lee", "email": "a@nhs.net"}}),
                "attributes.email",
            ),
            (
                json!({"attributes": {"given_name": "Ann", "family_name": "Lee", "job_title": " "}}),
                "attributes.job_title is blank",
            ),
            (json!({"managed_by": "agent\n"}), "managed_by holds U+000A"),
            (
                json!({"leaver_since": "2026-11-12T09:00:00Z"}),
                "only leavers",
            ),
            (json!({"etag": "\"abc\""}), "etag \"\\\"abc\\\"\""),
            (json!({"target_id": "t\u{202E}9"}), "target_id holds U+202E"),
        ] {
            assert!(
                want.is_empty() || with(edit.clone()).contains(want),
                "{edit}: {}",
                with(edit.clone())
            );
            assert!(
                with(edit.clone()).contains("persons[1] (target_id"),
                "{edit}"
            );
        }
        let mut precise = person("t9", "ann.lee@nhs.net");
        precise["status"] = json!("leaver");
        precise["leaver_since"] = json!("2026-11-12T09:00:00.0001Z");
        let e = seeded(&setup("", &snapshot(vec![precise]))).unwrap_err();
        assert!(e.contains("more precise than the milliseconds"), "{e}");
        let four = (1..=4)
            .map(|n| person(&format!("t{n}"), &format!("p{n}@nhs.net")))
            .collect();
        let e = seeded(&setup("", &snapshot(four))).unwrap_err();
        assert!(
            e.contains("persons: account_cap: RXA would hold 4 accounts, over its cap of 3"),
            "{e}"
        );
    }

    #[test]
    fn the_configurations_organisations_and_the_snapshots_join_and_must_agree() {
        let same = "[[organisation]]\nods_code = \"RXA\"\nname = \"Trust\"\nkind = \"trust\"\nopen = true\ncap = 3\n\
                    [[organisation]]\nods_code = \"RXB\"\nkind = \"gp\"\nopen = false\n";
        let s = setup(same, &snapshot(vec![]));
        let cfg = s.cfg.as_ref().unwrap();
        let codes: Vec<&str> = cfg.registry.keys().map(OdsCode::as_str).collect();
        assert_eq!(codes, ["RXA", "RXB"]);
        // A cap left out is the kind's default, on both sides.
        let mut snap = snapshot(vec![]);
        snap["organisations"][0]["cap"] = json!(null);
        let s = setup(&same.replace("cap = 3\n", "cap = 50\n"), &snap);
        assert!(s.cfg.is_ok(), "{:?}", s.cfg.err());
        let s = setup(&same.replace("cap = 3", "cap = 20"), &snapshot(vec![]));
        let e = s.cfg.unwrap_err();
        assert!(
            e.contains("organisations[0]")
                && e.contains("cap 20 in the configuration, 3 in the snapshot"),
            "{e}"
        );
        let mut snap = snapshot(vec![]);
        snap["organisations"][0]["kind"] = json!("hosted");
        snap["organisations"][0]["cap"] = json!(25);
        let e = setup("", &snap).cfg.unwrap_err();
        assert!(e.contains("organisations[0].cap"), "{e}");
        let e = setup("", &json!({"format": "v0", "organisations": []}))
            .cfg
            .unwrap_err();
        assert!(e.contains("seed") && e.contains("format is \"v0\""), "{e}");
    }

    #[test]
    fn export_round_trips_through_a_seed_and_stores_only_into_a_new_database() {
        let mut leaver = person("t2", "bo.leaver@nhs.net");
        leaver["status"] = json!("leaver");
        leaver["leaver_since"] = json!("2026-11-12T09:00:00Z");
        leaver["etag"] = json!("W/\"7\"");
        let mut first = person("t1", "ann.lee@nhs.net");
        first["external_id"] = json!("x-1");
        let s = setup("", &snapshot(vec![leaver, first]));
        let cfg = s.cfg.as_ref().unwrap();
        let accounts = seeded(&s).unwrap();
        let conn = Connection::open_in_memory().unwrap();
        store::create_tables(&conn).unwrap();
        assert!(store_if_new(&conn, &accounts).unwrap());
        // Not twice, and not into a database that has held accounts.
        assert!(!store_if_new(&conn, &accounts).unwrap());
        let exported = snapshot_of(cfg, &store::all(&conn).unwrap()).unwrap();
        let ids: Vec<&str> = exported
            .persons
            .iter()
            .map(|p| p.target_id.as_str())
            .collect();
        assert_eq!(ids, ["t1", "t2"]);
        assert_eq!(exported.persons[1].etag.as_deref(), Some("W/\"7\""));
        assert_eq!(exported.organisations[0].cap, Some(3));
        let text = exported.to_json();

        let s2 = setup("", &serde_json::from_str(&text).unwrap());
        let again = seeded(&s2).unwrap();
        let conn2 = Connection::open_in_memory().unwrap();
        store::create_tables(&conn2).unwrap();
        assert!(store_if_new(&conn2, &again).unwrap());
        let text2 = snapshot_of(s2.cfg.as_ref().unwrap(), &store::all(&conn2).unwrap())
            .unwrap()
            .to_json();
        assert_eq!(text2, text);
    }
}
