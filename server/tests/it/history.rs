//! What the app's three tabs read: a user's activities (newest first, a page at a time, by type and
//! status), tokens and badges, for the app about any user and for a user about themselves.

use custody_db::test_utils::Engine;
use serde_json::{Value, json};

use crate::service::{Service, token};

async fn history(engine: Engine) {
    let s = Service::start(engine).await;
    let app = token("backend", &["app"]);
    let mut ids = Vec::new();
    for (i, kind) in ["attendance", "milestone", "attendance", "training_completed", "attendance"].iter().enumerate() {
        let body = json!({"user_id": "h-user", "type": kind, "payload": {"milestone": "x"}, "occurred_at": format!("2026-01-0{}T08:00:00Z", i + 1)});
        let (status, answer) = s.post("/activity/track", &app, Some(&format!("h{i}")), &body).await;
        assert_eq!(status, 202, "{answer}");
        ids.push(answer["id"].as_str().unwrap().to_owned());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    s.post("/activity/track", &app, Some("other"), &json!({"user_id": "someone-else", "type": "attendance"})).await;
    ids.reverse();

    // Pages of two, newest first, until the cursor runs out.
    let mut seen = Vec::new();
    let mut path = "/v1/wallets/h-user/activities?limit=2".to_owned();
    loop {
        let (status, page) = s.get(&path, Some(&app)).await;
        assert_eq!(status, 200, "{page}");
        for a in page["activities"].as_array().unwrap() {
            assert_eq!(a["status"], "queued");
            assert!(a["txHash"].is_null() && a.get("payload").is_none(), "{a}");
            seen.push(a["id"].as_str().unwrap().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(cursor) => path = format!("/v1/wallets/h-user/activities?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every activity once, newest first");
    let (_, first) = s.get("/v1/wallets/h-user/activities?limit=1", Some(&app)).await;
    assert_eq!(first["activities"][0]["occurredAt"], "2026-01-05T08:00:00Z");

    let kinds = |page: &Value| -> Vec<String> {
        page["activities"].as_array().unwrap().iter().map(|a| a["type"].as_str().unwrap().to_owned()).collect()
    };
    let (_, page) = s.get("/v1/wallets/h-user/activities?type=attendance", Some(&app)).await;
    assert_eq!(kinds(&page), ["attendance"; 3]);
    let (_, page) = s.get("/v1/wallets/h-user/activities?status=confirmed", Some(&app)).await;
    assert_eq!(kinds(&page), Vec::<String>::new());
    let (_, page) = s.get("/v1/wallets/h-user/activities?status=queued&type=milestone", Some(&app)).await;
    assert_eq!(kinds(&page), ["milestone"]);

    // The user reads their own history; roles are kept apart.
    let user = token("h-user", &["user"]);
    let (status, own) = s.get("/wallet/activities?limit=100", Some(&user)).await;
    assert_eq!((status, own["activities"].as_array().unwrap().len()), (200, 5), "{own}");
    assert_eq!(s.get("/wallet/activities", Some(&app)).await.0, 403);
    assert_eq!(s.get("/v1/wallets/h-user/activities", Some(&user)).await.0, 403);
    assert_eq!(s.get("/wallet/activities", None).await.0, 401);

    // Bad queries are a clear 400.
    for query in ["limit=0", "limit=101", "limit=x", "status=done", "cursor=abc", "cursor=1.0x12", "sort=asc", "type="]
    {
        let (status, answer) = s.get(&format!("/v1/wallets/h-user/activities?{query}"), Some(&app)).await;
        assert_eq!(status, 400, "{query}: {answer}");
        assert!(matches!(answer["error"]["code"].as_str(), Some("invalid_query" | "invalid_cursor")), "{answer}");
    }

    // Tokens and badges: 404 without a wallet, else what the caches hold.
    assert_eq!(s.get("/wallet/tokens", Some(&user)).await.0, 404);
    assert_eq!(s.post("/v1/wallets", &app, Some("w"), &json!({"user_id": "h-user"})).await.0, 201);
    let (status, tokens) = s.get("/wallet/tokens", Some(&user)).await;
    assert_eq!(
        (status, tokens["symbol"].as_str(), tokens["balance"].as_str()),
        (200, Some("PTKN"), Some("0")),
        "{tokens}"
    );
    let (_, by_app) = s.get("/v1/wallets/h-user/tokens", Some(&app)).await;
    assert_eq!(by_app, tokens);
    let (status, badges) = s.get("/wallet/badges", Some(&user)).await;
    assert_eq!((status, &badges["badges"]), (200, &json!([])), "{badges}");
    assert_eq!(s.get("/wallet/badges", Some(&app)).await.0, 403);
    s.stop();
}

custody_db::on_each_engine!(history: sqlite_a_users_history_pages_newest_first, postgres_a_users_history_pages_newest_first);
