//! Dual control: a KEK rotation requested by one officer runs only once another approves it; self-approval,
//! a second approval, a late approval and the wrong role are refused; two officers approving at once give
//! one approval; an approved rotation the service did not finish runs at the next start; every key still
//! signs afterwards.

use std::time::Duration;

use custody_db::test_utils::Engine;
use serde_json::{Value, json};

use crate::service::{Service, token};

/// Polls the approval until it left `approved`; its last state.
pub(crate) async fn finished(s: &Service, id: &str, officer: &str) -> Value {
    for _ in 0..200 {
        let (status, body) = s.get(&format!("/v1/admin/approvals/{id}"), Some(officer)).await;
        assert_eq!(status, 200, "{body}");
        if body["state"] != "approved" {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("approval {id} did not finish within 10 s");
}

/// The user's owner key signs `digest` for the address `custody keys list` shows.
fn user_key_signs(s: &Service, user: &str) {
    let out = s.cli(&["keys", "list", "--json"]);
    let keys: Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = keys.as_array().unwrap().iter().find(|k| k["name"] == user && k["class"] == "user").unwrap();
    let digest = alloy_primitives::B256::repeat_byte(0x42);
    let out = s.cli(&["keys", "sign", "--user", user, "--digest", &digest.to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let signature: alloy_primitives::Signature = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let signer = signature.recover_address_from_prehash(&digest).unwrap();
    assert_eq!(Some(signer), key["address"].as_str().and_then(|a| a.parse().ok()), "{user}");
}

async fn kek_rotation_needs_two_officers(engine: Engine) {
    let mut s = Service::start(engine).await;
    let app = token("backend", &["app"]);
    let (one, two, three) =
        (token("officer-1", &["officer"]), token("officer-2", &["officer"]), token("officer-3", &["officer"]));
    for user in ["dc-1", "dc-2"] {
        assert_eq!(s.post("/v1/wallets", &app, Some(user), &json!({"user_id": user})).await.0, 201);
    }
    let kek_version = |s: &Service| {
        let out = s.cli(&["keys", "list", "--json"]);
        let keys: Value = serde_json::from_slice(&out.stdout).unwrap();
        let active = keys.as_array().unwrap().iter().find(|k| k["class"] == "kek" && k["state"] == "active").cloned();
        active.unwrap()["version"].as_i64().unwrap()
    };
    assert_eq!(kek_version(&s), 1);

    // Requested: nothing happens yet; the same key replays the request, the app may not ask.
    let (status, request) = s.post("/v1/admin/kek/rotate", &one, Some("r-1"), &json!({})).await;
    assert_eq!(status, 202, "{request}");
    assert_eq!((request["state"].as_str(), request["requestedBy"].as_str()), (Some("pending"), Some("officer-1")));
    assert_eq!(s.post("/v1/admin/kek/rotate", &one, Some("r-1"), &json!({})).await, (202, request.clone()));
    assert_eq!(s.post("/v1/admin/kek/rotate", &app, Some("r-2"), &json!({})).await.0, 403);
    let id = request["id"].as_str().unwrap().to_owned();
    let approve = format!("/v1/admin/approvals/{id}/approve");
    assert_eq!(kek_version(&s), 1, "not before the second officer");

    // The requester cannot approve; nor can the app or an auditor; an unknown request is 404.
    let (status, body) = s.post(&approve, &one, Some("a-1"), &json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("self_approval")), "{body}");
    assert_eq!(s.post(&approve, &app, Some("a-2"), &json!({})).await.0, 403);
    assert_eq!(s.post(&approve, &token("aud", &["auditor"]), Some("a-3"), &json!({})).await.0, 403);
    let unknown = format!("/v1/admin/approvals/{}/approve", "0".repeat(32));
    assert_eq!(s.post(&unknown, &two, Some("a-4"), &json!({})).await.0, 404);
    assert_eq!(s.post(&approve, &two, None, &json!({})).await.0, 400, "an Idempotency-Key is needed");

    // A second officer approves: it runs once; a second approval is refused.
    let (status, approved) = s.post(&approve, &two, Some("a-5"), &json!({})).await;
    assert_eq!(status, 202, "{approved}");
    assert_eq!(approved["approvedBy"], "officer-2");
    let (status, body) = s.post(&approve, &three, Some("a-6"), &json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("already_decided")), "{body}");
    let done = finished(&s, &id, &two).await;
    assert_eq!(done["state"], "executed", "{done}");
    assert_eq!(done["result"]["kekVersion"], 2, "{done}");
    assert!(done["result"]["rewrapped"].as_u64() >= Some(2), "both users' keys at least: {done}");
    assert_eq!(kek_version(&s), 2);
    user_key_signs(&s, "dc-1");

    // Two officers approving one request at once: one approval, one refusal.
    let (_, request) = s.post("/v1/admin/kek/rotate", &one, Some("r-3"), &json!({})).await;
    let approve = format!("/v1/admin/approvals/{}/approve", request["id"].as_str().unwrap());
    let empty = json!({});
    let (a, b) =
        tokio::join!(s.post(&approve, &two, Some("c-1"), &empty), s.post(&approve, &three, Some("c-2"), &empty));
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [202, 409], "{a:?} {b:?}");
    assert_eq!(finished(&s, request["id"].as_str().unwrap(), &one).await["state"], "executed");

    // A request left unapproved past its time expires.
    let (_, late) = s.post("/v1/admin/kek/rotate", &one, Some("r-4"), &json!({})).await;
    let late_id = late["id"].as_str().unwrap();
    let db = custody_db::connect_pool(&s.db.url).await.unwrap();
    sqlx::query("UPDATE approvals SET expires_at = 0 WHERE id = $1").bind(late_id).execute(&db).await.unwrap();
    let (status, body) = s.post(&format!("/v1/admin/approvals/{late_id}/approve"), &two, Some("e-1"), &json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (410, Some("approval_expired")), "{body}");
    let (_, expired) = s.get("/v1/admin/approvals?state=expired", Some(&token("aud", &["auditor"]))).await;
    assert_eq!(expired["approvals"].as_array().unwrap().len(), 1, "{expired}");
    assert_eq!(expired["approvals"][0]["id"], late_id);
    let (_, executed) = s.get("/v1/admin/approvals?state=executed&limit=1", Some(&one)).await;
    assert_eq!(executed["approvals"].as_array().unwrap().len(), 1, "{executed}");
    assert_eq!(s.get("/v1/admin/approvals?limit=0", Some(&one)).await.0, 400);
    assert_eq!(s.get("/v1/admin/approvals", Some(&app)).await.0, 403);

    // Approved, then the service stopped before the rotation ran: it runs at the next start.
    let (_, crashed) = s.post("/v1/admin/kek/rotate", &one, Some("r-5"), &json!({})).await;
    let crashed_id = crashed["id"].as_str().unwrap();
    sqlx::query("UPDATE approvals SET state = 'approved', approved_by = 'officer-9', approved_at = 1 WHERE id = $1")
        .bind(crashed_id)
        .execute(&db)
        .await
        .unwrap();
    s.restart(&[]).await;
    assert_eq!(finished(&s, crashed_id, &one).await["result"]["kekVersion"], 4);
    user_key_signs(&s, "dc-2");

    // Every step is in the audit trail.
    let (_, page) = s.get("/v1/admin/audit?limit=1000", Some(&token("aud", &["auditor"]))).await;
    let count = |action: &str, outcome: &str| {
        let entries = page["entries"].as_array().unwrap();
        entries.iter().filter(|e| e["action"] == action && e["outcome"] == outcome).count()
    };
    assert_eq!(count("approval.request", "requested"), 4, "one per request, none for the replay");
    assert_eq!(count("approval.approve", "approved"), 2);
    assert!(count("approval.approve", "refused") >= 3, "self, second and late approvals");
    assert_eq!(count("kek.rotate", "executed"), 3);
    assert!(String::from_utf8_lossy(&s.cli(&["audit", "verify"]).stdout).contains("intact"));
    s.stop();
}

custody_db::on_each_engine!(
    kek_rotation_needs_two_officers: sqlite_a_kek_rotation_needs_two_officers,
    postgres_a_kek_rotation_needs_two_officers
);
