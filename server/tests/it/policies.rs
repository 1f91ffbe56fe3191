//! Paymaster policies over HTTP: officers and auditors read them; an officer's change that only tightens
//! a policy applies at once, one that raises a limit (or creates a policy) waits for a second officer and
//! fails if the policy changed meanwhile; bad input changes nothing; every step is audited; an officer's
//! version survives a restart with the same configuration.

use custody_db::test_utils::Engine;
use serde_json::{Value, json};

use crate::approvals::finished;
use crate::service::{Service, token};

const PAYMASTER: &str = r#"
[paymaster]
key = "paymaster"
default_policy = "app"
[[paymaster.policies]]
id = "app"
limits = [{ scope = "sender", max_ops = 10, reset = "daily" }]
"#;

fn sender_ops(max: u64) -> Value {
    json!({"limits": [{"scope": "sender", "max_ops": max, "reset": "daily"}]})
}

async fn officers_change_policies(engine: Engine) {
    let mut s = Service::prepare(engine, PAYMASTER).await;
    let out = s.cli(&["keys", "create", "--class", "infra", "--name", "paymaster"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    s.launch(&[]).await;
    let (one, two) = (token("officer-1", &["officer"]), token("officer-2", &["officer"]));
    let (auditor, app) = (token("aud", &["auditor"]), token("backend", &["app"]));
    let path = "/v1/admin/paymaster/policies/app";
    let version = |body: &Value| body["version"].as_u64().unwrap();

    // Read: the configuration's version, for officers and auditors only.
    let (status, page) = s.get("/v1/admin/paymaster/policies", Some(&auditor)).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["policies"][0]["updatedBy"], "config", "{page}");
    assert_eq!(page["policies"][0]["policy"]["limits"][0]["max_ops"], 10, "{page}");
    assert_eq!(s.get(path, Some(&one)).await.1["version"], 1);
    assert_eq!(s.get("/v1/admin/paymaster/policies/nope", Some(&one)).await.0, 404);
    assert_eq!(s.get(path, Some(&app)).await.0, 403);
    assert_eq!(s.get(path, None).await.0, 401);

    // A lower limit applies at once; the same key replays it.
    let (status, lowered) = s.put(path, &one, Some("p-1"), &sender_ops(5)).await;
    assert_eq!(status, 200, "{lowered}");
    assert_eq!((version(&lowered), lowered["updatedBy"].as_str()), (2, Some("officer:officer-1")));
    assert_eq!(s.put(path, &one, Some("p-1"), &sender_ops(5)).await, (200, lowered.clone()));
    assert_eq!(s.get(path, Some(&auditor)).await.1["policy"]["limits"][0]["max_ops"], 5);

    // Bad input and the wrong caller change nothing.
    let unknown_field = json!({"limits": [], "budget": 1});
    assert_eq!(s.put(path, &one, Some("b-1"), &unknown_field).await.0, 400);
    assert_eq!(s.put(path, &one, Some("b-2"), &json!({"id": "other"})).await.0, 422);
    let (status, body) = s.put(path, &one, Some("b-3"), &json!({"limits": [{"scope": "global"}]})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_policy")), "{body}");
    assert_eq!(s.put(path, &one, None, &sender_ops(1)).await.0, 400, "an Idempotency-Key is needed");
    assert_eq!(s.put(path, &app, Some("b-4"), &sender_ops(1)).await.0, 403);
    assert_eq!(s.put(path, &auditor, Some("b-5"), &sender_ops(1)).await.0, 403);
    assert_eq!(version(&s.get(path, Some(&one)).await.1), 2, "nothing changed");

    // A raise is a request: nothing changes until a second officer approves.
    let (status, request) = s.put(path, &one, Some("r-1"), &sender_ops(20)).await;
    assert_eq!(status, 202, "{request}");
    assert_eq!((request["action"].as_str(), request["target"].as_str()), (Some("policy.change"), Some("policy:app")));
    assert_eq!(request["payload"]["raises"], json!(["sender operations (daily reset): 5 → 20"]), "{request}");
    assert_eq!(version(&s.get(path, Some(&one)).await.1), 2, "not before the second officer");
    let approve = format!("/v1/admin/approvals/{}/approve", request["id"].as_str().unwrap());
    assert_eq!(s.post(&approve, &one, Some("a-1"), &json!({})).await.0, 403, "self-approval");
    assert_eq!(s.post(&approve, &two, Some("a-2"), &json!({})).await.0, 202);
    let done = finished(&s, request["id"].as_str().unwrap(), &two).await;
    assert_eq!(done["state"], "executed", "{done}");
    let (_, raised) = s.get(path, Some(&one)).await;
    assert_eq!((version(&raised), raised["updatedBy"].as_str()), (3, Some("approval:officer-1+officer-2")));
    assert_eq!(raised["policy"]["limits"][0]["max_ops"], 20);

    // A raise approved after another change landed fails and changes nothing.
    let (_, request) = s.put(path, &one, Some("r-2"), &json!({"limits": []})).await;
    assert_eq!(request["payload"]["raises"], json!(["sender operations (daily reset): 20 → unlimited"]));
    assert_eq!(s.put(path, &two, Some("p-2"), &sender_ops(15)).await.0, 200);
    let approve = format!("/v1/admin/approvals/{}/approve", request["id"].as_str().unwrap());
    assert_eq!(s.post(&approve, &two, Some("a-3"), &json!({})).await.0, 202);
    let failed = finished(&s, request["id"].as_str().unwrap(), &two).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(failed["result"]["error"].as_str().unwrap().contains("changed since the request"), "{failed}");
    assert_eq!(s.get(path, Some(&one)).await.1["policy"]["limits"][0]["max_ops"], 15);

    // A new policy needs a second officer too; then its sponsorships can be listed.
    let (status, created) = s.put("/v1/admin/paymaster/policies/promo", &one, Some("n-1"), &sender_ops(1)).await;
    assert_eq!((status, created["payload"]["raises"][0].as_str()), (202, Some("a new policy promo")), "{created}");
    let approve = format!("/v1/admin/approvals/{}/approve", created["id"].as_str().unwrap());
    assert_eq!(s.post(&approve, &two, Some("a-4"), &json!({})).await.0, 202);
    assert_eq!(finished(&s, created["id"].as_str().unwrap(), &one).await["state"], "executed");
    let (status, listed) = s.get("/v1/admin/paymaster/policies/promo/sponsorships", Some(&one)).await;
    assert_eq!((status, listed["sponsorships"].as_array().map(Vec::len)), (200, Some(0)), "{listed}");

    // Every change is audited; the officer's version survives a restart with the same configuration.
    let (_, trail) = s.get("/v1/admin/audit?limit=1000", Some(&auditor)).await;
    let count = |action: &str, outcome: &str| {
        let entries = trail["entries"].as_array().unwrap();
        entries.iter().filter(|e| e["action"] == action && e["outcome"] == outcome).count()
    };
    assert_eq!(count("policy.change", "changed"), 2, "the two tightenings");
    assert_eq!(count("policy.change", "executed"), 2, "the approved raise and the new policy");
    assert_eq!(count("policy.change", "failed"), 1, "the stale raise");
    assert_eq!(count("approval.request", "requested"), 3);
    s.restart(&[]).await;
    let (_, page) = s.get("/v1/admin/paymaster/policies", Some(&auditor)).await;
    let ids: Vec<_> = page["policies"].as_array().unwrap().iter().map(|p| p["policy"]["id"].clone()).collect();
    assert_eq!(ids, [json!("app"), json!("promo")], "{page}");
    assert_eq!(page["policies"][0]["policy"]["limits"][0]["max_ops"], 15, "{page}");
    s.stop();
}

custody_db::on_each_engine!(
    officers_change_policies: sqlite_officers_change_paymaster_policies_under_dual_control,
    postgres_officers_change_paymaster_policies_under_dual_control
);
