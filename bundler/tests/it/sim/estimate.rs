//! Gas estimation against handleOps on the local chain: the estimates cover what the operation really
//! uses and stay within 15% of it.

use alloy::primitives::{Bytes, U256};
use alloy::rpc::types::state::StateOverride;
use alloy::signers::local::PrivateKeySigner;
use custody_contracts::{EntryPointVersion, UserOperation, account};

use crate::sim::setup::{env, random_address, user_op_event};

#[tokio::test(flavor = "multi_thread")]
async fn estimates_cover_actual_use_within_15_percent() {
    let env = env().await;
    let sim = env.simulator();
    for version in EntryPointVersion::ALL {
        let owner = PrivateKeySigner::random();
        let sender = env.account_address(version, owner.address());
        env.chain.set_balance(sender, U256::from(10)).await.expect("funds");
        let call = account::execute(random_address(), U256::from(1), Bytes::new());
        let draft = env.op(version, sender, Some(owner.address()), call).await;
        // Estimate with a well-formed signature by another key: validation returns SIG_VALIDATION_FAILED
        // instead of reverting, and costs what the real signature will.
        let dummy = env.sign(version, &draft, &PrivateKeySigner::random());
        let estimate = sim.estimate_gas(&dummy, version, &StateOverride::default()).await.expect("estimates");

        let op = UserOperation {
            call_gas_limit: estimate.call_gas_limit,
            verification_gas_limit: estimate.verification_gas_limit,
            pre_verification_gas: estimate.pre_verification_gas,
            ..draft
        };
        let op = env.sign(version, &op, &owner);
        let receipt = env.handle_ops(version, vec![op]).await;
        let event = user_op_event(&receipt);
        assert!(event.success, "{version}: the op runs with the estimated limits");

        let limits: u64 =
            (estimate.pre_verification_gas + estimate.verification_gas_limit + estimate.call_gas_limit).to();
        let used = receipt.gas_used;
        tracing::info!(%version, limits, used, op_gas = %event.actualGasUsed, "estimate vs actual");
        assert!(limits >= used, "{version}: estimate {limits} covers the bundle's {used} gas");
        let op_gas: u64 = event.actualGasUsed.to();
        assert!(limits >= op_gas, "{version}: estimate {limits} covers the op's actualGasUsed {op_gas}");
        assert!(limits * 100 <= used * 115, "{version}: estimate {limits} within 15% of {used} ({estimate:?})");
    }
}
