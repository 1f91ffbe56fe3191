//! The chain this database belongs to.
//!
//! The activities, transactions, wallets and caches in a database describe one chain. At its first start
//! against a chain the service records that chain's identity: its chain id and the number and hash of the
//! deployment block (the deployment record's `block`; the genesis block without a record). At every later
//! start it refuses to run against a chain whose identity differs (another network, or the same network
//! reset), with a message that says what differs, rather than show confirmations the chain never saw.
//!
//! ```text
//! start ─► eth_chainId, block N of the chain ─► no row: record (chain id, N, hash of block N)
//!                                           └─► a row: same chain id, block N there, same hash? else refuse
//! ```

use alloy::{
    eips::BlockNumberOrTag,
    primitives::B256,
    providers::{Provider, ProviderBuilder},
};
use anyhow::Context;
use sqlx::{AnyPool, Row};
use tracing::info;

use crate::config::ChainConfig;

/// What identifies a chain: its id and one block's hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChainIdentity {
    pub(crate) chain_id: u64,
    /// The deployment block's number ...
    pub(crate) block: u64,
    /// ... and hash.
    pub(crate) block_hash: B256,
}

/// How the chain at hand differs from the one a database was used with.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Mismatch {
    #[error("the chain at {url} has chain id {actual}, this database was used with chain id {recorded}")]
    ChainId { url: String, actual: u64, recorded: u64 },
    #[error(
        "the chain at {url} has no block {block} (its latest is {latest}), this database was used with a chain \
         whose block {block} is {recorded} (a different or reset chain)"
    )]
    MissingBlock { url: String, block: u64, latest: u64, recorded: B256 },
    #[error(
        "block {block} of the chain at {url} is {actual}, the deployment block recorded is {recorded} \
         (a different or reset chain)"
    )]
    BlockHash { url: String, block: u64, actual: B256, recorded: B256 },
}

/// Records the identity of the configured chain at the first start; at a later start refuses a chain whose
/// identity differs from the one recorded. Nothing to do without `[chain] rpc_url`.
pub(crate) async fn check(pool: &AnyPool, chain: &ChainConfig) -> anyhow::Result<()> {
    let Some(url) = chain.rpc_url.as_deref() else { return Ok(()) };
    let provider = ProviderBuilder::new().connect_http(url.parse().context("chain.rpc_url")?);
    let chain_id = provider.get_chain_id().await.with_context(|| format!("reading the chain id at {url}"))?;
    let recorded = match recorded(pool).await? {
        Some(recorded) => recorded,
        None => {
            let block = match &chain.deployment_file {
                Some(path) => custody_contracts::Deployment::read(path)?.block,
                None => 0,
            };
            let block_hash = block_hash(&provider, url, block).await?.with_context(|| {
                format!("the chain at {url} has no block {block}, the block of its deployment record")
            })?;
            record(pool, ChainIdentity { chain_id, block, block_hash }).await?;
            info!(chain_id, block, %block_hash, "chain identity recorded");
            // Read back: of two processes recording at once, the first one's identity holds.
            recorded(pool).await?.context("the chain identity just recorded is missing")?
        }
    };
    let hash = block_hash(&provider, url, recorded.block).await?;
    let latest = match hash {
        Some(_) => recorded.block,
        None => provider.get_block_number().await.with_context(|| format!("reading the latest block at {url}"))?,
    };
    compare(url, &recorded, chain_id, hash, latest)?;
    Ok(())
}

/// The chain at `url` (chain id `chain_id`, `hash` at the recorded block, `latest` block) against `recorded`.
fn compare(
    url: &str,
    recorded: &ChainIdentity,
    chain_id: u64,
    hash: Option<B256>,
    latest: u64,
) -> Result<(), Mismatch> {
    let url = url.to_owned();
    let block = recorded.block;
    if chain_id != recorded.chain_id {
        return Err(Mismatch::ChainId { url, actual: chain_id, recorded: recorded.chain_id });
    }
    match hash {
        None => Err(Mismatch::MissingBlock { url, block, latest, recorded: recorded.block_hash }),
        Some(actual) if actual != recorded.block_hash => {
            Err(Mismatch::BlockHash { url, block, actual, recorded: recorded.block_hash })
        }
        Some(_) => Ok(()),
    }
}

/// The hash of block `number` of the chain, if it has that block.
async fn block_hash(provider: &impl Provider, url: &str, number: u64) -> anyhow::Result<Option<B256>> {
    let block = provider
        .get_block_by_number(BlockNumberOrTag::Number(number))
        .await
        .with_context(|| format!("reading block {number} at {url}"))?;
    Ok(block.map(|b| b.header.hash))
}

/// The identity recorded in this database, if any.
pub(crate) async fn recorded(pool: &AnyPool) -> anyhow::Result<Option<ChainIdentity>> {
    let row = sqlx::query("SELECT chain_id, block_number, block_hash FROM chain_identity WHERE id = 1")
        .fetch_optional(pool)
        .await
        .context("reading the recorded chain identity")?;
    let Some(row) = row else { return Ok(None) };
    let number = |column: &str| -> anyhow::Result<u64> {
        let value: i64 = row.try_get(column)?;
        u64::try_from(value).with_context(|| format!("chain_identity.{column} is negative"))
    };
    let hash: String = row.try_get("block_hash")?;
    Ok(Some(ChainIdentity {
        chain_id: number("chain_id")?,
        block: number("block_number")?,
        block_hash: custody_db::decode_b256(&hash).context("chain_identity.block_hash")?,
    }))
}

/// Records `identity` unless one is recorded already.
async fn record(pool: &AnyPool, identity: ChainIdentity) -> anyhow::Result<()> {
    let too_large = || format!("chain id {} or block {} is too large to store", identity.chain_id, identity.block);
    sqlx::query(
        "INSERT INTO chain_identity (id, chain_id, block_number, block_hash, recorded_at) VALUES (1, $1, $2, $3, $4) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(i64::try_from(identity.chain_id).with_context(too_large)?)
    .bind(i64::try_from(identity.block).with_context(too_large)?)
    .bind(custody_db::encode_b256(identity.block_hash))
    .bind(custody_db::now_millis())
    .execute(pool)
    .await
    .context("recording the chain identity")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use alloy::primitives::b256;
    use custody_db::test_utils::{Engine, TestDb};

    use super::*;

    const URL: &str = "http://127.0.0.1:8545";
    const RECORDED: ChainIdentity = ChainIdentity {
        chain_id: 1337,
        block: 5,
        block_hash: b256!("0xcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"),
    };

    /// The row is written once (a second recording, as by a racing replica, leaves the first) and read back
    /// as written, on both engines.
    async fn records_once_and_reads_back(engine: Engine) {
        let db = TestDb::new(engine).await;
        let pool = custody_db::connect_pool(&db.url).await.expect("pool");
        crate::db::migrate(&pool).await.expect("migrations");
        assert_eq!(recorded(&pool).await.expect("reads"), None);
        record(&pool, RECORDED).await.expect("records");
        let other = ChainIdentity { chain_id: 1338, block: 9, block_hash: B256::repeat_byte(0xab) };
        record(&pool, other).await.expect("a second recording is not an error");
        assert_eq!(recorded(&pool).await.expect("reads"), Some(RECORDED));
    }

    custody_db::on_each_engine!(records_once_and_reads_back: sqlite_records_once_and_reads_back, postgres_records_once_and_reads_back);

    #[test]
    fn the_same_chain_passes() {
        assert_eq!(compare(URL, &RECORDED, 1337, Some(RECORDED.block_hash), 5), Ok(()));
    }

    #[test]
    fn each_difference_is_named() {
        let other = b256!("0xabababababababababababababababababababababababababababababababab");
        let e = compare(URL, &RECORDED, 1338, Some(RECORDED.block_hash), 9).expect_err("refused");
        assert_eq!(
            e.to_string(),
            "the chain at http://127.0.0.1:8545 has chain id 1338, this database was used with chain id 1337"
        );
        let e = compare(URL, &RECORDED, 1337, Some(other), 9).expect_err("refused");
        assert_eq!(
            e.to_string(),
            format!(
                "block 5 of the chain at {URL} is {other}, the deployment block recorded is {} \
                 (a different or reset chain)",
                RECORDED.block_hash
            )
        );
        let e = compare(URL, &RECORDED, 1337, None, 2).expect_err("refused");
        assert_eq!(
            e.to_string(),
            format!(
                "the chain at {URL} has no block 5 (its latest is 2), this database was used with a chain whose \
                 block 5 is {} (a different or reset chain)",
                RECORDED.block_hash
            )
        );
    }
}
