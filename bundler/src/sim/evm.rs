//! One call into the EntryPoint in revm, on top of the pinned block, with the `EntryPointSimulations`
//! runtime code placed at the EntryPoint's address (the eth-infinitism bundler's state override).

use alloy::primitives::{Address, B256, Bytes, TxKind, U256};
use alloy::rpc::types::state::StateOverride;
use revm::bytecode::Bytecode;
use revm::context::{BlockEnv, CfgEnv, Context, TxEnv};
use revm::context_interface::result::{ExecutionResult, HaltReason};
use revm::database::CacheDB;
use revm::primitives::hardfork::SpecId;
use revm::state::{AccountInfo, EvmState};
use revm::{DatabaseRef, ExecuteEvm, InspectEvm, MainBuilder, MainContext};

use super::db::{BlockInfo, RpcDb, RpcDbError};
use super::tracer::Tracer;
use crate::config::Hardfork;

/// Caller of simulation calls (any address works: gas price is zero).
const SIM_CALLER: Address = Address::ZERO;

/// A call to run.
#[derive(Debug)]
pub(crate) struct SimCall<'a> {
    pub(crate) chain_id: u64,
    pub(crate) hardfork: Hardfork,
    pub(crate) block: BlockInfo,
    pub(crate) entry_point: Address,
    pub(crate) simulation_code: &'a Bytecode,
    pub(crate) data: Bytes,
    pub(crate) gas_limit: u64,
    /// `eth_call`-style state overrides (`move_precompile_to` is not supported).
    pub(crate) overrides: &'a StateOverride,
}

/// Result and final state of a call.
#[derive(Debug)]
pub(crate) struct SimRun {
    pub(crate) result: ExecutionResult<HaltReason>,
    pub(crate) state: EvmState,
}

/// Why a call could not run at all.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EvmError {
    #[error(transparent)]
    Db(#[from] RpcDbError),
    #[error("revm refused the simulation call: {0}")]
    Evm(String),
}

fn prepare(call: &SimCall<'_>, db: RpcDb) -> Result<CacheDB<RpcDb>, RpcDbError> {
    let mut cache = CacheDB::new(db);
    let ep = cache.db.basic_ref(call.entry_point)?.unwrap_or_default();
    let code = call.simulation_code.clone();
    cache.insert_account_info(call.entry_point, AccountInfo { code_hash: code.hash_slow(), code: Some(code), ..ep });
    for (address, o) in call.overrides {
        let mut info = cache.db.basic_ref(*address)?.unwrap_or_default();
        if let Some(balance) = o.balance {
            info.balance = balance;
        }
        if let Some(nonce) = o.nonce {
            info.nonce = nonce;
        }
        if let Some(code) = &o.code {
            let code = Bytecode::new_raw(code.clone());
            info.code_hash = code.hash_slow();
            info.code = Some(code);
        }
        cache.insert_account_info(*address, info);
        let slots = |m: &alloy::primitives::map::B256HashMap<B256>| {
            m.iter().map(|(k, v)| (U256::from_be_bytes(k.0), U256::from_be_bytes(v.0))).collect::<Vec<_>>()
        };
        if let Some(state) = &o.state {
            cache
                .replace_account_storage(*address, slots(state).into_iter().collect())
                .map_err(|e| RpcDbError(format!("override {address}: {e}")))?;
        }
        for (slot, value) in o.state_diff.as_ref().map(slots).unwrap_or_default() {
            cache
                .insert_account_storage(*address, slot, value)
                .map_err(|e| RpcDbError(format!("override {address}: {e}")))?;
        }
    }
    Ok(cache)
}

fn context(call: &SimCall<'_>, db: CacheDB<RpcDb>) -> Context<BlockEnv, TxEnv, CfgEnv, CacheDB<RpcDb>> {
    let block = call.block;
    let gas_limit = call.gas_limit;
    Context::mainnet()
        .with_db(db)
        .modify_cfg_chained(|cfg| {
            cfg.chain_id = call.chain_id;
            cfg.spec = match call.hardfork {
                Hardfork::Cancun => SpecId::CANCUN,
                Hardfork::Prague => SpecId::PRAGUE,
            };
            cfg.disable_nonce_check = true;
        })
        .modify_block_chained(|b| {
            b.number = U256::from(block.number);
            b.timestamp = U256::from(block.timestamp);
            b.gas_limit = block.gas_limit.max(gas_limit);
            b.basefee = 0;
            b.prevrandao = Some(block.hash);
        })
}

fn tx(call: &SimCall<'_>) -> Result<TxEnv, EvmError> {
    TxEnv::builder()
        .caller(SIM_CALLER)
        .kind(TxKind::Call(call.entry_point))
        .data(call.data.clone())
        .gas_limit(call.gas_limit)
        .gas_price(0)
        .chain_id(Some(call.chain_id))
        .build()
        .map_err(|e| EvmError::Evm(format!("{e:?}")))
}

/// Runs the call with the ERC-7562 tracer.
pub(crate) fn run_traced(call: &SimCall<'_>, db: RpcDb, tracer: Tracer) -> Result<(SimRun, Tracer), EvmError> {
    let ctx = context(call, prepare(call, db)?);
    let mut evm = ctx.build_mainnet_with_inspector(tracer);
    let out = evm.inspect_tx(tx(call)?).map_err(|e| evm_error(e.to_string()))?;
    Ok((SimRun { result: out.result, state: out.state }, evm.inspector))
}

/// Runs the call in bare revm (no inspector).
pub(crate) fn run_bare(call: &SimCall<'_>, db: RpcDb) -> Result<SimRun, EvmError> {
    let ctx = context(call, prepare(call, db)?);
    let mut evm = ctx.build_mainnet();
    let out = evm.transact(tx(call)?).map_err(|e| evm_error(e.to_string()))?;
    Ok(SimRun { result: out.result, state: out.state })
}

fn evm_error(e: String) -> EvmError {
    EvmError::Evm(e)
}
