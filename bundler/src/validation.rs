//! What validation hands the mempool, and how it says no.
//!
//! The simulator ([`crate::sim`]) implements [`Validate`]; the mempool and the
//! bundle builder only see these types, so either side can change inside.

use alloy_primitives::{Address, B256, U256};
use custody_contracts::{EntryPointVersion, PackedUserOperation, UserOperation};

/// ERC-7769 JSON-RPC error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RpcErrorCode {
    /// -32602: invalid fields (bad hex, wrong entry point, gas limits too low...).
    InvalidParams,
    /// -32500: rejected by the EntryPoint's validation (an `AAxx` reason).
    EntryPointRejected,
    /// -32501: rejected by the paymaster's validation.
    PaymasterRejected,
    /// -32502: an ERC-7562 opcode or storage rule was broken.
    BannedOpcode,
    /// -32503: outside the signature's time range.
    ShortDeadline,
    /// -32504: an entity is throttled or banned by reputation.
    Banned,
    /// -32505: an entity's stake or unstake delay is too low.
    StakeTooLow,
    /// -32506: an aggregator is not supported.
    UnsupportedAggregator,
    /// -32507: the signature (or aggregated signature) is invalid.
    InvalidSignature,
    /// -32508: the paymaster's deposit does not cover the operation.
    PaymasterDepositTooLow,
    /// -32521: the operation's call reverted (gas estimation).
    ExecutionReverted,
    /// -32603: an internal error (node unreachable, database...).
    Internal,
}

impl RpcErrorCode {
    /// The numeric code sent on the wire.
    pub const fn code(self) -> i64 {
        match self {
            Self::InvalidParams => -32602,
            Self::EntryPointRejected => -32500,
            Self::PaymasterRejected => -32501,
            Self::BannedOpcode => -32502,
            Self::ShortDeadline => -32503,
            Self::Banned => -32504,
            Self::StakeTooLow => -32505,
            Self::UnsupportedAggregator => -32506,
            Self::InvalidSignature => -32507,
            Self::PaymasterDepositTooLow => -32508,
            Self::ExecutionReverted => -32521,
            Self::Internal => -32603,
        }
    }
}

/// Why an operation was refused: an ERC-7769 code, a message a developer can act
/// on, and optional structured data (e.g. the paymaster or the rule broken).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    pub code: RpcErrorCode,
    pub message: String,
    pub data: Option<serde_json::Value>,
}

impl ValidationError {
    pub fn new(code: RpcErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: None }
    }

    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }
}

/// An entity taking part in validation (ERC-7562 terms).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Entity {
    Sender,
    Factory,
    Paymaster,
    Aggregator,
}

/// Stake facts the EntryPoint reports for one entity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StakeInfo {
    pub address: Address,
    pub stake: U256,
    pub unstake_delay_sec: u64,
}

/// Everything the mempool and the builder need to know about an operation that
/// passed validation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ValidatedOp {
    pub user_op_hash: B256,
    pub entry_point: EntryPointVersion,
    /// Block the state was read at.
    pub block_number: u64,
    /// Required prefund (zero on a zero-fee chain).
    pub prefund: U256,
    /// `validAfter` / `validUntil` from the account and the paymaster, merged
    /// (`valid_until == u64::MAX` when unbounded).
    pub valid_after: u64,
    pub valid_until: u64,
    pub sender: StakeInfo,
    pub factory: Option<StakeInfo>,
    pub paymaster: Option<StakeInfo>,
    pub aggregator: Option<Address>,
    /// Whether each entity is staked per the configured minimums.
    pub staked: Vec<(Entity, bool)>,
    /// Code hashes of every contract touched during validation, to be checked
    /// again before bundling (ERC-7562 code-hash stability).
    pub code_hashes: Vec<(Address, B256)>,
    /// Other senders' storage this operation read (for the bundle's
    /// cross-operation rule: no two ops where one's sender is the other's
    /// accessed storage).
    pub accessed_addresses: Vec<Address>,
    /// Gas used by validation (account + paymaster), for the builder's budget.
    pub validation_gas_used: u64,
}

impl ValidatedOp {
    /// `op` taken as valid without a simulation (`debug_bundler_addUserOps`): no prefund, no time
    /// range, no entity staked, nothing touched.
    pub fn assumed(user_op_hash: B256, entry_point: EntryPointVersion, op: &UserOperation) -> Self {
        let unstaked = |address: Address| StakeInfo { address, ..Default::default() };
        let mut staked = vec![(Entity::Sender, false)];
        staked.extend(op.factory.map(|_| (Entity::Factory, false)));
        staked.extend(op.paymaster.map(|_| (Entity::Paymaster, false)));
        Self {
            user_op_hash,
            entry_point,
            block_number: 0,
            prefund: U256::ZERO,
            valid_after: 0,
            valid_until: u64::MAX,
            sender: unstaked(op.sender),
            factory: op.factory.map(unstaked),
            paymaster: op.paymaster.map(unstaked),
            aggregator: None,
            staked,
            code_hashes: Vec::new(),
            accessed_addresses: Vec::new(),
            validation_gas_used: 0,
        }
    }
}

/// Simulates an operation's validation against the chain's current state.
#[async_trait::async_trait]
pub trait Validate: Send + Sync {
    async fn validate(
        &self,
        op: &PackedUserOperation,
        entry_point: EntryPointVersion,
    ) -> Result<ValidatedOp, ValidationError>;

    /// ERC-7562 COD-010, before bundling: for each of `ops`, why it may no longer be bundled (code it
    /// was validated against changed), or `None`. `Err` when the check itself could not run. The
    /// default checks nothing.
    async fn recheck(&self, ops: &[&ValidatedOp]) -> Result<Vec<Option<ValidationError>>, ValidationError> {
        Ok(vec![None; ops.len()])
    }
}
