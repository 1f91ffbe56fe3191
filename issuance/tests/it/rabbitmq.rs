//! The RabbitMQ consumer against the real broker at 127.0.0.1:5672 (guest/guest), unique queues per test.

use std::time::Duration;

use custody_db::test_utils::{Engine, TestDb};
use custody_issuance::{ActivityConsumer, Issuance, REASON_HEADER, RabbitMqConfig};
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties,
    options::{
        BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
        QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable},
};
use sqlx::Row;
use tokio::{sync::oneshot, task::JoinHandle};

use crate::setup::intake;

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn config(prefetch: u16) -> RabbitMqConfig {
    let tag = format!("{:016x}", rand::random::<u64>());
    RabbitMqConfig {
        url: URL.to_owned(),
        queue: format!("test.activities.{tag}"),
        dead_letter_queue: format!("test.activities.{tag}.dlq"),
        prefetch,
    }
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

fn start(issuance: &Issuance, config: &RabbitMqConfig) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let consumer = ActivityConsumer::new(issuance, config.clone());
    let task = tokio::spawn(consumer.run(async move {
        let _ = stopped.await;
    }));
    Running { stop, task }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("consumer stops").expect("joins");
    }
}

async fn publisher() -> (Connection, Channel) {
    let connection = Connection::connect(URL, ConnectionProperties::default()).await.expect("broker connects");
    let channel = connection.create_channel().await.expect("channel");
    channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
    (connection, channel)
}

async fn publish(channel: &Channel, queue: &str, message_id: Option<&str>, body: &[u8]) {
    let mut properties = BasicProperties::default().with_delivery_mode(2);
    if let Some(id) = message_id {
        properties = properties.with_message_id(id.into());
    }
    let confirm = channel
        .basic_publish("".into(), queue.into(), BasicPublishOptions::default(), body, properties)
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(confirm.is_ack());
}

fn attendance(user: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "user_id": user, "type": "attendance", "payload": {"site": "HQ"}, "occurred_at": "2026-01-09T08:00:00Z",
    }))
    .expect("json")
}

async fn stored(db: &TestDb, config: &RabbitMqConfig) -> i64 {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM issuance_activities WHERE caller = $1")
        .bind(format!("amqp:{}", config.queue))
        .fetch_one(&db.pool().await)
        .await
        .expect("count");
    row.try_get::<i64, _>("n").expect("n")
}

async fn wait_stored(db: &TestDb, config: &RabbitMqConfig, n: i64) {
    for _ in 0..300 {
        if stored(db, config).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{n} activities were not stored in 30 s (have {})", stored(db, config).await);
}

/// The dead letters' `(message_id, reason)`, waiting for `n` of them.
async fn dead_letters(channel: &Channel, config: &RabbitMqConfig, n: usize) -> Vec<(Option<String>, String)> {
    let mut letters = Vec::new();
    for _ in 0..300 {
        let got = channel
            .basic_get(config.dead_letter_queue.as_str().into(), BasicGetOptions::default())
            .await
            .expect("basic_get");
        let Some(message) = got else {
            if letters.len() >= n {
                return letters;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let properties = &message.delivery.properties;
        let reason = properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get(REASON_HEADER).cloned())
            .map(|v| match v {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                other => format!("{other:?}"),
            })
            .expect("a reason header");
        letters.push((properties.message_id().as_ref().map(|id| id.as_str().to_owned()), reason));
        message.delivery.ack(BasicAckOptions::default()).await.expect("ack");
    }
    panic!("{n} dead letters did not arrive (have {letters:?})");
}

async fn delete_queues(channel: &Channel, config: &RabbitMqConfig) {
    for queue in [&config.queue, &config.dead_letter_queue] {
        let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
    }
}

async fn stored_once_and_dead_letters(engine: Engine) {
    let (db, issuance) = intake(engine).await;
    let config = config(8);
    let consumer = start(&issuance, &config);
    let (_connection, channel) = publisher().await;
    // The consumer declares the queues; publishing before that would be dropped by the default exchange.
    tokio::time::sleep(Duration::from_millis(500)).await;

    publish(&channel, &config.queue, Some("m-1"), &attendance("alice")).await;
    publish(&channel, &config.queue, Some("m-1"), &attendance("alice")).await; // a redelivery of m-1
    publish(&channel, &config.queue, Some("m-2"), b"{not json").await;
    publish(&channel, &config.queue, None, &attendance("bob")).await;
    let bad_type = br#"{"user_id":"carol","type":"_internal","occurred_at":"2026-01-09T08:00:00Z"}"#;
    publish(&channel, &config.queue, Some("m-3"), bad_type).await;
    publish(&channel, &config.queue, Some("m-1"), &attendance("mallory")).await; // key reused: conflict
    publish(&channel, &config.queue, Some("m-4"), &attendance("dave")).await;

    wait_stored(&db, &config, 2).await;
    let mut letters = dead_letters(&channel, &config, 4).await;
    letters.sort();
    consumer.stop().await;
    assert_eq!(stored(&db, &config).await, 2, "m-1 once, m-4 once");
    assert_eq!(letters.len(), 4, "{letters:?}");
    assert_eq!(letters[0].0, None);
    assert!(letters[0].1.contains("message_id"), "{letters:?}");
    assert_eq!(letters[1].0.as_deref(), Some("m-1"));
    assert!(letters[1].1.contains("idempotency key"), "{letters:?}");
    assert_eq!(letters[2].0.as_deref(), Some("m-2"));
    assert!(letters[2].1.contains("not an activity"), "{letters:?}");
    assert_eq!(letters[3].0.as_deref(), Some("m-3"));
    assert!(letters[3].1.contains("invalid activity"), "{letters:?}");

    let row = sqlx::query("SELECT user_id FROM issuance_activities WHERE caller = $1 AND idempotency_key = 'm-1'")
        .bind(format!("amqp:{}", config.queue))
        .fetch_one(&db.pool().await)
        .await
        .expect("m-1");
    assert_eq!(row.try_get::<String, _>("user_id").expect("user_id"), "alice");
    delete_queues(&channel, &config).await;
}

custody_db::on_each_engine!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] stored_once_and_dead_letters: stored_once_and_dead_letters_sqlite, stored_once_and_dead_letters_postgres);

/// Messages published while the consumer is down, or in flight when it stops, are all stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_loses_nothing() {
    const N: i64 = 300;
    let (db, issuance) = intake(Engine::Sqlite).await;
    let config = config(32);
    let (_connection, channel) = publisher().await;
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    for queue in [&config.queue, &config.dead_letter_queue] {
        channel.queue_declare(queue.as_str().into(), durable, FieldTable::default()).await.expect("declare");
    }
    for i in 0..N {
        publish(&channel, &config.queue, Some(&format!("r-{i}")), &attendance(&format!("user-{i}"))).await;
    }
    // Stop mid-stream: unacked deliveries go back to the queue.
    let first = start(&issuance, &config);
    wait_stored(&db, &config, 20).await;
    first.stop().await;
    let before = stored(&db, &config).await;
    assert!(before < N, "the first consumer stopped before the end ({before})");
    for i in N..N + 50 {
        publish(&channel, &config.queue, Some(&format!("r-{i}")), &attendance(&format!("user-{i}"))).await;
    }
    let second = start(&issuance, &config);
    wait_stored(&db, &config, N + 50).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    second.stop().await;
    assert_eq!(stored(&db, &config).await, N + 50);
    assert!(dead_letters(&channel, &config, 0).await.is_empty());
    delete_queues(&channel, &config).await;
}
