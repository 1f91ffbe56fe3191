//! Idempotency on every creating route: the same key and body replays the first answer after a delay
//! and under concurrency, with one effect; the same key with another body is a 422.

use std::time::Duration;

use custody_db::test_utils::Engine;
use serde_json::{Value, json};

use crate::service::{Service, token};

/// Sends `body` to `path` with `key` from `n` tasks at once.
async fn concurrently(s: &Service, path: &str, bearer: &str, key: &str, body: &Value, n: usize) -> Vec<(u16, Value)> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let req =
                s.http.post(format!("{}{path}", s.url)).bearer_auth(bearer).header("Idempotency-Key", key).json(body);
            tokio::spawn(async move {
                let resp = req.send().await.unwrap();
                (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

/// Audit entries with `action` and `outcome`.
async fn audited(s: &Service, action: &str, outcome: &str) -> usize {
    let (_, page) = s.get("/v1/admin/audit?limit=1000", Some(&token("a", &["auditor"]))).await;
    page["entries"].as_array().unwrap().iter().filter(|e| e["action"] == action && e["outcome"] == outcome).count()
}

async fn every_creating_route_replays(engine: Engine) {
    let s = Service::start(engine).await;
    let app = token("backend", &["app"]);
    let officer = token("officer-1", &["officer"]);
    let mint = json!({"userId": "r-user", "amount": "5", "reason": "retry"});
    let track = json!({"user_id": "r-user", "type": "attendance", "payload": {}});
    let wallet = json!({"user_id": "r-user"});
    let routes: [(&str, &str, &Value); 4] = [
        ("/v1/wallets", app.as_str(), &wallet),
        ("/mintToken", app.as_str(), &mint),
        ("/activity/track", app.as_str(), &track),
        ("/v1/wallets/r-user/deactivate", officer.as_str(), &json!({})),
    ];

    // Concurrent twins: one answer, one effect.
    let mut first = Vec::new();
    let key = |path: &str| format!("key{path}");
    for (path, bearer, body) in routes {
        let answers = concurrently(&s, path, bearer, &key(path), body, 8).await;
        let (status, answer) = answers[0].clone();
        assert!(status < 300, "{path}: {status} {answer}");
        for other in &answers {
            assert_eq!(other, &(status, answer.clone()), "{path}: every twin gets the first answer");
        }
        first.push((status, answer));
    }
    assert_eq!(first[0].0, 201, "the wallet was created, and every twin is told so");
    assert_eq!(audited(&s, "wallet.create", "created").await, 1);
    assert_eq!(audited(&s, "wallet.create", "existing").await, 0, "no twin ran the creation again");
    assert_eq!(audited(&s, "did.deactivate", "deactivated").await, 1);

    // A retry later (past a second, so any server clock in a fingerprint would differ) replays.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for ((path, bearer, body), (status, answer)) in routes.iter().zip(&first) {
        let (again, replay) = s.post(path, bearer, Some(&key(path)), body).await;
        assert_eq!(again, *status, "{path}: {replay}");
        // Mints answer the activity id, whatever progress it made since.
        let same = if path.starts_with("/v1/wallets") { &replay == answer } else { replay["id"] == answer["id"] };
        assert!(same, "{path}: {replay} after {answer}");
        let (other_path, other_body) = match *path {
            "/v1/wallets/r-user/deactivate" => ("/v1/wallets/other/deactivate", json!({})),
            "/mintToken" => (*path, json!({"userId": "other", "amount": "5"})),
            "/activity/track" => (*path, json!({"user_id": "other", "type": "attendance"})),
            _ => (*path, json!({"user_id": "other"})),
        };
        let (conflict, answer) = s.post(other_path, bearer, Some(&key(path)), &other_body).await;
        assert_eq!((conflict, answer["error"]["code"].as_str()), (422, Some("idempotency_key_reused")), "{path}");
    }
    let (_, page) = s.get("/v1/wallets/r-user/activities", Some(&app)).await;
    assert_eq!(page["activities"].as_array().unwrap().len(), 2, "one mint, one activity: {page}");
    s.stop();
}

custody_db::on_each_engine!(every_creating_route_replays: sqlite_every_creating_route_replays_its_first_answer, postgres_every_creating_route_replays_its_first_answer);

/// A request that failed without effect leaves its key free: the retry runs.
#[tokio::test]
async fn a_refused_request_does_not_keep_its_key() {
    let s = Service::start(Engine::Sqlite).await;
    let officer = token("officer-1", &["officer"]);
    let path = "/v1/wallets/late-user/deactivate";
    assert_eq!(s.post(path, &officer, Some("d1"), &json!({})).await.0, 404, "no wallet yet");
    let (status, _) =
        s.post("/v1/wallets", &token("backend", &["app"]), Some("w1"), &json!({"user_id": "late-user"})).await;
    assert_eq!(status, 201);
    let (status, answer) = s.post(path, &officer, Some("d1"), &json!({})).await;
    assert_eq!((status, &answer["deactivated"]), (200, &json!(true)), "{answer}");
    assert_eq!(s.post(path, &officer, None, &json!({})).await.0, 400, "deactivation needs an Idempotency-Key");
    s.stop();
}
