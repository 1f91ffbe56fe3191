//! Activity intake of the `custody` binary beyond HTTP: from RabbitMQ, and while the chain node is down.

use std::time::Duration;

use custody_contracts::{DeployConfig, test_utils::LocalChain};
use custody_db::test_utils::Engine;
use lapin::{BasicProperties, Connection, ConnectionProperties, options::BasicPublishOptions};
use serde_json::json;
use sqlx::Row;

use crate::service::{Service, token};

/// With the node gone after start-up, `/readyz` says degraded (503, chain down) and intake goes on.
#[tokio::test]
async fn chain_down_is_degraded_and_intake_continues() {
    let chain = LocalChain::start().await.expect("local chain starts");
    // The deployment `Service` records (single operator 0x0101…), so start-up checks pass.
    chain.deploy(&DeployConfig::single_operator(alloy_primitives::Address::repeat_byte(1))).await.expect("deploys");
    let s = Service::start_with(Engine::Sqlite, &format!("[chain]\nrpc_url = \"{}\"\n", chain.rpc_url())).await;
    let (status, body) = s.get("/readyz", None).await;
    assert_eq!((status, &body["checks"]["chain"]), (200, &json!("ok")), "{body}");

    drop(chain);
    let (status, body) = s.get("/readyz", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"], json!({"database": "ok", "hsm": "ok", "chain": "down"}));

    let app = token("backend", &["app"]);
    let activity = json!({"user_id": "u-1", "type": "attendance", "occurred_at": "2026-01-05T08:00:00Z"});
    let (status, tracked) = s.post("/activity/track", &app, Some("down-1"), &activity).await;
    assert_eq!(status, 202, "{tracked}");
    let (status, view) = s.get(&format!("/activity/{}", tracked["id"].as_str().unwrap()), Some(&app)).await;
    assert_eq!((status, view["status"].as_str()), (200, Some("queued")), "{view}");
    s.stop();
}

/// `[issuance.rabbitmq]`: a message on the queue is stored as an activity, once; a malformed one is
/// dead-lettered; both are audited under the queue's name.
#[tokio::test]
async fn rabbitmq_messages_are_tracked() {
    let tag = format!("{:016x}", rand_tag());
    let queue = format!("test.server.activities.{tag}");
    let url = "amqp://guest:guest@127.0.0.1:5672/%2f";
    let extra =
        format!("[issuance.rabbitmq]\nurl = \"{url}\"\nqueue = \"{queue}\"\ndead_letter_queue = \"{queue}.dlq\"\n");
    let s = Service::start_with(Engine::Sqlite, &extra).await;
    let connection = Connection::connect(url, ConnectionProperties::default()).await.expect("broker connects");
    let channel = connection.create_channel().await.expect("channel");
    let body = json!({"user_id": "u-mq", "type": "attendance", "occurred_at": "2026-01-05T08:00:00Z"}).to_string();
    // The consumer declares the queue once connected; publish until one is stored (at most a few times).
    let count = || async {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM issuance_activities WHERE caller = $1")
            .bind(format!("amqp:{queue}"))
            .fetch_one(&s.db.pool().await)
            .await
            .unwrap();
        row.try_get::<i64, _>("n").unwrap()
    };
    let mut stored = 0;
    for _ in 0..100 {
        let properties = BasicProperties::default().with_message_id("mq-1".into()).with_delivery_mode(2);
        channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                properties,
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        stored = count().await;
        if stored > 0 {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!((stored, count().await), (1, 1), "stored once however often it is published");
    // A message without its idempotency key is dead-lettered; both are in the audit trail, by the queue.
    let properties = BasicProperties::default().with_delivery_mode(2);
    channel
        .basic_publish("".into(), queue.as_str().into(), BasicPublishOptions::default(), body.as_bytes(), properties)
        .await
        .unwrap();
    let auditor = token("aud", &["auditor"]);
    let actor = format!("amqp:{queue}");
    let mut outcomes = Vec::new();
    for _ in 0..50 {
        let (_, page) = s.get("/v1/admin/audit?limit=1000", Some(&auditor)).await;
        let entries = page["entries"].as_array().cloned().unwrap_or_default();
        outcomes = entries
            .iter()
            .filter(|e| e["actor"] == actor.as_str() && e["action"] == "activity.track")
            .map(|e| e["outcome"].as_str().unwrap_or_default().to_owned())
            .collect();
        if outcomes.iter().any(|o| o == "refused") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(outcomes.iter().any(|o| o == "queued") && outcomes.iter().any(|o| o == "refused"), "{outcomes:?}");
    for q in [queue.clone(), format!("{queue}.dlq")] {
        let _ = channel.queue_delete(q.as_str().into(), Default::default()).await;
    }
    s.stop();
}

fn rand_tag() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    u64::try_from(nanos % u128::from(u64::MAX)).unwrap() ^ u64::from(std::process::id())
}
