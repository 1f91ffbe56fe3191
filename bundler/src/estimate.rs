//! The gas-estimation seam: the simulator implements [`EstimateGas`]; the RPC only sees these types.

use alloy::primitives::U256;
use alloy::rpc::types::state::StateOverride;
use custody_contracts::{EntryPointVersion, UserOperation};
use serde::Serialize;

use crate::validation::ValidationError;

/// ERC-7769 `eth_estimateUserOperationGas` result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GasEstimate {
    pub pre_verification_gas: U256,
    pub verification_gas_limit: U256,
    pub call_gas_limit: U256,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paymaster_verification_gas_limit: Option<U256>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paymaster_post_op_gas_limit: Option<U256>,
}

/// Estimates an operation's gas limits (signature and gas fields may be placeholders).
#[async_trait::async_trait]
pub trait EstimateGas: Send + Sync {
    async fn estimate(
        &self,
        op: &UserOperation,
        entry_point: EntryPointVersion,
        state_override: Option<&StateOverride>,
    ) -> Result<GasEstimate, ValidationError>;
}
