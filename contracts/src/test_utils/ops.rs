//! UserOperations for tests: build one for a Peruri account, submit bundles, read the event. One copy
//! for the contracts', the simulator's and the bundler's tests.

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, Bytes, U256};
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolEvent;

use super::LocalChain;
use crate::{Deployment, EntryPointVersion, IEntryPoint, PackedUserOperation, UserOperation, account};

/// A fresh random address.
pub fn random_address() -> Address {
    Address::from(rand::random::<[u8; 20]>())
}

/// The counterfactual Peruri account of `owner` (salt 0) in `deployment`.
pub fn peruri_account(deployment: &Deployment, version: EntryPointVersion, owner: Address) -> Address {
    let c = &deployment.contracts;
    account::account_address(c.account_factory(version), c.account_implementation(version), owner, U256::ZERO)
}

/// An unsigned zero-fee operation of `sender` at `nonce` calling `call_data`, with gas limits that fit
/// a Peruri account; with `deploy_for`, its initCode deploys the Peruri account of that owner first.
pub fn user_op(
    deployment: &Deployment,
    version: EntryPointVersion,
    sender: Address,
    nonce: U256,
    deploy_for: Option<Address>,
    call_data: Bytes,
) -> UserOperation {
    UserOperation {
        sender,
        nonce,
        factory: deploy_for.map(|_| deployment.contracts.account_factory(version)),
        factory_data: deploy_for.map(|owner| account::factory_data(owner, U256::ZERO)),
        call_data,
        call_gas_limit: U256::from(200_000),
        verification_gas_limit: U256::from(400_000),
        pre_verification_gas: U256::from(50_000),
        ..Default::default()
    }
}

/// The UserOperationEvent of a receipt.
pub fn user_op_event(receipt: &TransactionReceipt) -> IEntryPoint::UserOperationEvent {
    receipt
        .inner
        .logs()
        .iter()
        .find_map(|log| IEntryPoint::UserOperationEvent::decode_log_data(log.data()).ok())
        .expect("UserOperationEvent emitted")
}

impl LocalChain {
    /// Sends `ops` through the `version` EntryPoint in one `handleOps` from `from` (also the beneficiary):
    /// the successful receipt, or the reason of the EntryPoint's `FailedOp` / `FailedOpWithRevert`.
    pub async fn handle_ops(
        &self,
        version: EntryPointVersion,
        ops: Vec<PackedUserOperation>,
        from: &PrivateKeySigner,
    ) -> Result<TransactionReceipt, String> {
        let provider = self.provider_with(EthereumWallet::from(from.clone()));
        match IEntryPoint::new(version.address(), provider).handleOps(ops, from.address()).send().await {
            Ok(pending) => {
                let receipt = pending.get_receipt().await.expect("receipt");
                assert!(receipt.status(), "handleOps succeeded");
                Ok(receipt)
            }
            Err(e) => {
                if let Some(failed) = e.as_decoded_error::<IEntryPoint::FailedOp>() {
                    Err(failed.reason)
                } else if let Some(failed) = e.as_decoded_error::<IEntryPoint::FailedOpWithRevert>() {
                    Err(format!("{} ({})", failed.reason, failed.inner))
                } else {
                    panic!("handleOps failed without FailedOp: {e}")
                }
            }
        }
    }
}
