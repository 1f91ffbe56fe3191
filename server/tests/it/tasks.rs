//! Supervised tasks: `/readyz` reports each one; a critical task that dies takes the process down with a
//! non-zero exit (for its supervisor to restart), instead of leaving a service that looks healthy.

use std::time::Duration;

use custody_db::test_utils::Engine;

use crate::service::Service;

fn rabbitmq_section(name: &str) -> String {
    let queue = format!("test.server.tasks.{name}.{:08x}", rand::random::<u32>());
    format!(
        "[issuance.rabbitmq]\nurl = \"amqp://guest:guest@127.0.0.1:5672/%2f\"\nqueue = \"{queue}\"\n\
         dead_letter_queue = \"{queue}.dlq\"\n"
    )
}

#[tokio::test]
async fn readyz_reports_each_task() {
    let s = Service::start_with(Engine::Sqlite, &rabbitmq_section("ready")).await;
    let (status, ready) = s.get("/readyz", None).await;
    assert_eq!((status, &ready["tasks"]["activity-consumer"]), (200, &serde_json::json!("running")), "{ready}");
    let log = s.stop();
    assert!(log.contains("task stopped"), "joined on SIGTERM:\n{log}");
}

#[tokio::test]
async fn a_critical_task_that_dies_stops_the_process_with_an_error() {
    let mut s = Service::prepare(Engine::Sqlite, &rabbitmq_section("dies")).await;
    s.launch(&[("CUSTODY_FAILPOINT", "task-panic:activity-consumer")]).await;
    let status = s.exit_within(Duration::from_secs(20)).expect("the process exits when its consumer dies");
    assert!(!status.success(), "a non-zero exit: {status}");
    let log = s.log();
    assert!(log.contains("a critical task ended; stopping the process"), "{log}");
    assert!(log.contains("activity-consumer") && log.contains("panicked"), "{log}");
    assert!(log.contains("the critical task activity-consumer ended unexpectedly"), "{log}");
}
