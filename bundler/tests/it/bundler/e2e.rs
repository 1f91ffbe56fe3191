//! End to end: eth_sendUserOperation → bundle signed by the HSM bundler key → receipt, for v0.7 and
//! v0.8, Peruri accounts deployed from initCode and SimpleAccount.

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::Provider;
use alloy::sol_types::SolCall;
use custody_bundler::BundlingMode;
use custody_contracts::bindings::{simple_account_factory_v07, simple_account_factory_v08};
use custody_contracts::{EntryPointVersion, UserOperation, account};
use custody_db::test_utils::Engine;
use serde_json::json;

use super::setup::{Builder, Env, env, ok, send, wait_receipt};
use custody_contracts::test_utils::random_address;

/// Deploys the SimpleAccountFactory of `version`; returns it and the counterfactual account of the
/// owner key with its createAccount calldata.
async fn simple_account(env: &Env, version: EntryPointVersion) -> (Address, Address, Bytes) {
    let dev = env.chain.provider_with(EthereumWallet::from(env.chain.dev_accounts()[0].clone()));
    let owner = env.owner.address();
    let factory = match version {
        EntryPointVersion::V07 => {
            *simple_account_factory_v07::SimpleAccountFactory::deploy(dev.clone(), version.address())
                .await
                .expect("deploy")
                .address()
        }
        EntryPointVersion::V08 => {
            *simple_account_factory_v08::SimpleAccountFactory::deploy(dev.clone(), version.address())
                .await
                .expect("deploy")
                .address()
        }
    };
    // Both versions' factories have one interface.
    let f = simple_account_factory_v07::SimpleAccountFactory::new(factory, dev);
    let sender = f.getAddress(owner, U256::ZERO).call().await.expect("getAddress");
    let data = simple_account_factory_v07::SimpleAccountFactory::createAccountCall { owner, salt: U256::ZERO };
    (factory, sender, data.abi_encode().into())
}

#[tokio::test]
async fn send_to_receipt_for_both_entry_points_and_account_kinds() {
    let env = env(Engine::Sqlite).await;
    let bundler = env.bundler(BundlingMode::Auto).await;
    let builder = Builder::start(&bundler);

    for version in EntryPointVersion::ALL {
        // A Peruri account deployed by its first operation, owned by an HSM user key.
        let recipient = random_address();
        let op = env
            .peruri_op(version, env.owner.address(), 0, account::execute(recipient, U256::from(1), Bytes::new()))
            .await;
        env.chain.set_balance(op.sender, U256::from(10)).await.expect("fund account");
        assert!(op.factory.is_some(), "the first operation deploys the account");
        let op = env.sign(version, op, &env.owner).await;
        let hash = send(&bundler, version, &op).await;
        assert_eq!(hash, op.hash(version, version.address(), env.chain.chain_id()).expect("hash"));

        let receipt = wait_receipt(&bundler, hash).await;
        assert_eq!(receipt["userOpHash"], json!(hash));
        assert_eq!(receipt["success"], json!(true), "{version}: {receipt}");
        assert_eq!(receipt["sender"], json!(op.sender));
        assert_eq!(receipt["entryPoint"], json!(version.address()));
        assert_eq!(receipt["nonce"], json!("0x0"));
        assert_eq!(receipt["paymaster"], json!(Address::ZERO));
        assert!(receipt["logs"].is_array() && receipt["actualGasUsed"].is_string());
        assert_eq!(receipt["receipt"]["from"], json!(env.bundler_key.address()), "the HSM key sent the bundle");
        assert_eq!(env.provider.get_balance(recipient).await.expect("balance"), U256::from(1));

        let by_hash = ok(&bundler, "eth_getUserOperationByHash", json!([hash])).await;
        assert_eq!(by_hash["transactionHash"], receipt["receipt"]["transactionHash"]);
        assert_eq!(by_hash["blockNumber"], receipt["receipt"]["blockNumber"]);
        assert_eq!(by_hash["entryPoint"], json!(version.address()));
        assert_eq!(by_hash["userOperation"], serde_json::to_value(&op).expect("json"));

        // A SimpleAccount from the reference implementation.
        let (factory, sender, factory_data) = simple_account(&env, version).await;
        env.chain.set_balance(sender, U256::from(10)).await.expect("fund account");
        let recipient = random_address();
        let op = UserOperation {
            sender,
            nonce: U256::ZERO,
            factory: Some(factory),
            factory_data: Some(factory_data),
            call_data: account::execute(recipient, U256::from(2), Bytes::new()),
            call_gas_limit: U256::from(200_000),
            verification_gas_limit: U256::from(600_000),
            pre_verification_gas: U256::from(50_000),
            ..Default::default()
        };
        let op = env.sign(version, op, &env.owner).await;
        let hash = send(&bundler, version, &op).await;
        let receipt = wait_receipt(&bundler, hash).await;
        assert_eq!(receipt["success"], json!(true), "{version} SimpleAccount: {receipt}");
        assert_eq!(env.provider.get_balance(recipient).await.expect("balance"), U256::from(2));
    }
    builder.stop().await;
}
