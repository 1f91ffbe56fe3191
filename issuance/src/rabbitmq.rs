//! Activity intake from a RabbitMQ queue, through the same [`Issuance::track`] path as `POST /activity/track`.
//!
//! A message's body is the HTTP body (`{"user_id","type","payload","occurred_at"}`, RFC 3339 time) and
//! its AMQP `message_id` property is the idempotency key (required), under the caller `amqp:<queue>`.
//! A message is acked only once its activity is stored (or was stored before: a redelivery is a
//! replay). A message that can never be stored (bad JSON, no message id, invalid activity, a key
//! reused with other parameters) is published to the dead-letter queue with the reason in the
//! `x-peruri-reason` header, confirmed by the broker, then acked. A database failure nacks the
//! message back to the queue.

use std::{future::Future, time::Duration};

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
    Retry(Error),
}

/// Consumes `[issuance.rabbitmq]` into the mirror.
#[derive(Clone, Debug)]
pub struct ActivityConsumer {
    issuance: Issuance,
    config: RabbitMqConfig,
}

impl ActivityConsumer {
    /// A consumer of `config.queue` storing through `issuance`.
    pub fn new(issuance: &Issuance, config: RabbitMqConfig) -> Self {
        Self { issuance: issuance.clone(), config }
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

    async fn store(&self, delivery: &Delivery) -> Outcome {
        let Some(key) = delivery.properties.message_id().as_ref().map(|id| id.as_str()).filter(|id| !id.is_empty())
        else {
            return Outcome::DeadLetter("no message_id (the idempotency key)".to_owned());
        };
        let message: TrackRequest = match serde_json::from_slice(&delivery.data) {
            Ok(message) => message,
            Err(e) => return Outcome::DeadLetter(format!("body is not an activity: {e}")),
        };
        let caller = format!("amqp:{}", self.config.queue);
        match self.issuance.track_request(&caller, key, message).await {
            Ok(_) => Outcome::Stored,
            Err(
                e @ (Error::Invalid(_) | Error::OutOfRange(_) | Error::InvalidOccurredAt | Error::IdempotencyConflict),
            ) => Outcome::DeadLetter(e.to_string()),
            Err(e) => Outcome::Retry(e),
        }
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
