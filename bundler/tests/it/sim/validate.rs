//! Validation of real accounts, and the rejections a developer sees most.

use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use custody_bundler::sim::Simulator;
use custody_bundler::validation::{Entity, RpcErrorCode, Validate};
use custody_contracts::bindings::simple_account_factory_v07::SimpleAccountFactory as SimpleFactoryV07;
use custody_contracts::bindings::simple_account_factory_v08::SimpleAccountFactory as SimpleFactoryV08;
use custody_contracts::{EntryPointVersion, UserOperation, account};

use crate::sim::setup::{env, random_address, user_op_event};

#[tokio::test(flavor = "multi_thread")]
async fn a_peruri_account_with_init_code_validates_and_then_lands_on_chain() {
    let env = env().await;
    // The Peruri factories deploy with OpenZeppelin Clones, which reads SELFBALANCE: ERC-7562 allows
    // that to staked factories only (OP-080), so an operator either stakes them or trusts them.
    let mut config = env.config();
    config.trusted.factories.extend(EntryPointVersion::ALL.map(|v| env.deployment.contracts.account_factory(v)));
    let sim = env.simulator_with(config);
    for version in EntryPointVersion::ALL {
        let owner = PrivateKeySigner::random();
        let sender = env.account_address(version, owner.address());
        let call = account::execute(random_address(), U256::ZERO, Bytes::new());
        let op = env.sign(version, &env.op(version, sender, Some(owner.address()), call).await, &owner);

        let unstaked = env.simulator().validate(&op, version).await.expect_err("unstaked, untrusted factory");
        assert_eq!(unstaked.code, RpcErrorCode::StakeTooLow, "{version}: {unstaked}");
        assert!(unstaked.message.contains("OP-080") && unstaked.message.contains("factory"), "{unstaked}");

        let validated = sim.validate(&op, version).await.expect("validates");
        assert_eq!(validated.entry_point, version);
        assert_eq!(validated.user_op_hash, op.hash(version, version.address(), env.chain.chain_id()));
        assert_eq!(validated.prefund, U256::ZERO, "{version}: zero-fee chain, zero prefund");
        assert_eq!(validated.valid_until, u64::MAX);
        let factory = env.deployment.contracts.account_factory(version);
        assert_eq!(validated.factory.map(|f| f.address), Some(factory));
        assert!(validated.staked.contains(&(Entity::Factory, false)));
        let hashed: Vec<Address> = validated.code_hashes.iter().map(|(a, _)| *a).collect();
        assert!(hashed.contains(&factory), "{version}: factory code hash kept: {hashed:?}");
        assert!(hashed.contains(&env.deployment.contracts.account_implementation(version)), "{version}: {hashed:?}");
        assert!(!hashed.contains(&sender), "{version}: the sender is created in validation, not hashed");
        assert!(validated.validation_gas_used > 0);
        sim.check_code_hashes(&validated).await.expect("code unchanged");

        let receipt = env.handle_ops(version, vec![op.clone()]).await;
        assert!(user_op_event(&receipt).success, "{version}: the validated op executes");
        // The same op again: the state cache saw the new block, the nonce moved on.
        let again = sim.validate(&op, version).await.expect_err("replayed op rejected");
        assert_eq!(again.code, RpcErrorCode::EntryPointRejected, "{version}: {again}");
        assert!(again.message.starts_with("AA10") || again.message.starts_with("AA25"), "{version}: {again}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_eth_infinitism_simple_account_with_init_code_validates() {
    let env = env().await;
    let sim = env.simulator();
    for version in EntryPointVersion::ALL {
        let owner = PrivateKeySigner::random();
        let (factory, sender, factory_data) = match version {
            EntryPointVersion::V07 => {
                let f = SimpleFactoryV07::deploy(env.provider.clone(), version.address()).await.expect("deploys");
                let sender = f.getAddress(owner.address(), U256::ZERO).call().await.expect("getAddress");
                let data =
                    SimpleFactoryV07::createAccountCall { owner: owner.address(), salt: U256::ZERO }.abi_encode();
                (*f.address(), sender, data)
            }
            EntryPointVersion::V08 => {
                let f = SimpleFactoryV08::deploy(env.provider.clone(), version.address()).await.expect("deploys");
                let sender = f.getAddress(owner.address(), U256::ZERO).call().await.expect("getAddress");
                let data =
                    SimpleFactoryV08::createAccountCall { owner: owner.address(), salt: U256::ZERO }.abi_encode();
                (*f.address(), sender, data)
            }
        };
        let op = UserOperation {
            sender,
            factory: Some(factory),
            factory_data: Some(factory_data.into()),
            call_gas_limit: U256::from(100_000),
            verification_gas_limit: U256::from(500_000),
            pre_verification_gas: U256::from(50_000),
            ..Default::default()
        };
        let op = env.sign(version, &op, &owner);
        let validated = sim.validate(&op, version).await.unwrap_or_else(|e| panic!("{version}: {e} {:?}", e.data));
        assert_eq!(validated.factory.map(|f| f.address), Some(factory));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_signature_bad_nonce_and_expired_range_get_their_codes() {
    let env = env().await;
    let sim = env.simulator();
    for version in EntryPointVersion::ALL {
        let owner = PrivateKeySigner::random();
        let sender = env.account_address(version, owner.address());
        let op = env.op(version, sender, Some(owner.address()), Bytes::new()).await;

        let forged = env.sign(version, &op, &PrivateKeySigner::random());
        let e = sim.validate(&forged, version).await.expect_err("wrong key");
        assert_eq!(e.code, RpcErrorCode::InvalidSignature, "{version}: {e}");
        assert_eq!(e.code.code(), -32507);

        let wrong_nonce = env.sign(version, &UserOperation { nonce: U256::from(7), ..op.clone() }, &owner);
        let e = sim.validate(&wrong_nonce, version).await.expect_err("wrong nonce");
        assert_eq!(e.code, RpcErrorCode::EntryPointRejected, "{version}: {e}");
        assert!(e.message.contains("AA25") && e.message.contains("getNonce"), "{version}: {e}");

        let expired = env.install("ExpiredAccount").await;
        let e = sim.validate(&env.rule_op(expired, Address::ZERO), version).await.expect_err("expired");
        assert_eq!(e.code, RpcErrorCode::ShortDeadline, "{version}: {e}");
        assert_eq!(e.code.code(), -32503);
    }
}

/// `op` sponsored by Peruri's paymaster for `[valid_after, valid_until]`, signed by the paymaster's
/// signer (dev account 0, the deployment's operator) and then by `owner`.
fn sponsored(
    env: &crate::sim::setup::Env,
    version: EntryPointVersion,
    op: &UserOperation,
    owner: &PrivateKeySigner,
    valid_until: u64,
    valid_after: u64,
) -> custody_contracts::PackedUserOperation {
    use alloy::signers::SignerSync;
    let s = custody_contracts::sponsorship::Sponsorship {
        paymaster: env.deployment.contracts.paymaster(version),
        verification_gas_limit: 100_000,
        post_op_gas_limit: 0,
        valid_until,
        valid_after,
    };
    let mut op = UserOperation {
        paymaster: Some(s.paymaster),
        paymaster_verification_gas_limit: Some(U256::from(s.verification_gas_limit)),
        paymaster_post_op_gas_limit: Some(U256::from(s.post_op_gas_limit)),
        paymaster_data: Some(Bytes::new()),
        ..op.clone()
    };
    let digest = s.signing_digest(&op.pack().expect("packs"), env.chain.chain_id());
    let signature = env.chain.dev_accounts()[0].sign_hash_sync(&digest).expect("signs").as_bytes();
    op.paymaster_data =
        Some(s.paymaster_and_data(&signature).slice(custody_contracts::userop::PAYMASTER_DATA_OFFSET..));
    env.sign(version, &op, owner)
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_or_not_yet_valid_paymaster_data_gets_32503() {
    let env = env().await;
    // Peruri's paymaster reads its own storage (its signers): allowed, since it is staked at deployment.
    let mut config = env.config();
    let c = &env.deployment.contracts;
    config.trusted.factories.extend(EntryPointVersion::ALL.map(|v| c.account_factory(v)));
    let sim = env.simulator_with(config);
    let now = env.provider.get_block_by_number(Default::default()).await.expect("rpc").expect("block").header.timestamp;
    for version in EntryPointVersion::ALL {
        let owner = PrivateKeySigner::random();
        let sender = env.account_address(version, owner.address());
        let op = env.op(version, sender, Some(owner.address()), Bytes::new()).await;

        let valid = sim.validate(&sponsored(&env, version, &op, &owner, now + 3600, 0), version).await;
        let valid = valid.expect("a current sponsorship validates");
        assert_eq!(valid.valid_until, now + 3600, "{version}");
        assert_eq!(valid.paymaster.map(|p| p.address), Some(env.deployment.contracts.paymaster(version)));

        let expired = sim.validate(&sponsored(&env, version, &op, &owner, now - 1, 0), version).await;
        let e = expired.expect_err("an expired sponsorship");
        assert_eq!(e.code, RpcErrorCode::ShortDeadline, "{version}: {e}");
        assert_eq!(e.code.code(), -32503);
        assert!(e.message.contains("validUntil"), "{version}: {e}");

        let early = sim.validate(&sponsored(&env, version, &op, &owner, now + 3600, now + 600), version).await;
        let e = early.expect_err("a sponsorship valid only later");
        assert_eq!(e.code, RpcErrorCode::ShortDeadline, "{version}: {e}");
        assert!(e.message.contains("validAfter"), "{version}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_state_cache_follows_new_blocks() {
    let env = env().await;
    let sim: Simulator = env.simulator();
    let version = EntryPointVersion::V07;
    let sender = env.install("ValidAccount").await;
    let op = env.rule_op(sender, Address::ZERO);
    let first = sim.validate(&op, version).await.expect("validates");
    // Replace the account's code: the next block must be read afresh.
    env.chain.set_code(sender, crate::rule_contracts::code("TimestampAccount")).await.expect("setCode");
    // A transaction mines a block (automine).
    let tx = alloy::rpc::types::TransactionRequest::default().to(random_address()).value(U256::from(1));
    env.provider.send_transaction(tx).await.expect("sent").get_receipt().await.expect("mined");
    let e = sim.validate(&op, version).await.expect_err("new code breaks a rule");
    assert_eq!(e.code, RpcErrorCode::BannedOpcode, "{e}");
    let block = env.provider.get_block_number().await.expect("block number");
    assert!(block > first.block_number);
    let changed = sim.check_code_hashes(&first).await.expect_err("code hash changed");
    assert!(changed.message.contains("COD-010"), "{changed}");
}
