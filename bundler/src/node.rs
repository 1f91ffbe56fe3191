//! What the bundler answers from the node, for clients that send every request to the bundler URL (viem's
//! bundler client without a public client, SDKs in the aa-sdk style): an allow-list of read-only
//! `eth_*` methods passed through, fee suggestions in Pimlico's and rundler's shapes (zero on a
//! zero-fee chain, the sender's own fee rule), and an entity's stake (`debug_bundler_getStakeStatus`).
//! The server's per-client rate limit covers `/rpc` like every route.

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use custody_contracts::EntryPointVersion;
use custody_contracts::entry_point::IEntryPointSimulations;
use serde::Serialize;
use serde_json::Value;

use crate::error::BundlerError;
use crate::service::Bundler;
use crate::validation::{RpcErrorCode, ValidationError};

/// Read-only node methods answered by passing them through.
pub const READ_METHODS: [&str; 17] = [
    "eth_blockNumber",
    "eth_call",
    "eth_estimateGas",
    "eth_feeHistory",
    "eth_gasPrice",
    "eth_getBalance",
    "eth_getBlockByHash",
    "eth_getBlockByNumber",
    "eth_getCode",
    "eth_getLogs",
    "eth_getStorageAt",
    "eth_getTransactionByHash",
    "eth_getTransactionCount",
    "eth_getTransactionReceipt",
    "eth_maxPriorityFeePerGas",
    "net_version",
    "web3_clientVersion",
];

/// A node's error answer, passed on as it came (code, message, data).
#[derive(Debug)]
pub struct NodeError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

/// Fees for one speed (Pimlico's `pimlico_getUserOperationGasPrice` entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fees {
    pub max_fee_per_gas: U256,
    pub max_priority_fee_per_gas: U256,
}

/// `pimlico_getUserOperationGasPrice`: the sender's fees, and 10% and 20% above for faster inclusion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GasPrices {
    pub slow: Fees,
    pub standard: Fees,
    pub fast: Fees,
}

/// `debug_bundler_getStakeStatus`, as the reference bundler answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StakeStatus {
    pub stake_info: StakeInfo,
    /// Whether the stake and unstake delay meet `min_stake_wei` and `min_unstake_delay_secs`.
    pub is_staked: bool,
}

/// An entity's stake on an EntryPoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StakeInfo {
    pub addr: Address,
    pub stake: U256,
    pub unstake_delay_sec: U256,
}

impl Bundler {
    /// One of [`READ_METHODS`], answered by the node.
    pub async fn node_read(&self, method: &str, params: Vec<Value>) -> Result<Value, NodeError> {
        debug_assert!(READ_METHODS.contains(&method));
        let method = method.to_owned();
        self.provider.raw_request::<_, Value>(method.into(), params).await.map_err(|e| match e.as_error_resp() {
            Some(answer) => NodeError {
                code: answer.code,
                message: answer.message.to_string(),
                data: answer.data.as_ref().and_then(|d| serde_json::from_str(d.get()).ok()),
            },
            None => {
                tracing::warn!(error = %e, "node read failed");
                NodeError {
                    code: RpcErrorCode::Internal.code(),
                    message: "the node did not answer".to_owned(),
                    data: None,
                }
            }
        })
    }

    /// The fees bundles are sent with (zero on a zero-base-fee chain), and 10% and 20% more.
    pub async fn gas_prices(&self) -> Result<GasPrices, ValidationError> {
        let (max_fee, priority) = self.sender.fees().await.map_err(BundlerError::from)?;
        let at = |percent: u128| Fees {
            max_fee_per_gas: U256::from(max_fee * percent / 100),
            max_priority_fee_per_gas: U256::from(priority * percent / 100),
        };
        Ok(GasPrices { slow: at(100), standard: at(110), fast: at(120) })
    }

    /// `debug_bundler_getStakeStatus`: `address`'s stake on `entry_point`.
    pub async fn stake_status(&self, address: Address, entry_point: Address) -> Result<StakeStatus, ValidationError> {
        let version: EntryPointVersion = self.entry_point(entry_point)?;
        // `getDepositInfo` is the EntryPoint's own (StakeManager); the simulations interface declares it.
        let info = IEntryPointSimulations::new(version.address(), self.provider.clone())
            .getDepositInfo(address)
            .call()
            .await
            .map_err(|e| BundlerError::node("getDepositInfo", e))?;
        let (stake, delay) = (U256::from(info.stake), U256::from(info.unstakeDelaySec));
        let is_staked = stake >= self.config.min_stake_wei && delay >= U256::from(self.config.min_unstake_delay_secs);
        Ok(StakeStatus { stake_info: StakeInfo { addr: address, stake, unstake_delay_sec: delay }, is_staked })
    }
}
