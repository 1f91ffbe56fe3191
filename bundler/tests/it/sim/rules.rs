//! One rule-test contract per ERC-7562 rule: the rule rejects it with the right code and rule id, and a
//! trusted entity passes.

use alloy::primitives::{Address, U256};
use custody_bundler::sim::SimConfig;
use custody_bundler::validation::{RpcErrorCode, Validate, ValidationError};
use custody_contracts::{EntryPointVersion, UserOperation};

use crate::sim::setup::{Env, env, random_address};

/// What the helper argument of a rule-test account points at.
#[derive(Clone, Copy, Debug)]
enum Helper {
    None,
    Store,
    Codeless,
    /// Code that is one unassigned opcode (0x0c).
    Unassigned,
}

async fn helper(env: &Env, helper: Helper) -> Address {
    match helper {
        Helper::None => Address::ZERO,
        Helper::Store => env.install("RuleStore").await,
        Helper::Codeless => random_address(),
        Helper::Unassigned => {
            let address = random_address();
            env.chain.set_code(address, alloy::primitives::Bytes::from_static(&[0x0c])).await.expect("setCode");
            address
        }
    }
}

/// Asserts `e` is a refusal under ERC-7562 `rule` with `code`, naming the rule.
pub(crate) fn assert_rule(e: &ValidationError, code: RpcErrorCode, rule: &str, context: &str) {
    assert_eq!(e.code, code, "{context}: {e}");
    let data = e.data.as_ref().expect("rule errors carry data");
    assert_eq!(data["rule"], rule, "{context}: {e}");
    assert!(e.message.contains(rule), "{context}: the message names the rule: {e}");
    if code == RpcErrorCode::StakeTooLow {
        let entity = data["entity"].as_str().expect("the entity");
        assert!(data[entity].is_string(), "{context}: ERC-7769 -32505 data names the {entity}: {data}");
        assert!(data["minimumStake"].is_string() && data["minimumUnstakeDelay"].is_string(), "{context}: {data}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_rule_rejects_its_contract_and_a_trusted_sender_passes() {
    let env = env().await;
    let cases = [
        ("TimestampAccount", Helper::None, RpcErrorCode::BannedOpcode, "OP-011"),
        ("GasAccount", Helper::None, RpcErrorCode::BannedOpcode, "OP-012"),
        ("UnassignedOpcodeAccount", Helper::Unassigned, RpcErrorCode::BannedOpcode, "OP-013"),
        ("OutOfGasAccount", Helper::Store, RpcErrorCode::BannedOpcode, "OP-020"),
        ("Create2Account", Helper::None, RpcErrorCode::BannedOpcode, "OP-031"),
        ("CodelessCallAccount", Helper::Codeless, RpcErrorCode::BannedOpcode, "OP-041"),
        ("ExtCodeAccount", Helper::Codeless, RpcErrorCode::BannedOpcode, "OP-041"),
        ("EntryPointCallAccount", Helper::None, RpcErrorCode::BannedOpcode, "OP-054"),
        ("EntryPointDelegateAccount", Helper::None, RpcErrorCode::BannedOpcode, "OP-054"),
        ("EntryPointCallCodeAccount", Helper::None, RpcErrorCode::BannedOpcode, "OP-054"),
        ("EntryPointCodeSizeAccount", Helper::None, RpcErrorCode::BannedOpcode, "OP-054"),
        ("SenderCreatorCallAccount", Helper::None, RpcErrorCode::BannedOpcode, "OP-054"),
        ("ValueCallAccount", Helper::Store, RpcErrorCode::BannedOpcode, "OP-061"),
        ("BalanceAccount", Helper::Store, RpcErrorCode::StakeTooLow, "OP-080"),
        ("UnassociatedStorageAccount", Helper::Store, RpcErrorCode::StakeTooLow, "STO-033"),
    ];
    for version in EntryPointVersion::ALL {
        for (contract, h, code, rule) in cases {
            let context = format!("{version} {contract}");
            let sender = env.install(contract).await;
            env.chain.set_balance(sender, U256::from(10u64.pow(18))).await.expect("funds");
            let op = env.rule_op(sender, helper(&env, h).await);

            let e = env.simulator().validate(&op, version).await.expect_err(&context);
            assert_rule(&e, code, rule, &context);

            let mut config = env.config();
            config.trusted.senders.insert(sender);
            let trusted = env.simulator_with(config).validate(&op, version).await;
            assert!(trusted.is_ok(), "{context}: a trusted sender skips the rules: {trusted:?}");
        }
    }
}

/// OP-051: `EXTCODESIZE` of the EntryPoint then `ISZERO`, the existence check before `depositTo`.
#[tokio::test(flavor = "multi_thread")]
async fn an_existence_check_of_the_entry_point_is_allowed() {
    let env = env().await;
    let sender = env.install("EntryPointExistsAccount").await;
    for version in EntryPointVersion::ALL {
        env.simulator().validate(&env.rule_op(sender, Address::ZERO), version).await.expect("OP-051");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn associated_storage_of_a_deployed_sender_is_allowed() {
    let env = env().await;
    let sender = env.install("AssociatedStorageAccount").await;
    let store = env.install("RuleStore").await;
    for version in EntryPointVersion::ALL {
        let validated = env.simulator().validate(&env.rule_op(sender, store), version).await.expect("STO-021");
        assert!(validated.accessed_addresses.contains(&store));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paymaster_breaking_a_rule_is_blamed_and_a_trusted_one_passes() {
    let env = env().await;
    let sender = env.install("ValidAccount").await;
    let paymaster = env.install("TimestampPaymaster").await;
    for version in EntryPointVersion::ALL {
        let op = UserOperation {
            sender,
            call_gas_limit: U256::from(100_000),
            verification_gas_limit: U256::from(200_000),
            pre_verification_gas: U256::from(50_000),
            paymaster: Some(paymaster),
            paymaster_verification_gas_limit: Some(U256::from(100_000)),
            paymaster_post_op_gas_limit: Some(U256::ZERO),
            ..Default::default()
        }
        .pack()
        .expect("packs");
        let e = env.simulator().validate(&op, version).await.expect_err("paymaster reads TIMESTAMP");
        assert_rule(&e, RpcErrorCode::BannedOpcode, "OP-011", version.as_str());
        assert_eq!(e.data.as_ref().expect("data")["entity"], "paymaster");

        let mut config: SimConfig = env.config();
        config.trusted.paymasters.insert(paymaster);
        let validated = env.simulator_with(config).validate(&op, version).await.expect("trusted paymaster");
        assert_eq!(validated.paymaster.map(|p| p.address), Some(paymaster));
    }
}
