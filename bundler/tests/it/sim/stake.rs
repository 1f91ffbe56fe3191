//! Staked entities (ERC-7562): rule-test entities stake on the EntryPoint for real (`addStake` from the
//! entity's own contract, at exactly the simulator's `min_stake` and `min_unstake_delay`) and may then do
//! what the rules refuse the same contract unstaked; a stake or a delay one below the minimum counts as
//! no stake.

use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolValue;
use custody_bundler::validation::{Entity, RpcErrorCode, StakeInfo, Validate, ValidatedOp, ValidationError};
use custody_contracts::{EntryPointVersion, PackedUserOperation, UserOperation};

use crate::rule_contracts::{Probe, deployed_by, op_of, sponsored, stake};

/// The paymaster validation function's signature.
const VALIDATE_PAYMASTER_USER_OP: &str =
    "validatePaymasterUserOp((address,uint256,bytes,bytes,bytes32,uint256,bytes32,bytes,bytes),bytes32,uint256)";
use crate::sim::rules::assert_rule;
use crate::sim::setup::{Env, env};

fn pack(op: UserOperation) -> PackedUserOperation {
    op.pack().expect("packs")
}

/// Asserts validation saw `entity` at `address` staked with exactly the simulator's minimums.
fn assert_staked(env: &Env, v: &ValidatedOp, entity: Entity, address: Address, context: &str) {
    let config = env.config();
    let expected = StakeInfo { address, stake: config.min_stake, unstake_delay_sec: config.min_unstake_delay };
    let info = match entity {
        Entity::Sender => Some(v.sender),
        Entity::Factory => v.factory,
        Entity::Paymaster => v.paymaster,
        Entity::Aggregator => None,
    };
    assert_eq!(info, Some(expected), "{context}: the EntryPoint's stake info");
    assert!(v.staked.contains(&(entity, true)), "{context}: counted as staked: {:?}", v.staked);
}

fn assert_entity(e: &ValidationError, entity: &str, context: &str) {
    assert_eq!(e.data.as_ref().expect("rule data")["entity"], entity, "{context}: {e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_staked_paymaster_may_use_its_storage_its_balance_and_read_other_storage() {
    let env = env().await;
    let cases = [
        (Probe::OwnStorage, "STO-031"),
        (Probe::OwnTransientStorage, "STO-031"),
        (Probe::Balance, "OP-080"),
        (Probe::WriteOwnAssociated, "STO-032"),
        (Probe::ReadExternal, "STO-033"),
    ];
    for version in EntryPointVersion::ALL {
        let sender = env.install("ValidAccount").await;
        let store = env.install("RuleStore").await;
        let unstaked = env.install("RulePaymaster").await;
        let staked = env.install_staked(version, "RulePaymaster").await;
        let sim = env.simulator();
        let op = |paymaster, probe| pack(sponsored(op_of(sender, Address::ZERO), paymaster, probe, store));
        sim.validate(&op(unstaked, Probe::None), version).await.expect("an unstaked paymaster breaking no rule");

        for (probe, rule) in cases {
            let context = format!("{version} {probe:?}");
            let e = sim.validate(&op(unstaked, probe), version).await.expect_err(&context);
            assert_rule(&e, RpcErrorCode::StakeTooLow, rule, &context);
            assert_entity(&e, "paymaster", &context);
            let v = sim.validate(&op(staked, probe), version).await.expect(&context);
            assert_staked(&env, &v, Entity::Paymaster, staked, &context);
        }
        // STO-033 lets a staked entity read, not write, storage not associated with it.
        let e = sim.validate(&op(staked, Probe::WriteExternal), version).await.expect_err("write");
        assert_rule(&e, RpcErrorCode::BannedOpcode, "STO-033", version.as_str());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_staked_factory_may_use_its_storage_and_lets_its_new_account_use_associated_storage() {
    let env = env().await;
    for version in EntryPointVersion::ALL {
        let store = env.install("RuleStore").await;
        let unstaked = env.install("RuleFactory").await;
        let staked = env.install_staked(version, "RuleFactory").await;
        let sim = env.simulator();
        let op =
            |factory, associated, count| pack(deployed_by(op_of(Address::ZERO, store), factory, associated, count));
        sim.validate(&op(unstaked, false, false), version).await.expect("an unstaked factory breaking no rule");

        // STO-031: the factory counts the accounts it creates in its own storage.
        let context = format!("{version} factory storage");
        let e = sim.validate(&op(unstaked, false, true), version).await.expect_err(&context);
        assert_rule(&e, RpcErrorCode::StakeTooLow, "STO-031", &context);
        assert_entity(&e, "factory", &context);
        let v = sim.validate(&op(staked, false, true), version).await.expect(&context);
        assert_staked(&env, &v, Entity::Factory, staked, &context);

        // STO-022: the account being deployed reads its entry in RuleStore's mapping.
        let context = format!("{version} new account's associated storage");
        let e = sim.validate(&op(unstaked, true, false), version).await.expect_err(&context);
        assert_rule(&e, RpcErrorCode::StakeTooLow, "STO-022", &context);
        assert_entity(&e, "sender", &context);
        let v = sim.validate(&op(staked, true, false), version).await.expect(&context);
        assert_staked(&env, &v, Entity::Factory, staked, &context);
        assert!(v.accessed_addresses.contains(&store), "{context}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_staked_sender_may_use_balance_and_read_other_storage() {
    let env = env().await;
    for version in EntryPointVersion::ALL {
        let store = env.install("RuleStore").await;
        for (contract, rule) in [("BalanceAccount", "OP-080"), ("UnassociatedStorageAccount", "STO-033")] {
            let context = format!("{version} {contract}");
            let unstaked = env.install(contract).await;
            let staked = env.install_staked(version, contract).await;
            let sim = env.simulator();
            let e = sim.validate(&pack(op_of(unstaked, store)), version).await.expect_err(&context);
            assert_rule(&e, RpcErrorCode::StakeTooLow, rule, &context);
            let v = sim.validate(&pack(op_of(staked, store)), version).await.expect(&context);
            assert_staked(&env, &v, Entity::Sender, staked, &context);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_staked_paymaster_may_read_the_storage_of_a_sender_being_deployed() {
    let env = env().await;
    for version in EntryPointVersion::ALL {
        let context = version.as_str();
        let store = env.install("RuleStore").await;
        let factory = env.install("RuleFactory").await;
        let unstaked = env.install("RulePaymaster").await;
        let staked = env.install_staked(version, "RulePaymaster").await;
        let sim = env.simulator();
        let op = |paymaster| {
            let new_account = deployed_by(op_of(Address::ZERO, Address::ZERO), factory, false, false);
            pack(sponsored(new_account, paymaster, Probe::ReadSenderAssociated, store))
        };
        // An unstaked factory does not vouch for the new account's storage (STO-022)...
        let e = sim.validate(&op(unstaked), version).await.expect_err(context);
        assert_rule(&e, RpcErrorCode::StakeTooLow, "STO-022", context);
        assert_entity(&e, "paymaster", context);
        // ...but a staked paymaster may read any storage of a non-entity contract (STO-033).
        let v = sim.validate(&op(staked), version).await.expect(context);
        assert_staked(&env, &v, Entity::Paymaster, staked, context);
        assert!(v.staked.contains(&(Entity::Factory, false)), "{context}: the factory is unstaked");
    }
}

/// EREP-050: an unstaked paymaster may not return a context; a staked one may.
#[tokio::test(flavor = "multi_thread")]
async fn a_paymaster_returning_a_context_needs_a_stake() {
    let env = env().await;
    for version in EntryPointVersion::ALL {
        let sender = env.install("ValidAccount").await;
        let paymaster = env.install("RulePaymaster").await;
        let op = pack(sponsored(op_of(sender, Address::ZERO), paymaster, Probe::Context, Address::ZERO));
        // The paymaster does return a context: ask it directly, as the EntryPoint would.
        let args = (op.clone(), B256::ZERO, U256::ZERO).abi_encode_params();
        let call = [&keccak256(VALIDATE_PAYMASTER_USER_OP)[..4], &args].concat();
        let request = TransactionRequest::default().from(version.address()).to(paymaster).input(call.into());
        let returned = env.provider.call(request).await.expect("validatePaymasterUserOp");
        let (context, _) = <(Bytes, U256)>::abi_decode_params(&returned).expect("decodes");
        assert_eq!(context, Bytes::from(sender.abi_encode()), "{version}: the context");

        let e = env.simulator().validate(&op, version).await.expect_err("an unstaked paymaster's context");
        assert_rule(&e, RpcErrorCode::BannedOpcode, "EREP-050", version.as_str());

        let staked = env.install_staked(version, "RulePaymaster").await;
        let op = pack(sponsored(op_of(sender, Address::ZERO), staked, Probe::Context, Address::ZERO));
        let v = env.simulator().validate(&op, version).await.unwrap_or_else(|e| panic!("{version}: {e}"));
        assert!(v.staked.contains(&(Entity::Paymaster, true)), "{version}: the paymaster is staked");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stake_below_min_stake_value_counts_as_unstaked() {
    let env = env().await;
    let config = env.config();
    for version in EntryPointVersion::ALL {
        let store = env.install("RuleStore").await;
        let at_min = env.install_staked(version, "BalanceAccount").await;
        let below = env.install("BalanceAccount").await;
        stake(&env.chain, version, below, config.min_stake - U256::from(1), config.min_unstake_delay).await;
        let sim = env.simulator();
        let v = sim.validate(&pack(op_of(at_min, store)), version).await.expect("MIN_STAKE_VALUE is enough");
        assert_staked(&env, &v, Entity::Sender, at_min, version.as_str());
        let e = sim.validate(&pack(op_of(below, store)), version).await.expect_err("1 wei short");
        assert_rule(&e, RpcErrorCode::StakeTooLow, "OP-080", version.as_str());
        let data = e.data.expect("data");
        assert_eq!(data["sender"], serde_json::json!(below));
        assert_eq!(data["minimumStake"], serde_json::json!(config.min_stake));
        assert_eq!(data["minimumUnstakeDelay"], serde_json::json!(U256::from(config.min_unstake_delay)));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unstake_delay_below_min_unstake_delay_counts_as_unstaked() {
    let env = env().await;
    let config = env.config();
    for version in EntryPointVersion::ALL {
        let sender = env.install("ValidAccount").await;
        let at_min = env.install_staked(version, "RulePaymaster").await;
        let below = env.install("RulePaymaster").await;
        stake(&env.chain, version, below, config.min_stake, config.min_unstake_delay - 1).await;
        let sim = env.simulator();
        let op = |paymaster| pack(sponsored(op_of(sender, Address::ZERO), paymaster, Probe::OwnStorage, Address::ZERO));
        let v = sim.validate(&op(at_min), version).await.expect("MIN_UNSTAKE_DELAY is enough");
        assert_staked(&env, &v, Entity::Paymaster, at_min, version.as_str());
        let e = sim.validate(&op(below), version).await.expect_err("1 s short");
        assert_rule(&e, RpcErrorCode::StakeTooLow, "STO-031", version.as_str());
    }
}
