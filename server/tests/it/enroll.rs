//! `custody enroll --csv`: bulk enrolment, idempotent per user id and resumable.

use custody_db::test_utils::Engine;
use serde_json::json;

use crate::service::{Service, token};

#[tokio::test]
async fn enrolment_is_idempotent_resumable_and_reports_bad_lines() {
    let s = Service::start(Engine::Sqlite).await;
    let app = token("backend", &["app"]);
    // One user already has a wallet from the API.
    let (status, existing) = s.post("/v1/wallets", &app, Some("k"), &json!({"user_id": "u-2"})).await;
    assert_eq!(status, 201);

    let csv = s.hsm.dir().join("users.csv");
    let long = "x".repeat(300);
    std::fs::write(&csv, format!("name,user_id\nA,u-1\nB,u-2\nC,{long}\nD,u-3\nD again,u-3\n")).unwrap();
    let out = s.cli(&["enroll", "--csv", csv.to_str().unwrap(), "--concurrency", "3"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a bad line fails the run: {stdout}");
    assert!(stdout.contains("2 created, 2 already enrolled, 1 failed"), "{stdout}");
    assert!(stdout.contains("row 3:"), "the bad row is named: {stdout}");
    assert!(!stdout.contains(&long) && !stderr.contains(&long), "user ids are not echoed");

    // The API sees the enrolled wallets; the existing one is unchanged.
    assert_eq!(s.get("/v1/wallets/u-2", Some(&app)).await, (200, existing));
    let (status, u1) = s.get("/v1/wallets/u-1", Some(&app)).await;
    assert_eq!((status, u1["custody"].as_str()), (200, Some("custodial")));

    // Fixed file, run again: resumes, nothing created twice.
    std::fs::write(&csv, "user_id\nu-1\nu-2\nu-3\nu-4\n").unwrap();
    let out = s.cli(&["enroll", "--csv", csv.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 created, 3 already enrolled, 0 failed"), "{stdout}");
    assert_eq!(s.get("/v1/wallets/u-1", Some(&app)).await, (200, u1));

    // Every enrolment is in the audit trail (as the operator, cli:<login>), which still verifies.
    let out = s.cli(&["audit", "verify"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, page) = s.get("/v1/admin/audit?limit=1000", Some(&token("a", &["auditor"]))).await;
    let enrolled = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"].as_str().is_some_and(|a| a.starts_with("cli:")) && e["outcome"] == "created")
        .count();
    assert_eq!(enrolled, 3);

    let missing = s.cli(&["enroll", "--csv", "/nonexistent.csv"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent.csv"));
    s.stop();
}
