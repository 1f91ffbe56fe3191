//! The sign and submit steps: a planned call is recorded with the transaction sender (nonce, signature
//! and raw bytes in the write that marks the call signed), then broadcast as those bytes.

use tracing::debug;

use super::{Worker, send_id};
use crate::{Error, failpoint, store::Store};

impl Worker {
    /// Records every planned call with the transaction sender: its nonce, signature and raw bytes are
    /// stored in the same database transaction that marks the call signed.
    pub async fn sign(&self) -> Result<usize, Error> {
        let mut signed = 0;
        loop {
            let Some(planned) = self.store.next_planned().await? else { return Ok(signed) };
            let id = planned.id;
            let signer = if planned.target == self.contracts.log { &self.anchorer } else { &self.issuer };
            let call = custody_sender::Call { to: planned.target, input: planned.calldata, ..Default::default() };
            let prepared = self.sender.prepare(signer.address(), call).await?;
            let mut write = self.sender.begin().await?;
            // Claimed first, so a second worker waits here for the first's commit and then finds it taken.
            if !Store::claim_planned(&mut write.db, &id, planned.attempts, signer.address()).await? {
                continue; // another worker signed it first
            }
            let sent = self.sender.record(&mut write, &send_id(&id, planned.attempts), signer, prepared, &id).await?;
            Store::store_signed(&mut write.db, &id, sent.nonce, sent.hash).await?;
            write.commit().await?;
            failpoint::hit("signed").await;
            debug!(tx = %id, hash = %sent.hash, nonce = sent.nonce, "signed");
            signed += 1;
        }
    }

    /// Broadcasts every signed call (the stored bytes; a node that already has them counts as sent).
    pub async fn submit(&self) -> Result<usize, Error> {
        let mut submitted = 0;
        for call in self.store.signed_calls().await? {
            let from = call.sender.ok_or(Error::CorruptRow("issuance_txs.sender"))?;
            let key = if from == self.anchorer.address() { &self.anchorer } else { &self.issuer };
            self.sender.broadcast(&send_id(&call.id, call.attempts), key).await?;
            failpoint::hit("submitted").await;
            self.store.mark_submitted(&call.id, &call.batch_id).await?;
            submitted += 1;
        }
        Ok(submitted)
    }
}
