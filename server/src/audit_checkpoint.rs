//! Audit checkpoints: every `[audit] checkpoint_secs`, and right after a sensitive operation, the trail's head (sequence number `n`, hash
//! `h`) is anchored in PLOG from the `anchor` key through the transaction sender, as
//! `anchor(keccak256("peruri:audit:<n>"), r, n, "peruri:audit:<n>")` with the root
//! `r = keccak256(r_prev ‖ n ‖ h)` chaining the previous checkpoint's (zero before the first), so a
//! checkpoint left out of the sequence shows on-chain. `custody audit verify` then checks
//! every such anchor on-chain against the trail, so a trail rewritten consistently (each hash
//! recomputed, by someone who can drop the append-only triggers) is caught at the first checkpoint
//! after the change.

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256, keccak256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::Filter;
use alloy::sol_types::{SolCall, SolEvent};
use anyhow::{Context, bail};
use custody_contracts::bindings::peruri_log::PeruriLog;
use custody_sender::{Call, Outcome, Sender};
use custody_signer::EthSigner;
use sqlx::{AnyPool, Row};
use tokio::sync::Notify;
use tracing::{info, warn};

/// Sender ids and PLOG URIs of checkpoints: `peruri:audit:<seq>`.
const PREFIX: &str = "peruri:audit:";

/// The PLOG batch id of the checkpoint at `seq`.
pub(crate) fn batch_id(seq: i64) -> B256 {
    keccak256(format!("{PREFIX}{seq}"))
}

/// The root of the checkpoint at `seq` with hash `hash`, after the one whose root is `prev`.
fn chained(prev: B256, seq: i64, hash: B256) -> B256 {
    let mut bytes = Vec::with_capacity(96);
    bytes.extend_from_slice(prev.as_slice());
    bytes.extend_from_slice(
        alloy::primitives::U256::from(u64::try_from(seq).unwrap_or(0)).to_be_bytes::<32>().as_slice(),
    );
    bytes.extend_from_slice(hash.as_slice());
    keccak256(bytes)
}

fn parse_hash(hex: &str) -> anyhow::Result<B256> {
    format!("0x{}", hex.trim_start_matches("0x")).parse().context("a stored hash")
}

/// Anchors the trail's head in PLOG.
#[derive(Debug, Clone)]
pub(crate) struct Checkpointer {
    pool: AnyPool,
    sender: Sender,
    key: EthSigner,
    log: Address,
}

impl Checkpointer {
    pub(crate) fn new(pool: AnyPool, provider: DynProvider, key: EthSigner, log: Address) -> Self {
        let sender = Sender::new(pool.clone(), provider, custody_sender::SenderConfig::default());
        Self { pool, sender, key, log }
    }

    /// Takes the outcomes of sent checkpoints, then anchors the head if it moved and none is in flight.
    /// Returns the sequence number anchored, if one was sent.
    pub(crate) async fn step(&self) -> anyhow::Result<Option<i64>> {
        for settled in self.sender.track(&self.key, PREFIX).await? {
            let seq: i64 = settled.id[PREFIX.len()..].parse().context("checkpoint id")?;
            match &settled.outcome {
                Outcome::Included(receipt) if receipt.status() => {
                    sqlx::query("UPDATE audit_checkpoints SET tx_hash = $1, block = $2 WHERE seq = $3")
                        .bind(custody_db::encode_b256(receipt.transaction_hash))
                        .bind(receipt.block_number.map(|b| b as i64))
                        .bind(seq)
                        .execute(&self.pool)
                        .await?;
                    metrics::gauge!("custody_audit_checkpoint_seq").set(seq as f64);
                    info!(seq, tx = %receipt.transaction_hash, "audit checkpoint anchored");
                }
                other => {
                    // Not anchored: forget it, the next step anchors the head again.
                    warn!(seq, outcome = other.as_str(), "audit checkpoint did not take effect; retrying");
                    sqlx::query("DELETE FROM audit_checkpoints WHERE seq = $1").bind(seq).execute(&self.pool).await?;
                }
            }
            self.sender.finish(&settled.id).await?;
        }
        self.record_unanchored_age().await?;
        let Some(head) =
            sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetch_optional(&self.pool).await?
        else {
            return Ok(None);
        };
        let (seq, hash): (i64, String) = (head.try_get("seq")?, head.try_get("hash")?);
        let row = sqlx::query(
            "SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) AS last, \
             CAST(COALESCE(SUM(CASE WHEN tx_hash IS NULL THEN 1 ELSE 0 END), 0) AS BIGINT) AS open \
             FROM audit_checkpoints",
        )
        .fetch_one(&self.pool)
        .await?;
        let (last, open): (i64, i64) = (row.try_get("last")?, row.try_get("open")?);
        if seq <= last || open > 0 {
            return Ok(None);
        }
        let prev = match sqlx::query("SELECT root FROM audit_checkpoints ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?
        {
            Some(row) => parse_hash(&row.try_get::<String, _>("root")?)?,
            None => B256::ZERO,
        };
        let root = chained(prev, seq, parse_hash(&hash)?);
        let input = PeruriLog::anchorCall {
            batchId: batch_id(seq),
            root,
            leafCount: u64::try_from(seq).unwrap_or(0),
            uri: format!("{PREFIX}{seq}"),
        }
        .abi_encode();
        let call = Call { to: self.log, input: input.into(), ..Default::default() };
        let prepared = self.sender.prepare(self.key.address(), call).await?;
        let id = format!("{PREFIX}{seq}");
        let mut write = self.sender.begin().await?;
        sqlx::query("INSERT INTO audit_checkpoints (seq, hash, root, created_at) VALUES ($1, $2, $3, $4)")
            .bind(seq)
            .bind(&hash)
            .bind(custody_db::encode_b256(root))
            .bind(custody_db::now_millis())
            .execute(&mut *write.db)
            .await?;
        self.sender.record(&mut write, &id, &self.key, prepared, "").await?;
        write.commit().await?;
        self.sender.broadcast(&id, &self.key).await?;
        Ok(Some(seq))
    }

    /// Sets `custody_audit_unanchored_seconds`: how long the oldest entry no anchored checkpoint covers
    /// has waited (0 when every entry is covered), the alert's measure of a late checkpoint.
    async fn record_unanchored_age(&self) -> anyhow::Result<()> {
        let oldest: Option<i64> = sqlx::query_scalar(
            "SELECT at FROM audit_log WHERE seq = (SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) + 1 \
             FROM audit_checkpoints WHERE tx_hash IS NOT NULL)",
        )
        .fetch_optional(&self.pool)
        .await?;
        let waited = oldest.map_or(0, |at| custody_db::now_millis().saturating_sub(at).max(0));
        metrics::gauge!("custody_audit_unanchored_seconds").set(waited as f64 / 1000.0);
        Ok(())
    }

    /// Steps every `interval`, and at once when `sensitive` is notified (a sensitive operation was
    /// recorded), until `stop` completes; a failed step is logged and retried.
    pub(crate) async fn run(self, interval: Duration, sensitive: Arc<Notify>, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            if let Err(e) = self.step().await {
                warn!(error = %e, "audit checkpoint step failed; retrying");
            }
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(interval) => {}
                () = sensitive.notified() => {}
            }
        }
    }
}

/// Checks every audit checkpoint PLOG holds (its BatchAnchored events from `from_block`, in sequence
/// order) against the trail: the entry at each sequence number must exist, and the chained root over
/// its hash must be the anchored one. Returns how many matched.
pub(crate) async fn verify_anchored(
    pool: &AnyPool,
    provider: &DynProvider,
    log: Address,
    from_block: u64,
) -> anyhow::Result<usize> {
    let filter =
        Filter::new().address(log).event_signature(PeruriLog::BatchAnchored::SIGNATURE_HASH).from_block(from_block);
    let mut anchored = Vec::new();
    for entry in provider.get_logs(&filter).await.context("reading PLOG's BatchAnchored events")? {
        let Ok(event) = PeruriLog::BatchAnchored::decode_log_data(entry.data()) else { continue };
        let Some(seq) = event.uri.strip_prefix(PREFIX).and_then(|s| s.parse::<i64>().ok()) else { continue };
        if event.batchId == batch_id(seq) {
            anchored.push((seq, event.root, entry.transaction_hash.unwrap_or_default()));
        }
    }
    anchored.sort_by_key(|(seq, ..)| *seq);
    let mut prev = B256::ZERO;
    for (seq, root, tx) in &anchored {
        let stored: Option<String> = sqlx::query("SELECT hash FROM audit_log WHERE seq = $1")
            .bind(seq)
            .fetch_optional(pool)
            .await?
            .map(|r| r.try_get("hash"))
            .transpose()?;
        let Some(hash) = stored else {
            bail!("audit entry {seq}, anchored on-chain in {tx}, is missing from the trail");
        };
        if chained(prev, *seq, parse_hash(&hash)?) != *root {
            bail!(
                "audit entry {seq} (or an earlier checkpointed one) differs from the checkpoint anchored on-chain \
                 in {tx}: the trail was rewritten"
            );
        }
        prev = *root;
    }
    Ok(anchored.len())
}

#[cfg(all(test, feature = "dev"))]
mod tests {
    use custody_contracts::DeployConfig;
    use custody_contracts::test_utils::LocalChain;
    use custody_db::test_utils::Engine;
    use custody_signer::KeyClass;
    use custody_signer::test_utils::TestKeyring;

    use super::*;
    use crate::audit::{Audit, Entry};

    async fn append(audit: &Audit, target: &str) {
        append_action(audit, "key.create", target).await;
    }

    async fn append_action(audit: &Audit, action: &str, target: &str) {
        let entry = Entry { actor: "cli:test", action, target, request_id: "t", outcome: "done", details: "" };
        audit.append(&entry).await.expect("appended");
    }

    /// A chain with the contracts, PLOG's anchorer an HSM key, and a migrated database with its trail.
    async fn setup() -> (LocalChain, TestKeyring, Checkpointer, Audit, Address) {
        let chain = LocalChain::start().await.expect("chain");
        let keys = TestKeyring::new(Engine::Sqlite).await;
        keys.keyring.create_infra("anchor").await.expect("anchor key");
        let key = keys.keyring.signer(KeyClass::Infra, "anchor").await.expect("signer");
        let config = DeployConfig {
            anchorer: key.address(),
            ..DeployConfig::single_operator(chain.dev_accounts()[0].address())
        };
        let log = chain.deploy(&config).await.expect("deployed").contracts.peruri_log;
        let pool = keys.db.pool().await;
        crate::db::migrate(&pool).await.expect("migrated");
        let audit = Audit::new(pool.clone());
        let checkpointer = Checkpointer::new(pool, chain.provider(), key, log);
        (chain, keys, checkpointer, audit, log)
    }

    /// The newest checkpoint's sequence number.
    async fn newest(pool: &AnyPool) -> Option<i64> {
        sqlx::query("SELECT MAX(seq) AS seq FROM audit_checkpoints").fetch_one(pool).await.expect("max").get("seq")
    }

    #[tokio::test]
    async fn a_sensitive_operation_is_checkpointed_at_once_and_others_wait_for_the_interval() {
        let (_chain, keys, checkpointer, audit, _) = setup().await;
        let pool = keys.db.pool().await;
        append_action(&audit, "token.mint", "a").await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stopping = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(checkpointer.run(Duration::from_secs(3600), audit.sensitive(), stopping));
        let until = |seq: i64| {
            let pool = pool.clone();
            async move {
                for _ in 0..100 {
                    if newest(&pool).await == Some(seq) {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                false
            }
        };
        assert!(until(1).await, "the head is anchored at start");
        append_action(&audit, "token.mint", "b").await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(newest(&pool).await, Some(1), "an ordinary entry waits for the interval (an hour)");
        append_action(&audit, "did.deactivate", "did:peruri:x").await;
        assert!(until(3).await, "a sensitive operation is checkpointed at once, the ordinary entry with it");
        stop.send(()).expect("stops");
        task.await.expect("the task ends on stop");
    }

    /// Rewrites entry `seq`'s target and recomputes every hash from there on, as someone who dropped the
    /// append-only triggers could: the chain itself verifies again.
    async fn drop_triggers(pool: &AnyPool) {
        for trigger in ["audit_log_no_update", "audit_log_no_delete"] {
            sqlx::query(&format!("DROP TRIGGER IF EXISTS {trigger}")).execute(pool).await.expect("drop trigger");
        }
    }

    async fn rewrite(pool: &AnyPool, seq: i64, target: &str) {
        drop_triggers(pool).await;
        let rows = sqlx::query("SELECT seq, at, actor, action, target, request_id, outcome, details, prev_hash FROM audit_log ORDER BY seq")
            .fetch_all(pool)
            .await
            .expect("rows");
        let mut prev = String::new();
        for row in rows {
            let n: i64 = row.get("seq");
            let text = |c: &str| row.get::<String, _>(c);
            let prev_hash = if prev.is_empty() { text("prev_hash") } else { prev.clone() };
            let target = if n == seq { target.to_owned() } else { text("target") };
            let (actor, action, request_id, outcome, details) =
                (text("actor"), text("action"), text("request_id"), text("outcome"), text("details"));
            let entry = Entry {
                actor: &actor,
                action: &action,
                target: &target,
                request_id: &request_id,
                outcome: &outcome,
                details: &details,
            };
            let hash = crate::audit::entry_hash(&prev_hash, n, row.get("at"), &entry);
            sqlx::query("UPDATE audit_log SET target = $1, prev_hash = $2, hash = $3 WHERE seq = $4")
                .bind(&target)
                .bind(&prev_hash)
                .bind(&hash)
                .bind(n)
                .execute(pool)
                .await
                .expect("rewrite");
            prev = hash;
        }
    }

    #[tokio::test]
    async fn a_cut_tail_and_a_consistent_rewrite_are_caught_by_the_anchored_checkpoints() {
        let (chain, keys, checkpointer, audit, log) = setup().await;
        let pool = keys.db.pool().await;
        for target in ["a", "b", "c"] {
            append(&audit, target).await;
        }
        let provider = chain.provider();
        assert_eq!(checkpointer.step().await.expect("step"), Some(3), "the head is anchored");
        assert_eq!(checkpointer.step().await.expect("step"), None, "its receipt taken; the head did not move");
        let anchored = PeruriLog::new(log, provider.clone()).getBatch(batch_id(3)).call().await.expect("batch");
        assert_eq!(anchored.leafCount, 3);
        let head: String =
            sqlx::query("SELECT hash FROM audit_log WHERE seq = 3").fetch_one(&pool).await.expect("head").get("hash");
        assert_eq!(anchored.root, chained(B256::ZERO, 3, parse_hash(&head).expect("hash")), "the first root");
        let tx: Option<String> = sqlx::query("SELECT tx_hash FROM audit_checkpoints WHERE seq = 3")
            .fetch_one(&pool)
            .await
            .expect("row")
            .get("tx_hash");
        assert!(tx.is_some(), "the checkpoint's transaction is recorded");
        assert_eq!(verify_anchored(&pool, &provider, log, 0).await.expect("verified"), 1);

        append(&audit, "d").await;
        assert_eq!(checkpointer.step().await.expect("step"), Some(4), "a new head, a new checkpoint");
        checkpointer.step().await.expect("step");
        assert_eq!(verify_anchored(&pool, &provider, log, 0).await.expect("verified"), 2);

        // A cut tail: the last entry deleted, the plain chain walk still intact.
        drop_triggers(&pool).await;
        sqlx::query("DELETE FROM audit_log WHERE seq = 4").execute(&pool).await.expect("cut");
        assert_eq!(audit.verify().await.expect("the cut chain verifies by itself"), 3);
        let caught = verify_anchored(&pool, &provider, log, 0).await.expect_err("caught").to_string();
        assert!(caught.contains("audit entry 4, anchored on-chain"), "{caught}");

        rewrite(&pool, 2, "someone-else").await;
        assert_eq!(audit.verify().await.expect("the rewritten chain verifies by itself"), 3);
        let caught = verify_anchored(&pool, &provider, log, 0).await.expect_err("caught").to_string();
        assert!(caught.contains("audit entry 3 (or an earlier checkpointed one) differs"), "{caught}");
    }
}
