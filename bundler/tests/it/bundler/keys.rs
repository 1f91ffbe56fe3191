//! Several bundler keys send in parallel, each with its own nonce.

use std::collections::HashSet;

use alloy::primitives::{Address, Bytes, U256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use custody_bundler::{Bundler, BundlingMode};
use custody_contracts::userop::signing_digest;
use custody_contracts::{EntryPointVersion, account};
use custody_db::test_utils::Engine;
use custody_signer::KeyClass;
use serde_json::json;

use super::setup::{Builder, env, send, wait_receipt};
use custody_contracts::test_utils::random_address;

#[tokio::test]
async fn two_hsm_keys_share_the_mempool() {
    let env = env(Engine::Sqlite).await;
    env.keys.keyring.create_infra("bundler-2").await.expect("second key");
    let second = env.keys.keyring.signer(KeyClass::Infra, "bundler-2").await.expect("signer");
    env.chain.set_balance(second.address(), U256::from(10u64.pow(18))).await.expect("fund");
    let keys: HashSet<Address> = [env.bundler_key.address(), second.address()].into();

    let mut config = env.config(BundlingMode::Auto);
    config.keys = vec!["bundler".into(), "bundler-2".into()];
    config.max_bundle_ops = 1;
    let validator = env.validator();
    let signers = Bundler::signers_from_keyring(&env.keys.keyring, &config).await.expect("signers");
    let bundler = Bundler::new(config, env.keys.db.pool().await, signers, env.provider.clone(), validator, None)
        .await
        .expect("bundler");
    assert_eq!(bundler.key_addresses().into_iter().collect::<HashSet<_>>(), keys);

    let version = EntryPointVersion::V08;
    let mut hashes = Vec::new();
    for _ in 0..6 {
        let owner = PrivateKeySigner::random();
        let op =
            env.peruri_op(version, owner.address(), 0, account::execute(random_address(), U256::ZERO, Bytes::new()));
        let mut op = op.await;
        let hash = op.hash(version, version.address(), env.chain.chain_id()).expect("hash");
        let signature = owner.sign_hash_sync(&signing_digest(version, hash)).expect("sign");
        op.signature = Bytes::from(signature.as_bytes().to_vec());
        hashes.push(send(&bundler, version, &op).await);
    }
    let builder = Builder::start(&bundler);
    let mut senders = HashSet::new();
    let mut txs = HashSet::new();
    for hash in hashes {
        let receipt = wait_receipt(&bundler, hash).await;
        assert_eq!(receipt["success"], json!(true));
        senders.insert(serde_json::from_value::<Address>(receipt["receipt"]["from"].clone()).expect("from"));
        txs.insert(receipt["receipt"]["transactionHash"].clone());
    }
    assert_eq!(txs.len(), 6, "one operation per bundle");
    assert_eq!(senders, keys, "both keys sent bundles");
    builder.stop().await;
}
