//! The confirm step: the sender's outcomes recorded on the calls (a failed attempt planned again or
//! given up), then every batch whose calls all have an outcome settled with its activities.

use custody_sender::{Outcome, Settled};
use tracing::{info, warn};

use super::{SEND_PREFIX, Worker};
use crate::{Error, failpoint, store::CallOutcome};

impl Worker {
    /// Takes the sender's outcomes: a mined call is recorded; one that reverted, or was cancelled,
    /// dropped or refused, is planned again (same batch id, new nonce) up to `max_attempts`; a batch whose
    /// calls are all mined confirms its activities.
    pub async fn confirm(&self) -> Result<usize, Error> {
        let mut mined = 0;
        for key in [&self.issuer, &self.anchorer] {
            for settled in self.sender.track(key, super::SEND_PREFIX).await? {
                failpoint::hit("mined").await;
                mined += self.record_outcome(&settled).await?;
                self.sender.finish(&settled.id).await?;
            }
        }
        // Every batch with all its receipts in: those just recorded, and any a worker recorded before it
        // died (or failed) without settling it.
        for batch in self.store.unsettled_batches().await? {
            failpoint::hit("recorded").await;
            self.settle(&batch).await?;
        }
        Ok(mined)
    }

    /// Records one call's outcome on its row (once: the row must still be at that attempt). Returns 1 if
    /// it was recorded.
    async fn record_outcome(&self, settled: &Settled) -> Result<usize, Error> {
        let Some((id, attempt)) = settled.id.strip_prefix(SEND_PREFIX).and_then(|rest| rest.rsplit_once('#')) else {
            return Err(Error::CorruptRow("sender id of an issuance call"));
        };
        let attempt: i64 = attempt.parse().map_err(|_| Error::CorruptRow("sender id attempt"))?;
        let (receipt, failure) = match &settled.outcome {
            Outcome::Included(receipt) if receipt.status() => (Some(receipt), None),
            Outcome::Included(receipt) => (Some(receipt), Some("reverted".to_owned())),
            Outcome::Cancelled(receipt) => (Some(receipt), Some("cancelled when stuck".to_owned())),
            Outcome::Dropped => (None, Some("its nonce was taken by another transaction".to_owned())),
            Outcome::Rejected(reason) => (None, Some(format!("refused by the node: {reason}"))),
        };
        let (status, error) = match failure {
            None => ("mined", None),
            Some(why) if attempt + 1 < i64::from(self.config.max_attempts) => {
                warn!(tx = %id, %why, "transaction did not take effect; planning it again");
                ("planned", Some(format!("attempt {} {why}", attempt + 1)))
            }
            Some(why) => {
                warn!(tx = %id, %why, "transaction did not take effect; giving up");
                ("failed", Some(format!("transaction {why} after {} attempts", attempt + 1)))
            }
        };
        let outcome = CallOutcome {
            status,
            error: error.as_deref(),
            attempts: if status == "mined" { attempt } else { attempt + 1 },
            mined: receipt.filter(|_| status == "mined").map(|r| &**r),
        };
        Ok(usize::from(self.store.record_outcome(id, attempt, outcome).await?))
    }

    /// Confirms (or fails) a batch's activities once all its calls are mined (or one has failed for good).
    async fn settle(&self, batch: &str) -> Result<(), Error> {
        let statuses = self.store.call_statuses(batch).await?;
        let (outcome, error) = if statuses.iter().all(|s| s == "mined") {
            ("confirmed", None)
        } else if statuses.iter().any(|s| s == "failed") && statuses.iter().all(|s| s == "mined" || s == "failed") {
            ("failed", Some(format!("a transaction of batch {batch} reverted")))
        } else {
            return Ok(());
        };
        if let Some(age) = self.store.settle_batch(batch, outcome, error).await? {
            metrics::histogram!("custody_issuance_batch_settle_seconds", "outcome" => outcome)
                .record(age.as_secs_f64());
        }
        metrics::counter!("custody_issuance_batches_total", "outcome" => outcome).increment(1);
        info!(batch_id = batch, outcome, "batch settled");
        Ok(())
    }
}
