//! The audit trail as the other parts' recorder: the transaction sender's journal (every transaction
//! signed for the mirror worker, the bundler, the checkpointer: `tx.sign` before its first broadcast)
//! and the RabbitMQ consumer's recorder (`activity.track` by `amqp:<queue>`, as `POST /activity/track`
//! records it). A failure to append holds the broadcast or the message's ack back.

use std::{future::Future, pin::Pin};

use serde_json::json;

use crate::audit::{Audit, Entry};

/// What a hook's future answers.
type Hooked<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// The most of a send's context (a bundle's operation hashes) kept in its entry.
const MAX_CONTEXT: usize = 512;

impl Audit {
    async fn hook(&self, entry: Entry<'_>) -> Result<(), String> {
        self.append(&entry).await.map(drop).map_err(|e| e.to_string())
    }
}

impl custody_sender::Journal for Audit {
    fn signed<'a>(&'a self, tx: custody_sender::Signed<'a>) -> Hooked<'a> {
        Box::pin(async move {
            let context: String = tx.context.chars().take(MAX_CONTEXT).collect();
            let details = json!({"id": tx.id, "to": tx.to, "nonce": tx.nonce, "txHash": tx.hash,
                "cancel": tx.cancel, "context": context});
            let (target, details) = (custody_db::encode_address(tx.from), details.to_string());
            let entry = Entry {
                actor: "service:sender",
                action: "tx.sign",
                target: &target,
                request_id: tx.id,
                outcome: "signed",
                details: &details,
            };
            self.hook(entry).await
        })
    }
}

impl custody_issuance::Recorder for Audit {
    fn record<'a>(&'a self, message: custody_issuance::Recorded<'a>) -> Hooked<'a> {
        Box::pin(async move {
            let actor = format!("amqp:{}", message.queue);
            let (target, outcome, details) = match (message.activity_id, message.refusal) {
                (Some(id), _) => (id, "queued", json!({"type": message.kind, "replay": message.replay})),
                (None, reason) => ("activity", "refused", json!({"type": message.kind, "reason": reason})),
            };
            let details = details.to_string();
            let request_id = message.message_id.unwrap_or("-");
            let entry =
                Entry { actor: &actor, action: "activity.track", target, request_id, outcome, details: &details };
            self.hook(entry).await
        })
    }
}
