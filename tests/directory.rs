//! The NHS rules of the reference directory over HTTP, against the real binary
//! (`nhs-directory serve`, one process per test on a port the OS picks): account
//! caps, closed and unknown organisations, one account per anchor, address allocation,
//! ETag preconditions, sharing agreements, the rate limit and the account lifecycle
//! driven by the admin clock; bounded filters, refused control and invisible
//! characters, read-only attributes. Each refusal must be a SCIM error (RFC 7644 §3.12)
//! whose detail starts with the rule code the agent's plan uses, or names the
//! attribute it refuses. Also the agent's plan against it where the directory's own way
//! of holding a value matters (phones as written).

mod common;
use common::directory::{Answer, Api, DirectoryProcess, pct};
use serde_json::{Value, json};
use tansync::scim::{ERROR, MEDIA_TYPE, NHS_SCHEMA, PATCH_OP, USER_SCHEMA};

const AGENT: &str = "agent-token-northgate-7f3a";
const OTHER: &str = "agent-token-other-91c2";
const ADMIN: &str = "admin-token-4be0";

/// A registry with an open trust (cap 3), an open GP practice, a closed trust; the
/// agent's agreement also names ZZZ99, which the registry does not hold. The other
/// client may act for RXA only. `extra` goes in at the top (keys or tables).
fn config(extra: &str) -> String {
    config_with(extra, "")
}

/// As [`config`], with `admin` added to the `[admin]` table.
fn config_with(extra: &str, admin: &str) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
database = ":memory:"
{extra}

[admin]
token_file = "admin.token"
{admin}

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
    start_config(&config(extra))
}

fn start_config(config: &str) -> Env {
    let dir = DirectoryProcess::start(
        config,
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
        // A userName from the client is not used: the directory allocates the address.
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

/// A search request body.
fn search(filter: &str, start: usize, count: usize) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
           "filter": filter, "startIndex": start, "count": count})
}

fn ids_of(a: &Answer) -> Vec<String> {
    a.body["Resources"]
        .as_array()
        .expect("Resources")
        .iter()
        .map(id)
        .collect()
}

#[tokio::test]
async fn an_organisation_pages_in_creation_order_whatever_the_filter_adds() {
    let env = start("");
    // Accounts of two organisations, interleaved; RXA80's in creation order.
    let mut practice = Vec::new();
    for (n, given) in ["Aled", "Bryn", "Cai", "Dewi", "Elis"].iter().enumerate() {
        practice.push(id(&create(
            &env.agent,
            &person("RXA80", given, "Morgan", None),
        )
        .await));
        if n < 2 {
            create(&env.agent, &person("RXA", given, "Pugh", None)).await;
        }
    }
    // `odsCode eq X` alone (any case), page by page: exactly X's accounts, in order.
    for code in ["RXA80", "rxa80"] {
        let filter = format!("{NHS_SCHEMA}:odsCode eq \"{code}\"");
        let mut seen = Vec::new();
        for start in [1, 3, 5] {
            let a = env
                .agent
                .post("/Users/.search", &search(&filter, start, 2))
                .await;
            assert_eq!(a.status, 200, "{a:?}");
            assert_eq!(a.body["totalResults"], 5, "{a:?}");
            assert_eq!(a.body["startIndex"], start, "{a:?}");
            seen.extend(ids_of(&a));
        }
        assert_eq!(seen, practice, "{code}");
        let past = env
            .agent
            .post("/Users/.search", &search(&filter, 9, 2))
            .await;
        assert_eq!(past.body["totalResults"], 5, "{past:?}");
        assert!(ids_of(&past).is_empty(), "{past:?}");
    }
    // With another term, the filter still decides within the organisation.
    let filter = format!(
        "{NHS_SCHEMA}:odsCode eq \"RXA80\" and (name.givenName eq \"Bryn\" or name.givenName eq \"Elis\")"
    );
    let a = env
        .agent
        .post("/Users/.search", &search(&filter, 1, 10))
        .await;
    assert_eq!(a.body["totalResults"], 2, "{a:?}");
    assert_eq!(ids_of(&a), vec![practice[1].clone(), practice[4].clone()]);
    // A code that is not an ODS code matches nothing (and is no error).
    let filter = format!("{NHS_SCHEMA}:odsCode eq \" RXA80\"");
    let a = env
        .agent
        .post("/Users/.search", &search(&filter, 1, 10))
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["totalResults"], 0, "{a:?}");
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

/// A SCIM error with this status and scimType whose detail contains `needle`.
#[track_caller]
fn assert_scim_error(a: &Answer, status: u16, scim_type: &str, needle: &str) {
    assert_eq!(a.status, status, "{a:?}");
    assert_eq!(a.body["schemas"], json!([ERROR]), "{a:?}");
    assert_eq!(a.body["scimType"], scim_type, "{a:?}");
    let detail = a.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(needle),
        "detail {detail:?} lacks {needle:?}"
    );
}

#[tokio::test]
async fn deep_filters_are_refused_and_the_directory_keeps_answering() {
    let env = start("");
    let u = create(&env.agent, &person("RXA", "Ivy", "Deep", None)).await;
    let path = format!("/Users/{}", id(&u));
    let nest = |n: usize, open: &str| format!("{}userName pr{}", open.repeat(n), ")".repeat(n));
    let search = |filter: String| {
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
               "filter": filter})
    };

    // 2,000 levels, in the query of a GET and in a search body, by parentheses and not.
    for open in ["(", "not ("] {
        let a = env
            .agent
            .get(&format!("/Users?filter={}", pct(&nest(2_000, open))))
            .await;
        assert_scim_error(&a, 400, "invalidFilter", "nests deeper than 64 levels");
        let a = env
            .agent
            .post("/Users/.search", &search(nest(2_000, open)))
            .await;
        assert_scim_error(&a, 400, "invalidFilter", "nests deeper than 64 levels");
    }
    // 100,000 levels: refused by its length before it is parsed. In a GET query it is
    // past the HTTP layer's limit on a request head, which answers 431 and closes the
    // connection, perhaps before the client has sent it all (then the client sees the
    // connection go); the directory answers on either way.
    let a = env
        .agent
        .post("/Users/.search", &search(nest(100_000, "(")))
        .await;
    assert_scim_error(&a, 400, "invalidFilter", "at most 16384");
    let huge = format!("/Users?filter={}", pct(&nest(100_000, "(")));
    if let Ok(a) = env.agent.try_call("GET", &huge, None, &[]).await {
        assert_eq!(a.status, 431, "{a:?}");
    }
    // 64 levels are still a filter.
    let a = env
        .agent
        .get(&format!("/Users?filter={}", pct(&nest(64, "("))))
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["totalResults"], 1);

    // A PATCH path's filter is bounded the same way (RFC 7644 §3.12: invalidFilter for
    // a path filter), and an over-long path is invalidPath.
    let deep_path = |n: usize| {
        format!(
            "phoneNumbers[{}type eq \"work\"{}].value",
            "(".repeat(n),
            ")".repeat(n)
        )
    };
    let a = env
        .agent
        .call(
            "PATCH",
            &path,
            Some(&patch(
                json!([{"op": "replace", "path": deep_path(2_000), "value": "01632 960001"}]),
            )),
            &[],
        )
        .await;
    assert_scim_error(&a, 400, "invalidFilter", "nests deeper than 64 levels");
    let a = env
        .agent
        .call(
            "PATCH",
            &path,
            Some(&patch(
                json!([{"op": "replace", "path": deep_path(100_000), "value": "1"}]),
            )),
            &[],
        )
        .await;
    assert_scim_error(&a, 400, "invalidPath", "at most 16384");

    // The directory is still there, and the account unchanged.
    let now = env.agent.get(&path).await;
    assert_eq!(now.status, 200, "{now:?}");
    assert!(now.body.get("phoneNumbers").is_none(), "{now:?}");
    let a = env
        .agent
        .get(&format!(
            "/Users?filter={}",
            pct("(name.familyName eq \"Deep\")")
        ))
        .await;
    assert_eq!(a.body["totalResults"], 1, "{a:?}");
}

#[tokio::test]
async fn control_and_invisible_characters_are_refused_in_stored_values() {
    let env = start("");
    let ext = |attr: &str| format!("{NHS_SCHEMA}:{attr}");
    for (given, family, attr, cp) in [
        ("Jo\u{200B}hn", "Smith", "name.givenName", "U+200B"),
        ("John", "Smith\u{202E}", "name.familyName", "U+202E"),
        ("\u{3164}", "Smith", "name.givenName", "U+3164"),
        ("John", "Smith\nJones", "name.familyName", "U+000A"),
        ("\u{FEFF}John", "Smith", "name.givenName", "U+FEFF"),
    ] {
        let a = env
            .agent
            .post("/Users", &person("RXA", given, family, None))
            .await;
        assert_scim_error(&a, 400, "invalidValue", &format!("{attr} holds {cp}"));
    }
    let mut u = person("RXA", "Kai", "Visible", None);
    u["title"] = json!("Nurse\u{0085}");
    let a = env.agent.post("/Users", &u).await;
    assert_scim_error(&a, 400, "invalidValue", "title holds U+0085");
    let mut u = person("RXA", "Kai", "Visible", Some("af40ac76\u{200D}"));
    u[NHS_SCHEMA]["site"] = json!("Ward 7");
    let a = env.agent.post("/Users", &u).await;
    assert_scim_error(&a, 400, "invalidValue", "externalId holds U+200D");

    // Names in any script are kept as written, joiners inside a Persian name included.
    let persian = "علی\u{200C}زاده";
    let u = create(&env.agent, &person("RXA", "Жанна", persian, None)).await;
    assert_eq!(u["name"]["familyName"], persian);
    let path = format!("/Users/{}", id(&u));

    // PATCH and PUT are held to the same rule, and change nothing when refused.
    for (p, value, attr) in [
        ("title", "Senior\u{2028}Nurse", "title"),
        (&ext("site"), "Ward\u{7F}7", &ext("site")),
        (
            "phoneNumbers[type eq \"work\"].value",
            "01632\u{2066}960001",
            "phoneNumbers[0].value",
        ),
        ("name.givenName", "\u{115F}", "name.givenName"),
    ] {
        let a = env
            .agent
            .call(
                "PATCH",
                &path,
                Some(&patch(
                    json!([{"op": "replace", "path": p, "value": value}]),
                )),
                &[],
            )
            .await;
        assert_scim_error(&a, 400, "invalidValue", &format!("{attr} holds U+"));
    }
    let mut put = person("RXA", "Жанна", persian, None);
    put["displayName"] = json!("Zhanna\t");
    let a = env.agent.call("PUT", &path, Some(&put), &[]).await;
    assert_scim_error(&a, 400, "invalidValue", "displayName holds U+0009");
    let now = env.agent.get(&path).await;
    assert_eq!(now.body["meta"]["version"], "W/\"1\"", "{now:?}");
}

#[tokio::test]
async fn read_only_attributes_are_refused_not_ignored() {
    let env = start("");
    // The case the directory used to get wrong: a create asking for a leaver with its
    // leaverSince made an active account.
    let mut u = person("RXA", "Lee", "Leaver", None);
    u[NHS_SCHEMA]["status"] = json!("leaver");
    u[NHS_SCHEMA]["leaverSince"] = json!("2026-11-01T00:00:00Z");
    let a = env.agent.post("/Users", &u).await;
    assert_scim_error(
        &a,
        400,
        "mutability",
        &format!("{NHS_SCHEMA}:leaverSince is read-only"),
    );
    for (key, value) in [
        ("id", json!("chosen-id")),
        ("meta", json!({"created": "2026-01-01T00:00:00Z"})),
        (
            "emails",
            json!([{"value": "lee.leaver@nhs.net", "type": "work"}]),
        ),
    ] {
        let mut u = person("RXA", "Lee", "Leaver", None);
        u[key] = value;
        let a = env.agent.post("/Users", &u).await;
        assert_scim_error(&a, 400, "mutability", &format!("{key} is read-only"));
    }
    assert_eq!(env.agent.get("/Users").await.body["totalResults"], 0);

    // The status the client writes is honoured: leaver makes a leaver, dated now.
    let mut u = person("RXA", "Lee", "Leaver", None);
    u[NHS_SCHEMA]["status"] = json!("leaver");
    let leaver = create(&env.agent, &u).await;
    assert_eq!(leaver[NHS_SCHEMA]["status"], "leaver");
    assert_eq!(leaver["active"], false);
    assert!(leaver[NHS_SCHEMA]["leaverSince"].is_string(), "{leaver}");
    let mut u = person("RXA", "Lee", "Deleted", None);
    u[NHS_SCHEMA]["status"] = json!("deleted");
    let a = env.agent.post("/Users", &u).await;
    assert_refused(&a, 400, "status_not_writable");
    // What the agent sends on create (userName, status active, active true, managedBy)
    // is accepted: the address is allocated, the account starts as a new one.
    let mut u = person(
        "RXA",
        "Mo",
        "Agent",
        Some("0f8c3710-c3f7-5d07-8a5b-12f5516a43bc"),
    );
    u["userName"] = json!("mo.agent@nhs.net");
    u["active"] = json!(true);
    u[NHS_SCHEMA]["status"] = json!("active");
    u[NHS_SCHEMA]["managedBy"] = json!("tansync-northgate");
    let agent = create(&env.agent, &u).await;
    assert_eq!(agent[NHS_SCHEMA]["status"], "active");
    assert_eq!(agent["userName"], "mo.agent@nhs.net");

    // PUT: what was read may be sent back; a changed read-only value is refused.
    let path = format!("/Users/{}", id(&agent));
    let read = env.agent.get(&path).await.body;
    let mut back = read.clone();
    back["title"] = json!("Porter");
    let a = env.agent.call("PUT", &path, Some(&back), &[]).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["title"], "Porter");
    let read = a.body;
    for (edit, what) in [
        (json!({"userName": "someone.else@nhs.net"}), "userName"),
        (json!({"id": "another-id"}), "id"),
        (json!({"meta": {"created": "2020-01-01T00:00:00Z"}}), "meta"),
        (
            json!({"emails": [{"value": "someone.else@nhs.net"}]}),
            "emails",
        ),
    ] {
        let mut body = read.clone();
        for (k, v) in edit.as_object().expect("object") {
            body[k] = v.clone();
        }
        let a = env.agent.call("PUT", &path, Some(&body), &[]).await;
        assert_scim_error(&a, 400, "mutability", &format!("{what} is read-only"));
    }
    let mut body = read.clone();
    body[NHS_SCHEMA]["leaverSince"] = json!("2026-11-01T00:00:00Z");
    let a = env.agent.call("PUT", &path, Some(&body), &[]).await;
    assert_scim_error(&a, 400, "mutability", "leaverSince is read-only");

    // PATCH: the same attributes, by path and in a path-less value.
    for (p, value) in [
        ("id", json!("x")),
        ("meta.lastModified", json!("2020-01-01T00:00:00Z")),
        ("userName", json!("x@nhs.net")),
        (
            &*format!("{NHS_SCHEMA}:leaverSince"),
            json!("2026-11-01T00:00:00Z"),
        ),
    ] {
        let a = env
            .agent
            .call(
                "PATCH",
                &path,
                Some(&patch(
                    json!([{"op": "replace", "path": p, "value": value}]),
                )),
                &[],
            )
            .await;
        assert_eq!(a.status, 400, "{p}: {a:?}");
        assert_eq!(a.body["scimType"], "mutability", "{p}: {a:?}");
    }
    let a = env
        .agent
        .call(
            "PATCH",
            &path,
            Some(&patch(
                json!([{"op": "add", "value": {"meta": {"version": "W/\"9\""}}}]),
            )),
            &[],
        )
        .await;
    assert_scim_error(&a, 400, "mutability", "meta is read-only");
    assert_eq!(env.agent.get(&path).await.body["title"], "Porter");
}

#[tokio::test]
async fn the_request_log_keeps_authenticated_requests_only_and_stops_when_full() {
    let env = start_config(&config_with("", "request_log_max_entries = 3"));
    let log = || async {
        let a = env.admin.get("/_admin/requests").await;
        assert_eq!(a.status, 200, "{a:?}");
        let dropped: u64 = a
            .header("x-request-log-dropped")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no x-request-log-dropped: {a:?}"));
        (a.body.as_array().cloned().unwrap_or_default(), dropped)
    };

    // Requests without a valid token, however many, leave nothing behind.
    let stranger = Api::new(&env.dir.url, "not-a-token");
    for n in 0..20 {
        let a = stranger
            .post("/Users", &person("RXA", "Eve", &format!("Filler{n}"), None))
            .await;
        assert_eq!(a.status, 401, "{a:?}");
    }
    assert_eq!(log().await, (vec![], 0));

    // Authenticated requests are logged, the parts a client chooses clipped.
    let long = "x".repeat(5_000);
    assert_eq!(env.agent.get("/Users").await.status, 200);
    let a = env
        .agent
        .get(&format!(
            "/Users?filter={}",
            pct(&format!("userName eq \"{long}\""))
        ))
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(env.other.get("/Users").await.status, 200);
    let (entries, dropped) = log().await;
    assert_eq!(dropped, 0);
    let clients: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["client"].as_str())
        .collect();
    assert_eq!(
        clients,
        ["tansync-northgate", "tansync-northgate", "tansync-other"]
    );
    let query = entries[1]["query"].as_str().unwrap_or_default();
    assert!(
        query.chars().count() < 600,
        "{} characters kept",
        query.len()
    );
    assert!(query.ends_with("characters in all)"), "{query}");

    // Full at 3: more requests are answered, counted, and not logged.
    for _ in 0..2 {
        assert_eq!(env.agent.get("/Users").await.status, 200);
    }
    let (entries, dropped) = log().await;
    assert_eq!((entries.len(), dropped), (3, 2));
    assert!(
        env.dir.log().contains("the request log is full"),
        "{}",
        env.dir.log()
    );
    // Emptied, it records again.
    let a = env
        .admin
        .call("DELETE", "/_admin/requests", None, &[])
        .await;
    assert_eq!(a.status, 204, "{a:?}");
    assert_eq!(env.other.get("/Users").await.status, 200);
    let (entries, dropped) = log().await;
    assert_eq!((entries.len(), dropped), (1, 0));
    assert_eq!(entries[0]["client"], "tansync-other");
}

#[tokio::test]
async fn without_the_admin_endpoints_no_request_log_is_kept() {
    let config = config("")
        .replace("database = \":memory:\"", "database = \"directory.sqlite\"")
        .replace("[admin]\ntoken_file = \"admin.token\"\n", "");
    assert!(!config.contains("[admin]"), "{config}");
    let mut env = start_config(&config);
    let stranger = Api::new(&env.dir.url, "not-a-token");
    assert_eq!(stranger.get("/Users").await.status, 401);
    create(&env.agent, &person("RXA", "Nia", "Unlogged", None)).await;
    assert_eq!(env.admin.get("/_admin/requests").await.status, 404);
    env.dir.kill();
    let db = rusqlite::Connection::open(env.dir.dir.path().join("directory.sqlite"))
        .expect("open the directory's database");
    let (requests, accounts): (i64, i64) = db
        .query_row(
            "SELECT (SELECT COUNT(*) FROM requests), (SELECT COUNT(*) FROM accounts)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("count rows");
    assert_eq!((requests, accounts), (0, 1));
}

/// `nhs-directory export --directory-config FILE`: its stdout, failing the test unless
/// it exits 0.
fn export(config: &std::path::Path) -> String {
    let out = std::process::Command::new(common::directory_bin())
        .args(["export", "--directory-config"])
        .arg(config)
        .env_remove("NHS_DIRECTORY_LOG")
        .output()
        .expect("run nhs-directory export");
    assert!(
        out.status.success(),
        "export failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 export")
}

/// A directory for the quickstart's agent, seeded from `seed`, its database at `db`.
fn seeded_config(seed: &std::path::Path, db: &std::path::Path) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
database = {db:?}
seed = {seed:?}

[lifecycle]
# Seeded accounts are created at the seeding: the pending one stays pending.
pending_seconds = 86400

[[client]]
id = "tansync-northgate"
token_file = "agent.token"
organisations = ["RXA", "RXA80"]

# The same as in the snapshot: the registry is both together.
[[organisation]]
ods_code = "RXA"
name = "Northgate Healthcare NHS Trust"
kind = "trust"
open = true
cap = 50
"#
    )
}

/// The quickstart agent (its AD export, filters and agreements) against `target`.
fn agent_config(dir: &std::path::Path, name: &str, target: &str) -> std::path::PathBuf {
    let q = common::repo().join("examples/quickstart");
    let text = format!(
        "agent_id = \"tansync-northgate\"\n\n[source]\nkind = \"ldif\"\npath = {}\n\n\
         [filters]\nfiles = [{}]\n\n[target]\n{target}\n\n[agreements]\nfile = {}\n",
        common::q(q.join("northgate-export.ldif")),
        common::q(common::repo().join("filters/single-trust.toml")),
        common::q(q.join("agreements.toml")),
    );
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).expect("agent dir");
    common::write_config(&sub, &text)
}

/// A plan without what names the target it was read from.
fn comparable(mut plan: Value) -> Value {
    let o = plan.as_object_mut().expect("plan object");
    o.remove("generated_at");
    o["target"]
        .as_object_mut()
        .expect("plan target")
        .remove("kind");
    plan
}

#[tokio::test]
async fn a_seeded_directory_plans_like_its_snapshot_and_exports_it_back() {
    let work = tempfile::tempdir().expect("temp dir");
    // The quickstart's snapshot, with one account of each kind: active (anchored and
    // managed), pending, leaver (dated within its 30 days by the directory's clock),
    // unanchored; and versions, as a directory gives them.
    let mut snap: Value = serde_json::from_str(
        &std::fs::read_to_string(
            common::repo().join("examples/quickstart/nhs-directory-snapshot.json"),
        )
        .expect("quickstart snapshot"),
    )
    .expect("snapshot JSON");
    let two_days_ago = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("whole seconds")
        - time::Duration::days(2);
    for (n, p) in snap["persons"]
        .as_array_mut()
        .expect("persons")
        .iter_mut()
        .enumerate()
    {
        p["etag"] = json!(format!("W/\"{}\"", n % 3 + 1));
        match p["target_id"].as_str() {
            // Zoë has a change coming from AD: a pending account is not edited.
            Some("nhsd-7f3a11") => p["status"] = json!("pending"),
            Some("nhsd-7f3a15") => {
                p["leaver_since"] = json!(
                    two_days_ago
                        .format(&time::format_description::well_known::Rfc3339)
                        .expect("RFC 3339")
                )
            }
            _ => {}
        }
    }
    let kinds = |p: &Value| {
        (
            p["status"].as_str().unwrap_or_default().to_string(),
            p.get("external_id").is_some(),
            p.get("leaver_since").is_some(),
        )
    };
    let persons = snap["persons"].as_array().expect("persons");
    for want in [
        ("active", true, false),
        ("pending", true, false),
        ("leaver", true, true),
        ("active", false, false),
    ] {
        assert!(
            persons
                .iter()
                .any(|p| kinds(p) == (want.0.to_string(), want.1, want.2)),
            "the snapshot has no {want:?} account"
        );
    }
    let seed_file = work.path().join("snapshot.json");
    std::fs::write(
        &seed_file,
        serde_json::to_string_pretty(&snap).expect("JSON"),
    )
    .expect("write");

    let db1 = work.path().join("one.sqlite");
    let token = "agent-token-seeded-51aa";
    let dir1 = DirectoryProcess::start(&seeded_config(&seed_file, &db1), &[("agent.token", token)]);
    let token_file = dir1.dir.path().join("agent.token");

    // The plan against the live service is the plan against the snapshot.
    let live = agent_config(
        work.path(),
        "live",
        &format!(
            "kind = \"scim\"\nurl = {}\ntoken_file = {}",
            common::toml_str(&dir1.url),
            common::q(&token_file)
        ),
    );
    let file = agent_config(
        work.path(),
        "file",
        &format!("kind = \"snapshot\"\npath = {}", common::q(&seed_file)),
    );
    let (_, live_plan) = common::plan_json(&live);
    let (_, file_plan) = common::plan_json(&file);
    assert_eq!(live_plan["target"]["kind"], "scim");
    assert_eq!(file_plan["target"]["kind"], "snapshot");
    assert_eq!(live_plan["target"]["read"], 8, "{live_plan:#}");
    let blocked: Vec<&str> = file_plan["blocked"]
        .as_array()
        .expect("blocked")
        .iter()
        .filter_map(|b| b["reason"].as_str())
        .collect();
    assert!(blocked.contains(&"target_pending"), "{blocked:?}");
    assert_eq!(comparable(live_plan), comparable(file_plan.clone()));

    // Exported, it is the snapshot it was seeded from (in the export's order), and a
    // plan against the export is the same plan again.
    let cfg1 = dir1.dir.path().join("directory.toml");
    let exported = export(&cfg1);
    let parse = |t: &str| nhs_model::snapshot::Snapshot::parse(t).expect("a snapshot");
    let (seeded, back) = (
        parse(&serde_json::to_string(&snap).expect("JSON")),
        parse(&exported),
    );
    let mut want = seeded.persons.clone();
    want.sort_by(|a, b| a.target_id.cmp(&b.target_id));
    assert_eq!(back.persons, want);
    assert_eq!(back.organisations, seeded.organisations);
    assert_eq!(back.taken_at, None);
    let export_file = work.path().join("export.json");
    std::fs::write(&export_file, &exported).expect("write export");
    let from_export = agent_config(
        work.path(),
        "export",
        &format!("kind = \"snapshot\"\npath = {}", common::q(&export_file)),
    );
    assert_eq!(
        comparable(common::plan_json(&from_export).1),
        comparable(file_plan)
    );

    // Seeded from its own export, a directory exports the same bytes.
    let db2 = work.path().join("two.sqlite");
    let dir2 = DirectoryProcess::start(
        &seeded_config(&export_file, &db2),
        &[("agent.token", token)],
    );
    assert_eq!(export(&dir2.dir.path().join("directory.toml")), exported);
    drop(dir2);

    // A database that has held accounts is not seeded again: restarted, the directory
    // keeps what it holds (here one account more) and says so.
    let agent = Api::new(&dir1.url, token);
    create(&agent, &person("RXA", "Nell", "After", None)).await;
    drop(dir1);
    let again =
        DirectoryProcess::start(&seeded_config(&seed_file, &db1), &[("agent.token", token)]);
    let agent = Api::new(&again.url, token);
    let list = agent.get("/Users?count=100").await;
    assert_eq!(list.body["totalResults"], 9, "{list:?}");
    assert!(
        again.log().contains("the seed's accounts are not stored"),
        "{}",
        again.log()
    );
}

#[test]
fn a_snapshot_that_breaks_the_directorys_rules_stops_it_naming_the_record() {
    let work = tempfile::tempdir().expect("temp dir");
    let mut snap: Value = serde_json::from_str(
        &std::fs::read_to_string(
            common::repo().join("examples/quickstart/nhs-directory-snapshot.json"),
        )
        .expect("quickstart snapshot"),
    )
    .expect("snapshot JSON");
    snap["persons"][2]["email"] = snap["persons"][0]["email"].clone();
    let seed_file = work.path().join("snapshot.json");
    std::fs::write(&seed_file, snap.to_string()).expect("write");
    let cfg = work.path().join("directory.toml");
    std::fs::write(
        &cfg,
        seeded_config(&seed_file, &work.path().join("d.sqlite")),
    )
    .expect("write");
    std::fs::write(work.path().join("agent.token"), "tok").expect("write");
    let mut cmd = std::process::Command::new(common::directory_bin());
    cmd.args(["serve", "--directory-config"])
        .arg(&cfg)
        .env_remove("NHS_DIRECTORY_LOG");
    // A directory that took the snapshot would serve on; the bound ends it (code -1).
    let (code, stdout, stderr) = common::process::run_bounded(
        cmd,
        work.path(),
        "serve",
        std::time::Duration::from_secs(30),
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "it must not have listened: {stdout}");
    assert!(
        stderr.contains(
            "persons[2] (target_id nhsd-7f3a12): email sian.evans@nhs.net is persons[0]'s too"
        ),
        "{stderr}"
    );
}

#[tokio::test]
async fn addresses_are_transliterated_from_any_script() {
    let env = start("");
    for (given, family, want) in [
        // One Cyrillic letter (а, U+0430) among Latin ones.
        ("J\u{0430}ne", "Kelly", "jane.kelly@nhs.net"),
        ("Jane", "Kelly", "jane.kelly1@nhs.net"),
        ("Жанна", "Kelly", "zhanna.kelly@nhs.net"),
        ("小龙", "李", "xiaolong.li@nhs.net"),
        ("Νίκος", "Παπαδόπουλος", "nikos.papadopoulos@nhs.net"),
        ("Siân", "Ŵyn", "sian.wyn@nhs.net"),
    ] {
        let u = create(&env.agent, &person("RXA80", given, family, None)).await;
        assert_eq!(u["userName"], want, "{given} {family}");
        // The names themselves are kept as written.
        assert_eq!(u["name"]["givenName"], given);
    }
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
