//! A revm database over the node's plain JSON-RPC: accounts, code, storage and block hashes read lazily
//! at a pinned block and cached until a newer block is seen.
//!
//! revm's `Database` is synchronous; simulations run on a blocking thread (`spawn_blocking`) and each
//! cache miss is answered with `Handle::block_on` on the provider.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use alloy::eips::{BlockId, BlockNumberOrTag};
use alloy::primitives::{Address, B256, Bytes, U64, U256, keccak256};
use alloy::providers::{DynProvider, Provider};
use revm::bytecode::Bytecode;
use revm::database_interface::{DBErrorMarker, DatabaseRef};
use revm::state::AccountInfo;
use tokio::runtime::Handle;

/// A node read failed (the simulation is abandoned and reported as an internal error).
#[derive(Debug, thiserror::Error)]
#[error("node read failed: {0}")]
pub(crate) struct RpcDbError(pub String);

impl DBErrorMarker for RpcDbError {}

/// An error with its causes ("error sending request" alone does not say whether the node refused the
/// connection, closed it or timed out).
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// The block a simulation runs on top of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    pub number: u64,
    pub hash: B256,
    pub timestamp: u64,
    pub gas_limit: u64,
    pub base_fee: u64,
}

#[derive(Debug, Default)]
struct Cached {
    block: Option<BlockInfo>,
    /// When the read that last confirmed `block` began.
    checked_at: Option<Instant>,
    accounts: HashMap<Address, AccountInfo>,
    storage: HashMap<(Address, U256), U256>,
    code: HashMap<B256, Bytecode>,
    block_hashes: HashMap<u64, B256>,
}

/// The per-block state cache shared by every simulation of a [`crate::sim::Simulator`].
#[derive(Debug, Clone)]
pub(crate) struct StateCache {
    provider: DynProvider,
    cached: Arc<Mutex<Cached>>,
    /// Held while the latest block is read, so that concurrent refreshes share one read.
    reading: Arc<tokio::sync::Mutex<()>>,
}

impl StateCache {
    pub(crate) fn new(provider: DynProvider) -> Self {
        Self { provider, cached: Arc::default(), reading: Arc::default() }
    }

    fn lock(&self) -> MutexGuard<'_, Cached> {
        self.cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads the latest block (unless the pinned one was checked less than `max_age` ago); if it
    /// differs from the pinned one, the cache is dropped and the new block pinned. Returns the pinned
    /// block. Concurrent callers share one read: a caller waiting for another's read uses it when that
    /// read began after the caller asked (it is as fresh as one of its own).
    pub(crate) async fn refresh(&self, max_age: Duration) -> Result<BlockInfo, RpcDbError> {
        let asked = Instant::now();
        if let Some(block) = self.fresh(|at| at.elapsed() < max_age) {
            return Ok(block);
        }
        let _turn = self.reading.lock().await;
        if let Some(block) = self.fresh(|at| at >= asked || at.elapsed() < max_age) {
            return Ok(block);
        }
        let started = Instant::now();
        let block = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await
            .map_err(|e| RpcDbError(format!("eth_getBlockByNumber: {}", causes(&e))))?
            .ok_or_else(|| RpcDbError("latest block not found".to_owned()))?;
        let info = BlockInfo {
            number: block.header.number,
            hash: block.header.hash,
            timestamp: block.header.timestamp,
            gas_limit: block.header.gas_limit,
            base_fee: block.header.base_fee_per_gas.unwrap_or_default(),
        };
        let mut cached = self.lock();
        if cached.block != Some(info) {
            tracing::debug!(block = info.number, "state cache invalidated by a new block");
            *cached = Cached { block: Some(info), ..Cached::default() };
        }
        cached.checked_at = Some(started);
        Ok(info)
    }

    /// The pinned block if its last check (the time that read began) passes `fresh_enough`.
    fn fresh(&self, fresh_enough: impl Fn(Instant) -> bool) -> Option<BlockInfo> {
        let cached = self.lock();
        match (cached.block, cached.checked_at) {
            (Some(block), Some(at)) if fresh_enough(at) => Some(block),
            _ => None,
        }
    }

    /// A database reading at `block` (which must come from [`Self::refresh`]).
    pub(crate) fn at(&self, block: BlockInfo, handle: Handle) -> RpcDb {
        RpcDb { cache: self.clone(), block, handle }
    }
}

/// The database handed to revm: reads at one pinned block through [`StateCache`].
#[derive(Debug)]
pub(crate) struct RpcDb {
    cache: StateCache,
    block: BlockInfo,
    handle: Handle,
}

impl RpcDb {
    fn block_id(&self) -> BlockId {
        BlockId::number(self.block.number)
    }

    /// Stores into the cache only if it still holds the block this read was made at.
    fn store(&self, f: impl FnOnce(&mut Cached)) {
        let mut cached = self.cache.lock();
        if cached.block == Some(self.block) {
            f(&mut cached);
        }
    }

    /// An account's balance, nonce and code, in one JSON-RPC batch (one HTTP request, not three).
    async fn fetch_account(&self, address: Address) -> Result<AccountInfo, RpcDbError> {
        let failed = |e: &dyn std::error::Error| RpcDbError(format!("account {address}: {}", causes(e)));
        let client = self.cache.provider.client();
        let mut batch = alloy::rpc::client::BatchRequest::new(client);
        let params = (address, self.block_id());
        let balance = batch.add_call::<_, U256>("eth_getBalance", &params).map_err(|e| failed(&e))?;
        let nonce = batch.add_call::<_, U64>("eth_getTransactionCount", &params).map_err(|e| failed(&e))?;
        let code = batch.add_call::<_, Bytes>("eth_getCode", &params).map_err(|e| failed(&e))?;
        batch.send().await.map_err(|e| failed(&e))?;
        let (balance, nonce, code) = tokio::try_join!(balance, nonce, code).map_err(|e| failed(&e))?;
        let code = Bytecode::new_raw(code);
        let code_hash =
            if code.is_empty() { revm::primitives::KECCAK_EMPTY } else { keccak256(code.original_byte_slice()) };
        Ok(AccountInfo::new(balance, nonce.to::<u64>(), code_hash, code))
    }
}

impl DatabaseRef for RpcDb {
    type Error = RpcDbError;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        if let Some(info) = self.cache.lock().accounts.get(&address) {
            return Ok(Some(info.clone()));
        }
        let info = self.handle.block_on(self.fetch_account(address))?;
        self.store(|c| {
            if let Some(code) = &info.code {
                c.code.insert(info.code_hash, code.clone());
            }
            c.accounts.insert(address, info.clone());
        });
        Ok(Some(info))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        // Code always arrives with its account (basic_ref), so a miss means an unknown hash.
        self.cache
            .lock()
            .code
            .get(&code_hash)
            .cloned()
            .ok_or_else(|| RpcDbError(format!("code {code_hash} not loaded with its account")))
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Self::Error> {
        if let Some(value) = self.cache.lock().storage.get(&(address, index)) {
            return Ok(*value);
        }
        let value = self
            .handle
            .block_on(async { self.cache.provider.get_storage_at(address, index).block_id(self.block_id()).await })
            .map_err(|e| RpcDbError(format!("storage {address}[{index}]: {}", causes(&e))))?;
        self.store(|c| {
            c.storage.insert((address, index), value);
        });
        Ok(value)
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        if number == self.block.number {
            return Ok(self.block.hash);
        }
        if let Some(hash) = self.cache.lock().block_hashes.get(&number) {
            return Ok(*hash);
        }
        let block = self
            .handle
            .block_on(async { self.cache.provider.get_block_by_number(BlockNumberOrTag::Number(number)).await })
            .map_err(|e| RpcDbError(format!("block {number}: {}", causes(&e))))?;
        let hash = block.map(|b| b.header.hash).unwrap_or_default();
        self.store(|c| {
            c.block_hashes.insert(number, hash);
        });
        Ok(hash)
    }
}
