//! Gas estimation in revm: binary searches for verificationGasLimit, paymasterVerificationGasLimit
//! (`simulateValidation` must succeed) and callGasLimit (`simulateHandleOp`'s `UserOperationEvent`
//! must report success); preVerificationGas from the calldata cost of the op in a bundle plus a
//! fixed overhead.

use alloy::primitives::{Address, Bytes, U256};
use alloy::rpc::types::state::StateOverride;
use alloy::sol_types::{SolCall, SolEvent, SolValue};
use custody_contracts::IEntryPoint::{UserOperationEvent, UserOperationRevertReason};
use custody_contracts::entry_point::IEntryPointSimulations::{simulateHandleOpCall, simulateValidationCall};
use custody_contracts::userop::{PAYMASTER_DATA_OFFSET, pack_u128s};
use custody_contracts::{EntryPointVersion, PackedUserOperation, UserOperation};
use revm::context_interface::result::ExecutionResult;

use super::Simulator;
use super::outcome::revert_error;
use crate::estimate::{EstimateGas, GasEstimate};
use crate::validation::{RpcErrorCode, ValidationError};

/// Intrinsic cost of the bundle transaction, charged to its single operation.
const FIXED_OVERHEAD: u64 = 21_000;
/// EntryPoint bookkeeping per operation outside the measured gas (loop, events, compensation).
const PER_OP_OVERHEAD: u64 = 18_300;
/// Per 32-byte word of the operation in the bundle's calldata.
const PER_OP_WORD: u64 = 4;
/// Binary searches stop when the bracket is this narrow.
const TOLERANCE: u64 = 500;
/// Upper bound of each search.
const SEARCH_CAP: u64 = 10_000_000;

/// preVerificationGas of `op`: calldata cost of its ABI encoding in `handleOps` (16 per non-zero
/// byte, 4 per zero byte) plus the fixed and per-operation overheads.
pub fn pre_verification_gas(op: &PackedUserOperation) -> u64 {
    let encoded = (op.clone(),).abi_encode_params();
    let calldata: u64 = encoded.iter().map(|b| if *b == 0 { 4 } else { 16 }).sum();
    let words = u64::try_from(encoded.len().div_ceil(32)).unwrap_or(u64::MAX);
    calldata + FIXED_OVERHEAD + PER_OP_OVERHEAD + PER_OP_WORD * words
}

fn with_limits(
    op: &PackedUserOperation,
    verification: u64,
    call: u64,
    paymaster_verification: Option<u64>,
) -> PackedUserOperation {
    let mut op = op.clone();
    op.accountGasLimits = pack_u128s(verification.into(), call.into());
    if let Some(pm) = paymaster_verification
        && op.paymasterAndData.len() >= PAYMASTER_DATA_OFFSET
    {
        let mut data = op.paymasterAndData.to_vec();
        data[20..36].copy_from_slice(&u128::from(pm).to_be_bytes());
        op.paymasterAndData = data.into();
    }
    op
}

impl Simulator {
    /// Estimates the gas limits of `op` for `version` under `overrides`. The signature must be
    /// well formed (a dummy that makes validation fail without reverting is fine); the paymaster's
    /// postOp limit is passed through.
    pub async fn estimate_gas(
        &self,
        op: &PackedUserOperation,
        version: EntryPointVersion,
        overrides: &StateOverride,
    ) -> Result<GasEstimate, ValidationError> {
        let has_paymaster = op.paymasterAndData.len() >= PAYMASTER_DATA_OFFSET;
        let paymaster_address = op.paymasterAndData.get(..20).map(Address::from_slice);
        let pm_cap = has_paymaster.then_some(SEARCH_CAP);
        let validates = |vgl: u64, pm: Option<u64>| {
            let data: Bytes = simulateValidationCall { userOp: with_limits(op, vgl, 0, pm) }.abi_encode().into();
            async move {
                let (_, run, _) = self.run(version, data, overrides.clone(), None).await?;
                Ok::<_, ValidationError>(match run.result {
                    ExecutionResult::Success { .. } => Ok(()),
                    ExecutionResult::Revert { output, .. } => Err(revert_error(&output, paymaster_address)),
                    ExecutionResult::Halt { reason, .. } => Err(ValidationError::new(
                        RpcErrorCode::EntryPointRejected,
                        format!("simulateValidation halted: {reason:?}"),
                    )),
                })
            }
        };
        let verification = min_passing(|g| validates(g, pm_cap)).await?;
        let paymaster = match pm_cap {
            Some(_) => Some(min_passing(|g| validates(verification, Some(g))).await?),
            None => None,
        };

        let executes = |cgl: u64| {
            let op = with_limits(op, verification, cgl, paymaster);
            let data: Bytes =
                simulateHandleOpCall { op, target: Address::ZERO, targetCallData: Bytes::new() }.abi_encode().into();
            async move {
                let (_, run, _) = self.run(version, data, overrides.clone(), None).await?;
                Ok::<_, ValidationError>(match run.result {
                    ExecutionResult::Success { logs, .. } => {
                        let event = logs.iter().find_map(|l| UserOperationEvent::decode_log_data(&l.data).ok());
                        match event {
                            Some(e) if e.success => Ok(()),
                            _ => {
                                let reason = logs
                                    .iter()
                                    .find_map(|l| UserOperationRevertReason::decode_log_data(&l.data).ok())
                                    .map(|r| r.revertReason.to_string())
                                    .unwrap_or_else(|| "no revert data".to_owned());
                                Err(ValidationError::new(
                                    RpcErrorCode::ExecutionReverted,
                                    format!("the operation's call reverted: {reason}"),
                                ))
                            }
                        }
                    }
                    ExecutionResult::Revert { output, .. } => Err(revert_error(&output, paymaster_address)),
                    ExecutionResult::Halt { reason, .. } => Err(ValidationError::new(
                        RpcErrorCode::EntryPointRejected,
                        format!("simulateHandleOp halted: {reason:?}"),
                    )),
                })
            }
        };
        let call = min_passing(executes).await?;
        let estimated = with_limits(op, verification, call, paymaster);
        let post_op = has_paymaster.then(|| U256::from_be_slice(&op.paymasterAndData[36..PAYMASTER_DATA_OFFSET]));
        Ok(GasEstimate {
            pre_verification_gas: U256::from(pre_verification_gas(&estimated)),
            verification_gas_limit: U256::from(verification),
            call_gas_limit: U256::from(call),
            paymaster_verification_gas_limit: paymaster.map(U256::from),
            paymaster_post_op_gas_limit: post_op,
        })
    }
}

#[async_trait::async_trait]
impl EstimateGas for Simulator {
    async fn estimate(
        &self,
        op: &UserOperation,
        entry_point: EntryPointVersion,
        state_override: Option<&StateOverride>,
    ) -> Result<GasEstimate, ValidationError> {
        let packed = op.pack().map_err(|e| ValidationError::new(RpcErrorCode::InvalidParams, e.to_string()))?;
        self.estimate_gas(&packed, entry_point, state_override.unwrap_or(&StateOverride::default())).await
    }
}

/// The smallest gas value in `[0, SEARCH_CAP]` (within [`TOLERANCE`]) for which `pass` succeeds; the
/// error of the run at the cap when even that fails.
async fn min_passing<F, Fut>(mut pass: F) -> Result<u64, ValidationError>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<Result<(), ValidationError>, ValidationError>>,
{
    pass(SEARCH_CAP).await??;
    let (mut lo, mut hi) = (0u64, SEARCH_CAP);
    while hi - lo > TOLERANCE {
        let mid = lo + (hi - lo) / 2;
        if pass(mid).await?.is_ok() { hi = mid } else { lo = mid }
    }
    Ok(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_verification_gas_counts_calldata() {
        let empty = pre_verification_gas(&PackedUserOperation::default());
        let op = PackedUserOperation { signature: Bytes::from(vec![1u8; 65]), ..Default::default() };
        let signed = pre_verification_gas(&op);
        // 65 non-zero bytes replace zeros (and add words): at least 65 * 12 more.
        assert!(signed >= empty + 65 * 12, "{empty} {signed}");
        assert!(empty > FIXED_OVERHEAD + PER_OP_OVERHEAD);
    }
}
