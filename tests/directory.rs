//! The NHS rules of the reference directory over HTTP, against the real binary
//! (`nhs-directory serve`, one process per test on a port the OS picks): account
//! caps, closed and unknown organisations, one account per anchor, address allocation,
//! ETag preconditions, sharing agreements, the rate limit and the account lifecycle
//! driven by the admin clock. Each refusal must be a SCIM error (RFC 7644 §3.12) whose
//! detail starts with the rule code the agent's plan uses. Also the agent's plan against
//! it where the directory's own way of holding a value matters (phones as written).

mod common;
use common::directory::{Answer, Api, DirectoryProcess};
use serde_json::{Value, json};
use tansync::scim::{ERROR, MEDIA_TYPE, NHS_SCHEMA, PATCH_OP, USER_SCHEMA};

const AGENT: &str = "agent-token-northgate-7f3a";
const OTHER: &str = "agent-token-other-91c2";
const ADMIN: &str = "admin-token-4be0";

/// A registry with an open trust (cap 3), an open GP practice, a closed trust; the
/// agent's agreement also names ZZZ99, which the registry does not hold. The other
/// client may act for RXA only. `extra` goes in at the top (keys or tables).
fn config(extra: &str) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
database = ":memory:"
{extra}

[admin]
token_file = "admin.token"

[[client]]
id = "tansync-northgate"
token_file = "agent.token"
organisations = ["RXA", "RXA80", "RXC", "ZZZ99"]

[[client]]
id = "tansync-other"
token_file = "other.token"
organisations = ["RXA"]

[[organisation]]
ods_code = "RXA"
name = "Northgate Healthcare NHS Trust"
kind = "trust"
open = true
cap = 3

[[organisation]]
ods_code = "RXA80"
name = "Northgate Medical Practice"
kind = "gp"
open = true

[[organisation]]
ods_code = "RXC"
name = "Closed Community Trust"
kind = "trust"
open = false
"#
    )
}

/// A running directory and a client for each token.
struct Env {
    dir: DirectoryProcess,
    agent: Api,
    other: Api,
    admin: Api,
}

fn start(extra: &str) -> Env {
    let dir = DirectoryProcess::start(
        &config(extra),
        &[
            ("agent.token", AGENT),
            ("other.token", OTHER),
            ("admin.token", ADMIN),
        ],
    );
    Env {
        agent: Api::new(&dir.url, AGENT),
        other: Api::new(&dir.url, OTHER),
        admin: Api::new(&dir.url, ADMIN),
        dir,
    }
}

fn person(ods: &str, given: &str, family: &str, external_id: Option<&str>) -> Value {
    let mut u = json!({
        "schemas": [USER_SCHEMA, NHS_SCHEMA],
        "name": {"givenName": given, "familyName": family},
        NHS_SCHEMA: {"odsCode": ods},
    });
    if let Some(x) = external_id {
        u["externalId"] = json!(x);
    }
    u
}

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

/// Create an account and return it, failing the test on a refusal.
async fn create(api: &Api, body: &Value) -> Value {
    let a = api.post("/Users", body).await;
    assert_eq!(a.status, 201, "create refused: {a:?}");
    a.body
}

fn id(u: &Value) -> String {
    u["id"].as_str().expect("id").to_string()
}

/// A SCIM error with this HTTP status whose detail starts with `code:`.
#[track_caller]
fn assert_refused(a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status, status, "{a:?}");
    assert_eq!(a.header("content-type"), Some(MEDIA_TYPE), "{a:?}");
    assert_eq!(a.body["schemas"], json!([ERROR]), "{a:?}");
    assert_eq!(a.body["status"], json!(status.to_string()), "{a:?}");
    let detail = a.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with(&format!("{code}:")),
        "detail {detail:?} does not name the rule {code}"
    );
}

#[tokio::test]
async fn account_cap_refuses_one_account_more() {
    let env = start("");
    let mut ids = Vec::new();
    for n in 0..3 {
        let u = create(&env.agent, &person("RXA", "Ada", &format!("Cap{n}"), None)).await;
        ids.push(id(&u));
    }
    let a = env
        .agent
        .post("/Users", &person("RXA", "Ada", "Cap3", None))
        .await;
    assert_refused(&a, 400, "account_cap");
    assert_eq!(a.body["detail"], "account_cap: RXA holds 3 of 3 accounts");

    let org = env.agent.get("/Organisations/RXA").await;
    assert_eq!(
        (org.body["cap"].clone(), org.body["accounts"].clone()),
        (json!(3), json!(3))
    );

    // Another organisation's cap is its own.
    create(&env.agent, &person("RXA80", "Ada", "Cap3", None)).await;
    // A deleted account frees its place.
    let del = env
        .agent
        .call("DELETE", &format!("/Users/{}", ids[0]), None, &[])
        .await;
    assert_eq!(del.status, 204, "{del:?}");
    create(&env.agent, &person("RXA", "Ada", "Cap3", None)).await;
}

#[tokio::test]
async fn closed_unknown_and_missing_organisations_are_refused() {
    let env = start("");
    let a = env
        .agent
        .post("/Users", &person("RXC", "Bea", "Closed", None))
        .await;
    assert_refused(&a, 400, "organisation_closed");

    let a = env
        .agent
        .post("/Users", &person("ZZZ99", "Bea", "Unknown", None))
        .await;
    assert_refused(&a, 400, "unknown_organisation");
    assert_eq!(a.body["scimType"], "invalidValue");

    // No ODS code and no default_organisation in the configuration.
    let mut u = person("RXA", "Bea", "Nowhere", None);
    u.as_object_mut().map(|o| o.remove(NHS_SCHEMA));
    let a = env.agent.post("/Users", &u).await;
    assert_refused(&a, 400, "missing_mandatory");

    // Moving an account into a closed organisation is refused as well.
    let u = create(&env.agent, &person("RXA", "Bea", "Mover", None)).await;
    let a = env
        .agent
        .call(
            "PATCH",
            &format!("/Users/{}", id(&u)),
            Some(&patch(json!([{"op": "replace",
                "path": format!("{NHS_SCHEMA}:odsCode"), "value": "RXC"}]))),
            &[],
        )
        .await;
    assert_refused(&a, 400, "organisation_closed");
}

#[tokio::test]
async fn a_second_account_with_the_same_external_id_is_refused() {
    let env = start("");
    let anchor = "af40ac76-1201-4205-83fb-a1707109e8b4";
    let first = create(&env.agent, &person("RXA", "Cai", "Anchor", Some(anchor))).await;
    assert_eq!(first["externalId"], anchor);

    // Anchors compare ignoring case, and across organisations (one account per person).
    for ods in ["RXA", "RXA80"] {
        let a = env
            .agent
            .post(
                "/Users",
                &person(ods, "Cai", "Again", Some(&anchor.to_uppercase())),
            )
            .await;
        assert_refused(&a, 409, "duplicate_anchor");
        assert_eq!(a.body["scimType"], "uniqueness");
    }

    // Nor can another account take the anchor over.
    let second = create(&env.agent, &person("RXA", "Dee", "Other", None)).await;
    let a = env
        .agent
        .call(
            "PATCH",
            &format!("/Users/{}", id(&second)),
            Some(&patch(
                json!([{"op": "replace", "path": "externalId", "value": anchor}]),
            )),
            &[],
        )
        .await;
    assert_refused(&a, 409, "duplicate_anchor");
}

#[tokio::test]
async fn addresses_are_given_dot_family_at_nhs_net_numbered_on_clash() {
    let env = start("");
    let mut ids = Vec::new();
    for (given, family, want) in [
        ("Siân", "Evans", "sian.evans@nhs.net"),
        ("Sian", "EVANS", "sian.evans1@nhs.net"),
        ("SIÂN", "evans", "sian.evans2@nhs.net"),
        ("Aoife", "O'Brien-Ngũgĩ", "aoife.obrien-ngugi@nhs.net"),
    ] {
        let mut body = person("RXA80", given, family, None);
        // A userName from the client is ignored: the directory allocates it.
        body["userName"] = json!("chosen.by.client@example.org");
        let u = create(&env.agent, &body).await;
        assert_eq!(u["userName"], want, "{given} {family}");
        assert_eq!(
            u["emails"],
            json!([{"value": want, "type": "work", "primary": true}])
        );
        ids.push(id(&u));
    }
    // The address stays when the names change.
    let a = env
        .agent
        .call(
            "PATCH",
            &format!("/Users/{}", ids[0]),
            Some(&patch(
                json!([{"op": "replace", "path": "name.familyName", "value": "Jones"}]),
            )),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["userName"], "sian.evans@nhs.net");
    // A freed address is given again, before higher numbers.
    let del = env
        .agent
        .call("DELETE", &format!("/Users/{}", ids[0]), None, &[])
        .await;
    assert_eq!(del.status, 204);
    let u = create(&env.agent, &person("RXA80", "Sian", "Evans", None)).await;
    assert_eq!(u["userName"], "sian.evans@nhs.net");
}

#[tokio::test]
async fn a_stale_if_match_is_refused_with_412() {
    let env = start("");
    let created = env
        .agent
        .post("/Users", &person("RXA", "Eli", "Etag", None))
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.header("etag"), Some("W/\"1\""));
    assert_eq!(created.body["meta"]["version"], "W/\"1\"");
    let path = format!("/Users/{}", id(&created.body));

    let unchanged = env
        .agent
        .call("GET", &path, None, &[("if-none-match", "W/\"1\"")])
        .await;
    assert_eq!(unchanged.status, 304);

    let title = |t: &str| patch(json!([{"op": "replace", "path": "title", "value": t}]));
    let a = env
        .agent
        .call(
            "PATCH",
            &path,
            Some(&title("Nurse")),
            &[("if-match", "W/\"1\"")],
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("etag"), Some("W/\"2\""));

    // Version 1 is gone: PATCH, PUT and DELETE naming it are refused, and change nothing.
    let stale = [("if-match", "W/\"1\"")];
    let a = env
        .agent
        .call("PATCH", &path, Some(&title("Matron")), &stale)
        .await;
    assert_refused(&a, 412, "precondition_failed");
    let a = env
        .agent
        .call(
            "PUT",
            &path,
            Some(&person("RXA", "Eli", "Replaced", None)),
            &stale,
        )
        .await;
    assert_refused(&a, 412, "precondition_failed");
    let a = env.agent.call("DELETE", &path, None, &stale).await;
    assert_refused(&a, 412, "precondition_failed");

    let now = env.agent.get(&path).await;
    assert_eq!(now.body["title"], "Nurse");
    assert_eq!(now.body["name"]["familyName"], "Etag");
    assert_eq!(now.header("etag"), Some("W/\"2\""));
    let a = env
        .agent
        .call("DELETE", &path, None, &[("if-match", "W/\"2\"")])
        .await;
    assert_eq!(a.status, 204);
}

#[tokio::test]
async fn a_client_without_an_agreement_for_the_organisation_is_refused() {
    let env = start("");
    // The other client's agreement covers RXA only.
    let a = env
        .other
        .post("/Users", &person("RXA80", "Fay", "Gp", None))
        .await;
    assert_refused(&a, 403, "no_sharing_agreement");
    assert_eq!(
        a.body["detail"],
        "no_sharing_agreement: client tansync-other has no agreement for RXA80"
    );

    let gp = create(&env.agent, &person("RXA80", "Fay", "Gp", None)).await;
    let trust = create(&env.other, &person("RXA", "Gus", "Trust", None)).await;
    let gp_path = format!("/Users/{}", id(&gp));

    // Neither read nor change another organisation's account.
    assert_refused(&env.other.get(&gp_path).await, 403, "no_sharing_agreement");
    let a = env
        .other
        .call(
            "PATCH",
            &gp_path,
            Some(&patch(
                json!([{"op": "replace", "path": "title", "value": "x"}]),
            )),
            &[],
        )
        .await;
    assert_refused(&a, 403, "no_sharing_agreement");
    let a = env.other.call("DELETE", &gp_path, None, &[]).await;
    assert_refused(&a, 403, "no_sharing_agreement");
    // Nor move an account into it.
    let a = env
        .other
        .call(
            "PATCH",
            &format!("/Users/{}", id(&trust)),
            Some(&patch(json!([{"op": "replace",
                "path": format!("{NHS_SCHEMA}:odsCode"), "value": "RXA80"}]))),
            &[],
        )
        .await;
    assert_refused(&a, 403, "no_sharing_agreement");

    // Lists show only the client's organisations; a filter naming another is refused.
    let list = env.other.get("/Users").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["totalResults"], 1);
    assert_eq!(list.body["Resources"][0]["id"], trust["id"]);
    let filter = format!("{NHS_SCHEMA}:odsCode eq \"RXA80\"");
    let a = env
        .other
        .post(
            "/Users/.search",
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                    "filter": filter}),
        )
        .await;
    assert_refused(&a, 403, "no_sharing_agreement");

    // No token, or a wrong one: 401 with a Bearer challenge.
    let stranger = Api::new(&env.dir.url, "not-a-token");
    let a = stranger.get("/Users").await;
    assert_eq!(a.status, 401, "{a:?}");
    assert!(
        a.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")),
        "{a:?}"
    );
}

#[tokio::test]
async fn over_the_rate_limit_is_429_with_retry_after() {
    let env = start("[rate_limit]\nrequests_per_second = 0.2\nburst = 2\n");
    // A burst of 2, then one request per 5 s: the third request at once is over.
    let mut limited = None;
    for _ in 0..5 {
        let a = env.agent.get("/Users").await;
        if a.status == 429 {
            limited = Some(a);
            break;
        }
        assert_eq!(a.status, 200, "{a:?}");
    }
    let a = limited.expect("no 429 within 5 requests at 0.2 requests per second");
    assert_refused(&a, 429, "rate_limited");
    let retry: u64 = a
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in seconds: {a:?}"));
    assert!((1..=5).contains(&retry), "Retry-After {retry}");
    // The limit is per client: the other one is not held up.
    assert_eq!(env.other.get("/Users").await.status, 200);
}

#[tokio::test]
async fn pending_becomes_active_and_leavers_are_deleted_as_the_admin_clock_moves() {
    let env = start("[lifecycle]\npending_seconds = 3600\n");
    let u = create(&env.agent, &person("RXA", "Hal", "Pending", None)).await;
    assert_eq!(u[NHS_SCHEMA]["status"], "pending");
    let path = format!("/Users/{}", id(&u));
    let title = patch(json!([{"op": "replace", "path": "title", "value": "Porter"}]));
    let a = env.agent.call("PATCH", &path, Some(&title), &[]).await;
    assert_refused(&a, 409, "target_pending");

    // The clock is the admin's alone.
    let advance = |s: u64| json!({"advance_seconds": s});
    let a = env.agent.post("/_admin/clock", &advance(3600)).await;
    assert_eq!(a.status, 401, "{a:?}");

    // Not yet: 3000 of 3600 s.
    let a = env.admin.post("/_admin/clock", &advance(3000)).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["offset_seconds"], 3000);
    assert_eq!(
        env.agent.get(&path).await.body[NHS_SCHEMA]["status"],
        "pending"
    );

    env.admin.post("/_admin/clock", &advance(600)).await;
    let now = env.agent.get(&path).await;
    assert_eq!(now.body[NHS_SCHEMA]["status"], "active", "{now:?}");
    assert_eq!(now.body["active"], true);
    let a = env.agent.call("PATCH", &path, Some(&title), &[]).await;
    assert_eq!(a.status, 200, "{a:?}");

    // A leaver is kept 30 days, then deleted, and purged 30 days after that.
    let a = env
        .agent
        .call(
            "PATCH",
            &path,
            Some(&patch(
                json!([{"op": "replace", "path": "active", "value": false}]),
            )),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body[NHS_SCHEMA]["status"], "leaver");
    assert!(a.body[NHS_SCHEMA]["leaverSince"].is_string(), "{a:?}");
    env.admin.post("/_admin/clock", &advance(29 * 86_400)).await;
    assert_eq!(
        env.agent.get(&path).await.body[NHS_SCHEMA]["status"],
        "leaver"
    );
    env.admin.post("/_admin/clock", &advance(2 * 86_400)).await;
    let now = env.agent.get(&path).await;
    assert_eq!(now.body[NHS_SCHEMA]["status"], "deleted", "{now:?}");
    assert_eq!(now.body["active"], false);
    env.admin.post("/_admin/clock", &advance(31 * 86_400)).await;
    assert_eq!(env.agent.get(&path).await.status, 404);
}

/// Regression: an account holding its telephone and mobile in national format
/// (`07700 900123`, as a person or another tool may have written them) is no change for
/// a source holding the same numbers in E.164: the plan compares phones in E.164 on both
/// sides. A different number is still an update (the comparison is live).
#[tokio::test]
async fn a_national_format_phone_in_the_directory_is_no_change_for_the_same_e164_number() {
    use common::{plan_json, q, write_config};
    let env = start("");
    let same = "11111111-1111-1111-1111-111111111111";
    let other = "22222222-2222-2222-2222-222222222222";
    for (xid, given, family) in [(same, "Ann", "Lee"), (other, "Bo", "Ng")] {
        let mut u = person("RXA", given, family, Some(xid));
        u["displayName"] = json!(format!("{given} {family}"));
        u["phoneNumbers"] = json!([
            {"value": "07700 900123", "type": "mobile"},
            {"value": "0113 496 0000", "type": "work"},
        ]);
        u[NHS_SCHEMA]["managedBy"] = json!("tansync-northgate");
        let created = create(&env.agent, &u).await;
        assert_eq!(created[NHS_SCHEMA]["status"], "active", "{created}");
        assert_eq!(
            created["phoneNumbers"][0]["value"], "07700 900123",
            "the directory keeps the number as written"
        );
    }

    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let person_ldif = |cn: &str, guid: &str, given: &str, family: &str, mobile: &str| {
        format!(
            "dn: CN={cn},OU=Staff,DC=x\nobjectClass: user\nobjectGUID:: {guid}\n\
             givenName: {given}\nsn: {family}\nmobile: {mobile}\n\
             telephoneNumber: +441134960000\nuserAccountControl: 512\n\n"
        )
    };
    std::fs::write(
        d.join("src.ldif"),
        person_ldif(
            "Ann Lee",
            "EREREREREREREREREREREQ==",
            "Ann",
            "Lee",
            "+447700900123",
        ) + &person_ldif(
            "Bo Ng",
            "IiIiIiIiIiIiIiIiIiIiIg==",
            "Bo",
            "Ng",
            "+447700900124",
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("rules.toml"),
        "[[rule]]\nid = \"staff\"\naction = \"include\"\nunder = [\"OU=Staff,DC=x\"]\nods = { constant = \"RXA\" }\n",
    )
    .unwrap();
    std::fs::write(
        d.join("agreements.toml"),
        "[partnering]\nreference = \"PA-1\"\nvalid_from = 2026-01-01\nvalid_until = 2099-12-31\n\n\
         [[sharing]]\nods_code = \"RXA\"\nreference = \"SA-RXA\"\nvalid_from = 2026-01-01\n\
         valid_until = 2099-12-31\noperations = [\"provision\", \"update\", \"remove\", \"move\", \"restore\", \"join\"]\n\
         attributes = [\"given_name\", \"family_name\", \"display_name\", \"job_title\", \"department\", \"site\", \"telephone\", \"mobile\", \"employee_id\"]\n",
    )
    .unwrap();
    common::write_secret(&d.join("agent.token"), &format!("{AGENT}\n"));
    let cfg = write_config(
        d,
        &format!(
            "agent_id = \"tansync-northgate\"\n\n[source]\nkind = \"ldif\"\npath = \"src.ldif\"\n\n\
             [filters]\nfiles = [\"rules.toml\"]\n\n[target]\nkind = \"scim\"\nurl = \"{}\"\n\
             token_file = {}\n\n[agreements]\nfile = \"agreements.toml\"\n\n[state]\ndir = \"state\"\n",
            env.dir.url,
            q(d.join("agent.token")),
        ),
    );
    let (run, plan) = plan_json(&cfg);
    assert_eq!(plan["target"]["read"], 2, "{}", run.stdout);
    assert_eq!(plan["summary"]["unchanged"], 1, "{}", run.stdout);
    let ops = plan["operations"].as_array().unwrap();
    assert_eq!(
        ops.len(),
        1,
        "only Bo's mobile differs; Ann's numbers are the same in either form: {}",
        run.stdout
    );
    assert_eq!(
        (&ops[0]["kind"], &ops[0]["external_id"], &ops[0]["changes"]),
        (
            &json!("update"),
            &json!(other),
            &json!([{"field": "mobile", "old": "07700 900123", "new": "+447700900124"}])
        ),
        "{}",
        run.stdout
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
}
