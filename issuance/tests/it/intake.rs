//! Intake: one transaction per activity, idempotency, policy items, validation.

use custody_db::test_utils::Engine;
use custody_issuance::{Error, NewActivity};
use serde_json::json;

use crate::setup::{JAN_2026, activity, intake};

async fn idempotent_and_policy(engine: Engine) {
    let (_db, m) = intake(engine).await;
    let first = m.track("app", "k1", activity("alice", "attendance")).await.unwrap();
    assert!(first.created);
    assert!(first.id.starts_with("0x") && first.id.len() == 66);
    // Replay: the same activity, not a second one.
    let again = m.track("app", "k1", activity("alice", "attendance")).await.unwrap();
    assert_eq!((again.id.as_str(), again.created), (first.id.as_str(), false));
    // The same key with other parameters is a conflict; another caller's key is its own.
    let err = m.track("app", "k1", activity("bob", "attendance")).await.unwrap_err();
    assert!(matches!(err, Error::IdempotencyConflict), "{err}");
    assert!(m.track("other-app", "k1", activity("bob", "attendance")).await.unwrap().created);

    let view = m.activity(&first.id).await.unwrap().unwrap();
    assert_eq!((view.status.as_str(), view.kind.as_str()), ("queued", "attendance"));
    assert_eq!(view.issued.len(), 1, "10 PTKN, no badge yet: {view:?}");
    assert_eq!(view.issued[0].amount.as_deref(), Some("10000000000000000000"));

    // The 2nd attendance of the month earns the month's badge; the 3rd does not earn it again.
    let second = m.track("app", "k2", activity("alice", "attendance")).await.unwrap();
    let view = m.activity(&second.id).await.unwrap().unwrap();
    let badges: Vec<_> = view.issued.iter().filter_map(|i| i.badge_id.clone()).collect();
    assert_eq!(badges, vec!["202601".to_owned()]);
    let third = m.track("app", "k3", activity("alice", "attendance")).await.unwrap();
    assert_eq!(m.activity(&third.id).await.unwrap().unwrap().issued.len(), 1);
    // Next month counts afresh.
    let feb = NewActivity { occurred_at: JAN_2026 + 31 * 86_400, ..activity("alice", "attendance") };
    m.track("app", "k4", feb.clone()).await.unwrap();
    let feb2 = m.track("app", "k5", feb).await.unwrap();
    let view = m.activity(&feb2.id).await.unwrap().unwrap();
    assert!(view.issued.iter().any(|i| i.badge_id.as_deref() == Some("202602")), "{view:?}");

    // Training: badge and bonus, once per user; milestone: badge and log; unknown: nothing.
    let t = m.track("app", "t1", activity("alice", "training_completed")).await.unwrap();
    assert_eq!(m.activity(&t.id).await.unwrap().unwrap().issued.len(), 2);
    let t2 = m.track("app", "t2", activity("alice", "training_completed")).await.unwrap();
    let kinds: Vec<_> = m.activity(&t2.id).await.unwrap().unwrap().issued.into_iter().map(|i| i.kind).collect();
    assert_eq!(kinds, vec!["token"], "the training badge only once per user");
    let ms = NewActivity { payload: json!({"milestone": "first_year"}), ..activity("alice", "milestone") };
    let ms = m.track("app", "m1", ms).await.unwrap();
    let kinds: Vec<_> = m.activity(&ms.id).await.unwrap().unwrap().issued.into_iter().map(|i| i.kind).collect();
    assert_eq!(kinds, vec!["badge", "log"]);
    let unknown = m.track("app", "u1", activity("alice", "coffee_break")).await.unwrap();
    let view = m.activity(&unknown.id).await.unwrap().unwrap();
    assert_eq!((view.status.as_str(), view.issued.len()), ("queued", 0), "stored, issues nothing");

    // Direct mints go the same way, idempotently.
    let mint = m.mint("app", "mint-1", "bob", 5, "welcome").await.unwrap();
    assert_eq!(
        m.mint("app", "mint-1", "bob", 5, "welcome").await.unwrap(),
        custody_issuance::Tracked { created: false, ..mint }
    );
    assert!(matches!(m.mint("app", "mint-1", "bob", 6, "welcome").await, Err(Error::IdempotencyConflict)));
    assert!(m.activity("0x00").await.unwrap().is_none());
}

custody_db::on_each_engine!(
    idempotent_and_policy: sqlite_intake_is_idempotent_and_applies_the_policy,
    postgres_intake_is_idempotent_and_applies_the_policy
);

#[tokio::test]
async fn bad_activities_are_refused_and_store_nothing() {
    let (_db, m) = intake(Engine::Sqlite).await;
    let cases = [
        NewActivity { user_id: String::new(), ..activity("x", "attendance") },
        NewActivity { user_id: "u".repeat(300), ..activity("x", "attendance") },
        NewActivity { user_id: "a\u{7}b".into(), ..activity("x", "attendance") },
        activity("x", "_mint"),
        activity("x", ""),
        activity("x", "has space"),
        NewActivity { occurred_at: 0, ..activity("x", "attendance") },
        NewActivity { occurred_at: i64::MAX / 2, ..activity("x", "attendance") },
    ];
    for (i, case) in cases.into_iter().enumerate() {
        let err = m.track("app", &format!("k{i}"), case.clone()).await.unwrap_err();
        assert!(matches!(err, Error::Invalid(_) | Error::OutOfRange(_)), "{case:?}: {err}");
    }
    assert!(matches!(m.mint("app", "z", "bob", 0, "r").await, Err(Error::Invalid(_))));
    // None of them took its key.
    assert!(m.track("app", "k0", activity("x", "attendance")).await.unwrap().created);
}

async fn concurrent_intake(engine: Engine) {
    let (_db, m) = intake(engine).await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            // 8 keys, each sent 8 times; 4 users, so every user reaches the threshold.
            m.track("app", &format!("k{}", i % 8), activity(&format!("user-{}", i % 4), "attendance")).await
        }));
    }
    let mut ids = std::collections::HashMap::new();
    for task in tasks {
        let tracked = task.await.unwrap().unwrap();
        ids.entry(tracked.id).or_insert(0usize);
    }
    assert_eq!(ids.len(), 8, "one activity per key");
    let mut badges = 0;
    for id in ids.keys() {
        badges += m.activity(id).await.unwrap().unwrap().issued.iter().filter(|i| i.kind == "badge").count();
    }
    assert_eq!(badges, 4, "one month badge per user");
}

custody_db::on_each_engine!(
    concurrent_intake: sqlite_concurrent_intake_makes_one_activity_per_key,
    postgres_concurrent_intake_makes_one_activity_per_key
);
