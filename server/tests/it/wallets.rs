//! Wallets over HTTP: creation, idempotency, lookups, DID resolution, audit.

use custody_db::test_utils::Engine;
use serde_json::{Value, json};

use crate::service::{Service, token};

async fn create_and_read(engine: Engine) {
    let s = Service::start(engine).await;
    let app = token("backend", &["app"]);
    let (status, first) = s.post("/v1/wallets", &app, Some("k1"), &json!({"user_id": "user-1"})).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["user_id"], "user-1");
    assert_eq!(first["custody"], "custodial");
    assert_eq!(first["deployed"], false);
    let did = first["did"].as_str().unwrap().to_owned();
    assert!(did.starts_with("did:peruri:") && !did.contains("user-1"), "{did}");

    // The same key replays the first answer; a new key for the same user answers 200.
    assert_eq!(s.post("/v1/wallets", &app, Some("k1"), &json!({"user_id": "user-1"})).await, (201, first.clone()));
    assert_eq!(s.post("/v1/wallets", &app, Some("k2"), &json!({"user_id": "user-1"})).await, (200, first.clone()));
    // The same key with other parameters is refused and creates nothing.
    let (status, body) = s.post("/v1/wallets", &app, Some("k1"), &json!({"user_id": "user-2"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("idempotency_key_reused")));
    assert_eq!(s.get("/v1/wallets/user-2", Some(&app)).await.0, 404);

    assert_eq!(s.get("/v1/wallets/user-1", Some(&app)).await, (200, first.clone()));
    let (status, body) = s.get("/wallet/status", Some(&token("user-1", &["user"]))).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"walletAddress": first["address"], "type": "erc4337", "ready": true}));
    let (_, body) = s.get("/wallet/status", Some(&token("someone-else", &["user"]))).await;
    assert_eq!(body["ready"], false, "a user sees only their own wallet");

    // DID resolution, as a Universal Resolver driver.
    let resp = s
        .http
        .get(format!("{}/1.0/identifiers/{did}", s.url))
        .header("Accept", "application/did+json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/did+json");
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(doc["id"], did.as_str());
    let method = &doc["verificationMethod"][0];
    assert_eq!(method["type"], "EcdsaSecp256k1RecoveryMethod2020");
    assert_eq!(method["blockchainAccountId"], format!("eip155:1337:{}", first["address"].as_str().unwrap()));
    let (status, result) = s.get(&format!("/1.0/identifiers/{did}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(result["didDocument"], doc);
    let unknown = format!("did:peruri:{}", "a".repeat(32));
    assert_eq!(s.get(&format!("/1.0/identifiers/{unknown}"), None).await.0, 404);
    let (status, body) = s.get("/1.0/identifiers/did:peruri:NOT-VALID", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("malformed_did")));

    // An officer deactivates the DID: it then resolves as 410 with deactivated metadata.
    let path = "/v1/wallets/user-1/deactivate";
    assert_eq!(s.post(path, &app, None, &json!({})).await.0, 403, "apps cannot deactivate");
    let officer = token("officer-1", &["officer"]);
    let (status, body) = s.post(path, &officer, Some("d1"), &json!({})).await;
    assert_eq!((status, &body["deactivated"], &body["did"]), (200, &json!(true), &json!(did)), "{body}");
    assert_eq!(s.post(path, &officer, Some("d2"), &json!({})).await.0, 200, "deactivating twice is harmless");
    assert_eq!(s.post("/v1/wallets/nobody/deactivate", &officer, Some("d3"), &json!({})).await.0, 404);
    let (status, result) = s.get(&format!("/1.0/identifiers/{did}"), None).await;
    assert_eq!((status, &result["didDocumentMetadata"]["deactivated"]), (410, &json!(true)), "{result}");

    // Every creation is in the audit trail, and the trail verifies.
    let out = s.cli(&["audit", "verify"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, page) = s.get("/v1/admin/audit", Some(&token("a", &["auditor"]))).await;
    assert_eq!(status, 200);
    let entries = page["entries"].as_array().unwrap();
    assert!(entries.iter().any(|e| e["action"] == "wallet.create" && e["outcome"] == "created"), "{page}");
    assert!(entries.iter().any(|e| e["action"] == "did.deactivate" && e["outcome"] == "deactivated"), "{page}");
    assert!(!page.to_string().contains("user-1"), "no user id in the audit trail");
    s.stop();
}

custody_db::on_each_engine!(create_and_read: sqlite_create_and_read, postgres_create_and_read);

async fn concurrent_creation(engine: Engine) {
    let s = Service::start(engine).await;
    let app = token("backend", &["app"]);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (http, url, app) = (s.http.clone(), s.url.clone(), app.clone());
        tasks.push(tokio::spawn(async move {
            let resp = http
                .post(format!("{url}/v1/wallets"))
                .bearer_auth(app)
                .header("Idempotency-Key", format!("c{i}"))
                .json(&json!({"user_id": "same-user"}))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }));
    }
    let mut created = 0;
    let mut addresses = std::collections::HashSet::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert!(status == 201 || status == 200, "{status} {body}");
        created += usize::from(status == 201);
        addresses.insert(body["address"].as_str().unwrap().to_owned());
    }
    assert_eq!((created, addresses.len()), (1, 1), "one wallet, created once");
    let out = s.cli(&["keys", "list", "--json"]);
    let keys: Value = serde_json::from_slice(&out.stdout).unwrap();
    let users = keys.as_array().unwrap().iter().filter(|k| k["class"] == "user").count();
    assert_eq!(users, 1, "one owner key");
}

custody_db::on_each_engine!(concurrent_creation: sqlite_concurrent_creation_makes_one_wallet, postgres_concurrent_creation_makes_one_wallet);

#[tokio::test]
async fn bad_input_is_a_clear_4xx_and_changes_nothing() {
    let s = Service::start(Engine::Sqlite).await;
    let app = token("backend", &["app"]);
    let url = format!("{}/v1/wallets", s.url);
    let send = |body: String, content_type: &'static str, key: Option<&'static str>, tok: String| {
        let mut req = s.http.post(&url).bearer_auth(tok).header("Content-Type", content_type).body(body);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let json_ct = "application/json";
    for (name, body, ct, key, tok, status, code) in [
        ("malformed JSON", "{\"user_id\":".to_owned(), json_ct, Some("a"), app.clone(), 400, "malformed_json"),
        (
            "unknown field",
            json!({"user_id": "u", "x": 1}).to_string(),
            json_ct,
            Some("b"),
            app.clone(),
            400,
            "invalid_body",
        ),
        ("missing field", json!({}).to_string(), json_ct, Some("c"), app.clone(), 400, "invalid_body"),
        ("empty user id", json!({"user_id": ""}).to_string(), json_ct, Some("d"), app.clone(), 400, "invalid_user_id"),
        (
            "long user id",
            json!({"user_id": "u".repeat(300)}).to_string(),
            json_ct,
            Some("e"),
            app.clone(),
            400,
            "invalid_user_id",
        ),
        (
            "control char",
            json!({"user_id": "a\u{0007}b"}).to_string(),
            json_ct,
            Some("f"),
            app.clone(),
            400,
            "invalid_user_id",
        ),
        (
            "oversized",
            json!({"user_id": "x".repeat(40_000)}).to_string(),
            json_ct,
            Some("g"),
            app.clone(),
            413,
            "payload_too_large",
        ),
        (
            "not JSON",
            "user_id=u".to_owned(),
            "application/x-www-form-urlencoded",
            Some("h"),
            app.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            "no idempotency key",
            json!({"user_id": "u"}).to_string(),
            json_ct,
            None,
            app.clone(),
            400,
            "idempotency_key_required",
        ),
        (
            "wrong role",
            json!({"user_id": "u"}).to_string(),
            json_ct,
            Some("i"),
            token("o", &["officer"]),
            403,
            "forbidden",
        ),
        ("user role", json!({"user_id": "u"}).to_string(), json_ct, Some("j"), token("u", &["user"]), 403, "forbidden"),
    ] {
        let (got, body) = send(body, ct, key, tok).await;
        assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{name}: {body}");
    }
    let out = s.cli(&["keys", "list", "--json"]);
    let keys: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(keys.as_array().unwrap().iter().all(|k| k["class"] != "user"), "no owner key was created");
    assert_eq!(s.get("/v1/wallets/u", Some(&app)).await.0, 404);
}

#[tokio::test]
async fn audit_tampering_is_detected_and_an_unwritable_trail_refuses_the_operation() {
    let s = Service::start(Engine::Sqlite).await;
    let app = token("backend", &["app"]);
    for (i, user) in ["a", "b", "c"].iter().enumerate() {
        let key = format!("t{i}");
        assert_eq!(s.post("/v1/wallets", &app, Some(&key), &json!({"user_id": user})).await.0, 201);
    }
    let out = s.cli(&["audit", "verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("6 entries"), "{stdout}");

    let pool = s.db.pool().await;
    // The trail is append-only: an edit or a cut tail is refused ...
    for edit in ["UPDATE audit_log SET outcome = 'existing' WHERE seq = 4", "DELETE FROM audit_log WHERE seq = 6"] {
        let err = sqlx::query(edit).execute(&pool).await.expect_err("refused");
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    // ... and one with the rights to drop the triggers is still caught by the chain.
    sqlx::query("DROP TRIGGER audit_log_no_update").execute(&pool).await.unwrap();
    sqlx::query("UPDATE audit_log SET outcome = 'existing' WHERE seq = 4").execute(&pool).await.unwrap();
    let out = s.cli(&["audit", "verify"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("broken at entry 4"), "{stderr}");

    // An audit trail that refuses writes refuses the operation, and nothing is created.
    sqlx::query("CREATE TRIGGER audit_blocked BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'blocked'); END")
        .execute(&pool)
        .await
        .unwrap();
    let (status, body) = s.post("/v1/wallets", &app, Some("t9"), &json!({"user_id": "d"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("unavailable")), "{body}");
    assert!(!body.to_string().contains("blocked"), "a 5xx carries no internal text");
    assert_eq!(s.get("/v1/wallets/d", Some(&app)).await.0, 404);
}
