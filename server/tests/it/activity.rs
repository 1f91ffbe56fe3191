//! Activities over HTTP: intake, idempotency, reads, bad input, audit.

use custody_db::test_utils::Engine;
use serde_json::json;

use crate::service::{Service, token};

async fn track_and_read(engine: Engine) {
    let s = Service::start(engine).await;
    let app = token("backend", &["app"]);
    let body = json!({"user_id": "user-1", "type": "attendance", "payload": {"site": "HQ"}, "occurred_at": "2026-01-05T08:00:00Z"});
    let (status, first) = s.post("/activity/track", &app, Some("a1"), &body).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["status"], "queued");
    let id = first["id"].as_str().unwrap().to_owned();
    // A replay answers the same; the same key with other parameters is refused.
    assert_eq!(s.post("/activity/track", &app, Some("a1"), &body).await, (202, first.clone()));
    let other = json!({"user_id": "user-2", "type": "attendance", "occurred_at": "2026-01-05T08:00:00Z"});
    let (status, err) = s.post("/activity/track", &app, Some("a1"), &other).await;
    assert_eq!((status, err["error"]["code"].as_str()), (422, Some("idempotency_key_reused")));

    let (status, view) = s.get(&format!("/activity/{id}"), Some(&app)).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        (view["id"].as_str(), view["status"].as_str(), view["type"].as_str()),
        (Some(id.as_str()), Some("queued"), Some("attendance"))
    );
    assert_eq!(view["issued"][0]["kind"], "token");
    assert!(view["txHash"].is_null() && view["proof"].is_null());
    assert!(!view.to_string().contains("user-1") && !view.to_string().contains("HQ"), "no user id or payload: {view}");
    let unknown = format!("0x{}", "0".repeat(64));
    assert_eq!(s.get(&format!("/activity/{unknown}"), Some(&app)).await.0, 404);
    assert_eq!(s.get("/activity/not-an-id", Some(&app)).await.0, 404);
    assert_eq!(s.get(&format!("/activity/{id}"), Some(&token("u", &["user"]))).await.0, 403);

    // The audit trail has the intake, without the user id.
    let (_, page) = s.get("/v1/admin/audit", Some(&token("a", &["auditor"]))).await;
    assert!(page["entries"].as_array().unwrap().iter().any(|e| e["action"] == "activity.track"), "{page}");
    assert!(!page.to_string().contains("user-1"));
    s.stop();
}

custody_db::on_each_engine!(track_and_read: sqlite_activities_are_tracked_and_read, postgres_activities_are_tracked_and_read);

#[tokio::test]
async fn bad_activities_are_a_clear_4xx() {
    let s = Service::start(Engine::Sqlite).await;
    let app = token("backend", &["app"]);
    let ok = json!({"user_id": "u", "type": "attendance", "occurred_at": "2026-01-05T08:00:00Z"});
    let cases = [
        (json!({"user_id": "u", "type": "attendance", "occurred_at": "yesterday"}), 400, "invalid_occurred_at"),
        (json!({"user_id": "u", "occurred_at": "2026-01-05T08:00:00Z"}), 400, "invalid_body"),
        (json!({"user_id": "u", "type": "_mint", "occurred_at": "2026-01-05T08:00:00Z"}), 400, "invalid_activity"),
        (json!({"user_id": "", "type": "attendance", "occurred_at": "2026-01-05T08:00:00Z"}), 400, "invalid_activity"),
        (json!({"user_id": "u", "type": "attendance", "occurred_at": "2999-01-05T08:00:00Z"}), 422, "out_of_range"),
        (
            json!({"user_id": "u", "type": "attendance", "occurred_at": "2026-01-05T08:00:00Z", "x": 1}),
            400,
            "invalid_body",
        ),
        (
            json!({"user_id": "u", "type": "attendance", "payload": "x".repeat(20_000), "occurred_at": "2026-01-05T08:00:00Z"}),
            413,
            "payload_too_large",
        ),
    ];
    for (i, (body, status, code)) in cases.into_iter().enumerate() {
        let (got, answer) = s.post("/activity/track", &app, Some(&format!("bad{i}")), &body).await;
        assert_eq!((got, answer["error"]["code"].as_str()), (status, Some(code)), "{body}: {answer}");
    }
    let (status, answer) = s.post("/activity/track", &app, None, &ok).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("idempotency_key_required")));
    assert_eq!(s.post("/activity/track", &token("u", &["user"]), Some("r"), &ok).await.0, 403);
    let (status, _) =
        s.post("/mintToken", &token("u", &["user"]), Some("m"), &json!({"userId": "u", "amount": 1})).await;
    assert_eq!(status, 403);
    let (status, answer) = s.post("/mintToken", &app, Some("m0"), &json!({"userId": "u", "amount": 0})).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("invalid_amount")));
    // None of the refused keys was taken.
    assert_eq!(s.post("/activity/track", &app, Some("bad0"), &ok).await.0, 202);
}

/// The seeds' own bodies: `/mintToken` with a decimal-string amount, `/activity/track` with `{type, payload}`
/// and a user id but no `occurred_at`.
#[tokio::test]
async fn the_seeds_bodies_are_accepted_as_given() {
    let s = Service::start(Engine::Sqlite).await;
    let app = token("backend", &["app"]);
    let mint = json!({"userId": "u123", "amount": "100", "reason": "attendance:2025-08-25"});
    let (status, answer) = s.post("/mintToken", &app, Some("seed-mint"), &mint).await;
    assert_eq!(status, 202, "{answer}");
    let (_, view) = s.get(&format!("/activity/{}", answer["id"].as_str().unwrap()), Some(&app)).await;
    assert_eq!(view["issued"][0]["amount"], format!("100{}", "0".repeat(18)), "100 whole PTKN: {view}");
    let (status, answer) = s.post("/mintToken", &app, Some("int-mint"), &json!({"userId": "u123", "amount": 7})).await;
    assert_eq!(status, 202, "a JSON integer too: {answer}");

    let track = json!({"user_id": "u123", "type": "attendance", "payload": {"site": "HQ"}});
    let (status, answer) = s.post("/activity/track", &app, Some("seed-track"), &track).await;
    assert_eq!((status, answer["status"].as_str()), (202, Some("queued")), "{answer}");
    let (_, page) = s.get("/v1/wallets/u123/activities?type=attendance", Some(&app)).await;
    let occurred = page["activities"][0]["occurredAt"].as_str().unwrap().to_owned();
    assert!(occurred.starts_with("20") && occurred.ends_with('Z'), "defaults to the time of receipt: {page}");

    // Fractions, signs, exponents, junk and amounts over the maximum: a 400 naming the field, nothing stored.
    for (i, amount) in [
        json!("1.5"),
        json!(1.5),
        json!("-1"),
        json!(-1),
        json!("+1"),
        json!(" 1"),
        json!("1e2"),
        json!("abc"),
        json!(null),
    ]
    .into_iter()
    .enumerate()
    {
        let body = json!({"userId": "u123", "amount": amount});
        let (status, answer) = s.post("/mintToken", &app, Some(&format!("bad-amount-{i}")), &body).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("invalid_amount")), "{amount}");
        assert!(answer["error"]["message"].as_str().unwrap().starts_with("amount must be"), "{answer}");
    }
    // Over `[issuance] max_amount` (10^9 by default): well-formed, out of range.
    for amount in [json!("1000000001"), json!(1_000_000_001u64), json!("99999999999999999999999")] {
        let body = json!({"userId": "u123", "amount": amount});
        let (status, answer) = s.post("/mintToken", &app, Some("too-much"), &body).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (422, Some("out_of_range")), "{amount}: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains("amount must be at most 1000000000"));
    }
    let (_, page) = s.get("/v1/wallets/u123/activities", Some(&app)).await;
    assert_eq!(page["activities"].as_array().unwrap().len(), 3, "only the three good requests: {page}");
    s.stop();
}

/// On the devnet (chain, contracts, HSM issuer and anchor keys), the worker inside `custody serve`
/// confirms a tracked activity, `/mintToken` answers with the transaction, and the caches follow the chain.
#[tokio::test]
async fn devnet_tracks_confirms_mints_and_caches() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let record_path = dir.path().join("devnet.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_custody"))
        .args(["devnet", "--dir"])
        .arg(dir.path())
        .args(["--block-time", "0", "--listen", "127.0.0.1:0"])
        .env_remove("SOFTHSM2_CONF")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let record: serde_json::Value = loop {
        assert!(child.try_wait().unwrap().is_none(), "devnet exited early");
        if let Some(json) = std::fs::read_to_string(&record_path).ok().and_then(|t| serde_json::from_str(&t).ok()) {
            break json;
        }
        assert!(Instant::now() < deadline, "devnet not ready within 120 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let api = record["api_url"].as_str().unwrap().to_owned();
    let app = record["tokens"]["app"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let post = |path: &str, key: &str, body: serde_json::Value| {
        let req = http.post(format!("{api}{path}")).bearer_auth(&app).header("Idempotency-Key", key).json(&body);
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<serde_json::Value>().await.unwrap())
        }
    };
    let get = |path: String| {
        let req = http.get(format!("{api}{path}")).bearer_auth(&app);
        async move { req.send().await.unwrap().json::<serde_json::Value>().await.unwrap() }
    };
    let body = json!({"user_id": "devnet-user", "type": "training_completed", "occurred_at": "2026-01-05T08:00:00Z"});
    let (status, tracked) = post("/activity/track", "t1", body).await;
    assert_eq!(status, 202, "{tracked}");
    let id = tracked["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let view = loop {
        let view = get(format!("/activity/{id}")).await;
        if view["status"] == "confirmed" {
            break view;
        }
        assert_ne!(view["status"], "failed", "{view}");
        assert!(Instant::now() < deadline, "not confirmed within 60 s: {view}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(view["txHash"].is_string() && view["blockNumber"].is_u64() && view["proof"].is_array(), "{view}");

    let (status, minted) =
        post("/mintToken", "m1", json!({"userId": "devnet-user", "amount": 5, "reason": "gift"})).await;
    assert_eq!(status, 200, "{minted}");
    assert!(minted["txHash"].as_str().is_some_and(|h| h.len() == 66), "{minted}");
    // Default policy: 50 PTKN training bonus, plus 5 minted; the cache follows the chain's events.
    let expected = (55u128 * 10u128.pow(18)).to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tokens = get("/v1/wallets/devnet-user/tokens".to_owned()).await;
        if tokens["balance"] == expected.as_str() {
            break;
        }
        assert!(Instant::now() < deadline, "cache not updated within 60 s: {tokens}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let badges = get("/v1/wallets/devnet-user/badges".to_owned()).await;
    assert_eq!(badges["badges"][0]["badgeId"], "1", "{badges}");
    // The mirror's metrics: the outbox depth, settled batches and how long they took.
    let metrics = http.get(format!("{api}/metrics")).send().await.unwrap().text().await.unwrap();
    for series in [
        "custody_issuance_outbox_depth 0",
        "custody_issuance_batches_total{outcome=\"confirmed\"}",
        "custody_issuance_batch_settle_seconds_count{outcome=\"confirmed\"}",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
    // The devnet policy's monthly global gas budget, as the settler reads its counter.
    let budget = metrics.lines().find(|l| l.starts_with("custody_paymaster_budget_used_ratio{"));
    assert!(
        budget.is_some_and(|l| l.contains("policy=\"devnet\"") && l.contains("measure=\"gas\"")),
        "the budget gauge in\n{metrics}"
    );
    // Every metric the alert rules and dashboards (ops/) name is exported.
    crate::ops::check_exported(&metrics);
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "devnet did not stop within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every call that issues value or touches a key is in the audit trail with who, what, on whom, the
/// amount and the outcome after the effect; the trail filters by actor, action, target and time; it is
/// append-only on PostgreSQL too.
#[tokio::test]
async fn the_audit_trail_says_who_did_what_to_whom_and_how_it_ended() {
    let s = Service::start(Engine::Postgres).await;
    let app = token("backend", &["app"]);
    let auditor = token("a", &["auditor"]);
    let (_, wallet) = s.post("/v1/wallets", &app, Some("w"), &json!({"user_id": "audited"})).await;
    let did = wallet["did"].as_str().unwrap().to_owned();
    let (status, minted) = s.post("/mintToken", &app, Some("m"), &json!({"userId": "audited", "amount": "7"})).await;
    assert_eq!(status, 202, "{minted}");
    let (status, _) = s.post("/activity/track", &app, Some("t"), &json!({"user_id": "audited", "type": "_bad"})).await;
    assert_eq!(status, 400);

    let (_, page) = s.get(&format!("/v1/admin/audit?action=token.mint&target={did}"), Some(&auditor)).await;
    let entries = page["entries"].as_array().unwrap();
    let outcomes: Vec<_> = entries.iter().map(|e| e["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["requested", "queued"], "{page}");
    assert_eq!(entries[1]["details"]["amount"], "7");
    assert_eq!(entries[1]["details"]["activity"], minted["id"]);
    assert_eq!(entries[1]["actor"], "app:backend");
    let (_, refused) = s.get("/v1/admin/audit?action=activity.track", Some(&auditor)).await;
    let refused = &refused["entries"][0];
    assert_eq!((&refused["outcome"], &refused["details"]["code"]), (&json!("refused"), &json!("invalid_activity")));
    let (_, page) = s.get("/v1/admin/audit?actor=app:backend&since=0", Some(&auditor)).await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 5, "wallet ×2, mint ×2, refused track: {page}");
    let (_, none) = s.get("/v1/admin/audit?until=1", Some(&auditor)).await;
    assert_eq!(none["entries"], json!([]));
    assert!(!s.get("/v1/admin/audit", Some(&auditor)).await.1.to_string().contains("\"audited\""), "no user id");

    // The operator's command line is recorded as cli:<login>.
    let out = s.cli(&["keys", "create", "--name", "audited-key"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, page) = s.get("/v1/admin/audit?action=key.create&target=audited-key", Some(&auditor)).await;
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{page}");
    assert!(entries[1]["actor"].as_str().unwrap().starts_with("cli:"), "{page}");
    assert_eq!(entries[1]["outcome"], "created");

    let pool = s.db.pool().await;
    let err = sqlx::query("DELETE FROM audit_log").execute(&pool).await.expect_err("append-only");
    assert!(err.to_string().contains("append-only"), "{err}");
    let out = s.cli(&["audit", "verify"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    s.stop();
}
