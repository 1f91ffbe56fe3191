//! Activity intake from a RabbitMQ queue, through the same [`Issuance::track`] path as `POST /activity/track`.
//!
//! A message's body is the HTTP body (`{"user_id","type","payload","occurred_at"}`, RFC 3339 time) and
//! its AMQP `message_id` property is the idempotency key (required), under the caller `amqp:<queue>`.
//! A message is acked only once its activity is stored (or was stored before: a redelivery is a
//! replay). A message that can never be stored (bad JSON, no message id, invalid activity, a key
//! reused with other parameters) is published to the dead-letter queue with the reason in the
//! `x-peruri-reason` header, confirmed by the broker, then acked. A database failure nacks the
//! message back to the queue. Each outcome is told to the consumer's [`Recorder`] (the service's audit
//! trail) before the ack; a recorder that fails nacks the message too, so none is consumed unrecorded.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use futures::StreamExt;
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties,
    message::Delivery,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
};
use serde::Deserialize;
use tracing::{info, warn};

use crate::{Error, Issuance, TrackRequest};

/// The header that carries why a message was dead-lettered.
pub const REASON_HEADER: &str = "x-peruri-reason";

/// Pause before reconnecting after the broker failed.
const RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// `[issuance.rabbitmq]`: where activities are consumed from.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RabbitMqConfig {
    /// `amqp://user:password@host:5672/%2f`.
    pub url: String,
    /// The durable queue of activities.
    pub queue: String,
    /// The durable queue that receives malformed messages.
    pub dead_letter_queue: String,
    /// Unacked messages in flight.
    #[serde(default = "default_prefetch")]
    pub prefetch: u16,
}

fn default_prefetch() -> u16 {
    64
}

/// What became of one delivery.
enum Outcome {
    Stored,
    DeadLetter(String),
    Retry(String),
}

/// One message's outcome, as the recorder records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recorded<'a> {
    /// The queue (the caller is `amqp:<queue>`).
    pub queue: &'a str,
    /// The message's `message_id` (its idempotency key), if it had one.
    pub message_id: Option<&'a str>,
    /// The activity type, if the body parsed.
    pub kind: Option<&'a str>,
    /// The stored activity's id; `None` when it was refused.
    pub activity_id: Option<&'a str>,
    /// Whether the activity had been stored before (a redelivery).
    pub replay: bool,
    /// Why it was dead-lettered.
    pub refusal: Option<&'a str>,
}

/// Records what became of each message (the service: its audit trail).
pub trait Recorder: Send + Sync + std::fmt::Debug {
    /// Records `message`; an error nacks it back to the queue.
    fn record<'a>(&'a self, message: Recorded<'a>) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
}

/// Consumes `[issuance.rabbitmq]` into the mirror.
#[derive(Clone, Debug)]
pub struct ActivityConsumer {
    issuance: Issuance,
    config: RabbitMqConfig,
    recorder: Option<Arc<dyn Recorder>>,
}

impl ActivityConsumer {
    /// A consumer of `config.queue` storing through `issuance`.
    pub fn new(issuance: &Issuance, config: RabbitMqConfig) -> Self {
        Self { issuance: issuance.clone(), config, recorder: None }
    }

    /// With `recorder` told of every message's outcome.
    #[must_use]
    pub fn with_recorder(mut self, recorder: Arc<dyn Recorder>) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// Consumes until `shutdown` resolves, reconnecting after broker failures.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                result = self.consume() => match result {
                    Ok(()) => warn!(queue = %self.config.queue, "activity consumer was cancelled by the broker"),
                    Err(e) => warn!(queue = %self.config.queue, error = %e, "activity consumer failed; reconnecting"),
                },
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(RECONNECT_DELAY) => {}
            }
        }
    }

    /// One connection: declares the queues and handles deliveries until the stream ends or fails.
    async fn consume(&self) -> Result<(), lapin::Error> {
        let connection = Connection::connect(&self.config.url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        channel.basic_qos(self.config.prefetch.max(1), BasicQosOptions::default()).await?;
        let durable = QueueDeclareOptions { durable: true, ..Default::default() };
        for queue in [&self.config.queue, &self.config.dead_letter_queue] {
            channel.queue_declare(queue.as_str().into(), durable, FieldTable::default()).await?;
        }
        let mut deliveries = channel
            .basic_consume(
                self.config.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        info!(queue = %self.config.queue, "activity consumer started");
        while let Some(delivery) = deliveries.next().await {
            self.handle(&channel, delivery?).await?;
        }
        Ok(())
    }

    async fn handle(&self, channel: &Channel, delivery: Delivery) -> Result<(), lapin::Error> {
        match self.store(&delivery).await {
            Outcome::Stored => {
                delivery.ack(BasicAckOptions::default()).await?;
            }
            Outcome::DeadLetter(reason) => {
                warn!(queue = %self.config.queue, %reason, "activity message dead-lettered");
                if self.dead_letter(channel, &delivery, &reason).await? {
                    delivery.ack(BasicAckOptions::default()).await?;
                } else {
                    warn!(queue = %self.config.queue, "the broker refused the dead letter; requeued");
                    delivery.nack(BasicNackOptions { requeue: true, ..Default::default() }).await?;
                }
            }
            Outcome::Retry(e) => {
                warn!(queue = %self.config.queue, error = %e, "activity message not stored; requeued");
                delivery.nack(BasicNackOptions { requeue: true, ..Default::default() }).await?;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    /// Stores the delivery's activity, then records what became of it.
    async fn store(&self, delivery: &Delivery) -> Outcome {
        let key = delivery.properties.message_id().as_ref().map(|id| id.as_str()).filter(|id| !id.is_empty());
        let message = serde_json::from_slice::<TrackRequest>(&delivery.data);
        let kind = message.as_ref().ok().map(|m| m.kind.clone());
        let mut recorded = Recorded {
            queue: &self.config.queue,
            message_id: key,
            kind: kind.as_deref(),
            activity_id: None,
            replay: false,
            refusal: None,
        };
        let (outcome, tracked) = match (key, message) {
            (None, _) => (Outcome::DeadLetter("no message_id (the idempotency key)".to_owned()), None),
            (_, Err(e)) => (Outcome::DeadLetter(format!("body is not an activity: {e}")), None),
            (Some(key), Ok(message)) => {
                let caller = format!("amqp:{}", self.config.queue);
                match self.issuance.track_request(&caller, key, message).await {
                    Ok(tracked) => (Outcome::Stored, Some(tracked)),
                    Err(
                        e @ (Error::Invalid(_)
                        | Error::OutOfRange(_)
                        | Error::InvalidOccurredAt
                        | Error::IdempotencyConflict),
                    ) => (Outcome::DeadLetter(e.to_string()), None),
                    Err(e) => return Outcome::Retry(e.to_string()),
                }
            }
        };
        recorded.activity_id = tracked.as_ref().map(|t| t.id.as_str());
        recorded.replay = tracked.as_ref().is_some_and(|t| !t.created);
        if let Outcome::DeadLetter(reason) = &outcome {
            recorded.refusal = Some(reason);
        }
        if let Some(recorder) = &self.recorder
            && let Err(e) = recorder.record(recorded).await
        {
            return Outcome::Retry(format!("recording the message: {e}"));
        }
        outcome
    }

    /// Publishes the message to the dead-letter queue with its reason; `true` once the broker confirms it.
    async fn dead_letter(&self, channel: &Channel, delivery: &Delivery, reason: &str) -> Result<bool, lapin::Error> {
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(REASON_HEADER.into(), AMQPValue::LongString(reason.into()));
        let properties: BasicProperties = delivery.properties.clone().with_headers(headers).with_delivery_mode(2);
        let confirm = channel
            .basic_publish(
                "".into(),
                self.config.dead_letter_queue.as_str().into(),
                BasicPublishOptions::default(),
                &delivery.data,
                properties,
            )
            .await?
            .await?;
        Ok(confirm.is_ack())
    }
}
