//! The batch step: outbox entries → recipients' wallets → merkle tree → planned calls, recorded with the
//! claim in one transaction.

use std::collections::{HashMap, HashSet};

use alloy::primitives::{Address, B256};
use custody_db::encode_b256;
use futures::{StreamExt, TryStreamExt};
use tracing::info;

use super::Worker;
use crate::{Error, failpoint, merkle::MerkleTree, plan};

/// Wallets created at once for users a batch meets for the first time.
const WALLET_CONCURRENCY: usize = 4;

impl Worker {
    /// Claims up to `batch_size` outbox entries and records their merkle batch and planned calls.
    /// Returns how many activities it batched.
    pub async fn batch(&self) -> Result<usize, Error> {
        let queued = self.store.peek_outbox(self.limit()).await?;
        if queued.is_empty() {
            return Ok(0);
        }
        failpoint::hit("stored").await;
        // Recipients first, outside the claiming transaction (wallet creation writes to the database);
        // then only the entries peeked here are claimed, so every claimed activity has its recipient.
        let (peeked, users): (Vec<i64>, HashSet<String>) = queued.into_iter().unzip();
        // A user's first activity creates their wallet (an HSM key): a few at once.
        let recipients: HashMap<String, Address> = futures::stream::iter(users)
            .map(|user| async move {
                let (wallet, _) = self.wallets.create(&user).await.map_err(Error::Wallets)?;
                Ok::<_, Error>((user, wallet.address))
            })
            .buffer_unordered(WALLET_CONCURRENCY)
            .try_collect()
            .await?;

        let Some(claim) = self.store.claim_outbox(&peeked, &recipients).await? else { return Ok(0) };
        let hashes: Vec<B256> = claim.leaves.iter().map(|(_, l)| *l).collect();
        let tree = MerkleTree::new(&hashes).ok_or(Error::CorruptRow("empty batch"))?;
        let root = tree.root();
        let batch_id = encode_b256(plan::chain_batch_id(root, "PLOG", 0));
        let uri = format!("{}{batch_id}", self.config.batch_uri);
        let leaves = claim.leaves.len();
        let calls = plan::plan(self.contracts, root, leaves as u64, &uri, &claim.items, self.config.max_mints_per_tx);
        claim.record(&batch_id, &tree, &calls).await?;
        failpoint::hit("batched").await;
        info!(batch_id, leaves, calls = calls.len(), "batch planned");
        Ok(leaves)
    }

    fn limit(&self) -> i64 {
        i64::try_from(self.config.batch_size.max(1)).unwrap_or(i64::MAX)
    }
}
