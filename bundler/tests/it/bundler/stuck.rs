//! A stuck bundle transaction: on a zero-fee chain the node lost it and the same signed transaction is
//! re-broadcast; on a chain that charges fees it is replaced with fees raised 20% (bump), and after
//! `max_bumps` bumps its nonce is cancelled by a self-transfer and its operation bundled again.

use std::time::Duration;

use alloy::consensus::Transaction as _;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::Provider;
use alloy::rpc::types::Transaction;
use custody_bundler::{Bundler, BundlerConfig, BundlingMode, OpStatus};
use custody_contracts::{EntryPointVersion, UserOperation, account};
use custody_db::test_utils::Engine;
use serde_json::{Value, json};

use super::setup::{Builder, Env, env, ok, paid_env, send, wait_receipt};
use custody_contracts::test_utils::random_address;

async fn pending_tx_hashes(provider: &alloy::providers::DynProvider) -> Vec<B256> {
    let block: Value =
        provider.raw_request("eth_getBlockByNumber".into(), json!(["pending", false])).await.expect("pending");
    serde_json::from_value(block["transactions"].clone()).expect("hashes")
}

#[tokio::test]
async fn a_lost_bundle_transaction_is_rebroadcast_when_stuck() {
    let env = env(Engine::Sqlite).await;
    let version = EntryPointVersion::V07;
    let recipient = random_address();
    let op = env.peruri_op(version, env.owner.address(), 0, account::execute(recipient, U256::from(1), Bytes::new()));
    let op = op.await;
    env.chain.set_balance(op.sender, U256::from(10)).await.expect("fund");
    let op = env.sign(version, op, &env.owner).await;

    let bundler = env.bundler(BundlingMode::Auto).await;
    let _: Value = env.provider.raw_request("evm_setAutomine".into(), json!([false])).await.expect("automine off");
    let builder = Builder::start(&bundler);
    let hash = send(&bundler, version, &op).await;

    // The bundle reaches the node's pool; the node then loses it.
    let mut lost = Vec::new();
    for _ in 0..100 {
        lost = pending_tx_hashes(&env.provider).await;
        if !lost.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lost.len(), 1, "one bundle transaction pending");
    let status = ok(&bundler, "rundler_getUserOperationStatus", json!([hash])).await;
    assert_eq!(status["status"], "pendingBundle", "{status}");
    assert_eq!(status["pendingBundle"]["txHash"], json!(lost[0]), "{status}");
    assert!(ok(&bundler, "eth_getUserOperationByHash", json!([hash])).await["blockNumber"].is_null());
    let dropped: bool =
        env.provider.raw_request("hardhat_dropTransaction".into(), json!([lost[0]])).await.expect("drop");
    assert!(dropped);
    let stuck_after = env.config(BundlingMode::Auto).stuck_after_blocks;
    let _: Value =
        env.provider.raw_request("hardhat_mine".into(), json!([format!("{stuck_after:#x}")])).await.expect("mine");

    // The tracker sees it stuck and sends the same signed transaction again.
    let mut again = Vec::new();
    for _ in 0..100 {
        again = pending_tx_hashes(&env.provider).await;
        if !again.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(again, lost, "the same transaction was re-broadcast");
    let _: Value = env.provider.raw_request("hardhat_mine".into(), json!(["0x1"])).await.expect("mine");
    let receipt = wait_receipt(&bundler, hash).await;
    assert_eq!(receipt["receipt"]["transactionHash"], json!(lost[0]));
    assert_eq!(env.provider.get_balance(recipient).await.expect("balance"), U256::from(1));
    builder.stop().await;
}

/// A signed paid-chain operation of the owner's Peruri account sending 1 wei to `recipient`, its account
/// funded for the prefund.
async fn paid_op(env: &Env, version: EntryPointVersion, recipient: Address) -> UserOperation {
    let op = env.priced_op(version, account::execute(recipient, U256::from(1), Bytes::new())).await;
    env.chain.set_balance(op.sender, U256::from(10u64.pow(18))).await.expect("fund the account");
    env.sign(version, op, &env.owner).await
}

/// Waits until the bundler has `hash` submitted in a transaction other than `not`; returns that transaction
/// as the node knows it.
async fn submitted_in(env: &Env, bundler: &Bundler, hash: B256, not: Option<B256>) -> Transaction {
    for _ in 0..100 {
        let view = bundler.user_operation(hash).await.expect("lookup").expect("known operation");
        // The builder records a transaction before it broadcasts it: wait until the node has it too.
        if let (OpStatus::Submitted, Some(tx)) = (view.status, view.tx_hash)
            && Some(tx) != not
            && let Some(tx) = env.provider.get_transaction_by_hash(tx).await.expect("lookup")
        {
            return tx;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{hash} not submitted in a new transaction within 10 s");
}

/// The one transaction in the node's pending block, once there is one.
async fn pending_tx(env: &Env) -> Transaction {
    for _ in 0..100 {
        if let [hash] = pending_tx_hashes(&env.provider).await[..] {
            return env.provider.get_transaction_by_hash(hash).await.expect("lookup").expect("pending");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no pending transaction within 10 s");
}

async fn rpc(env: &Env, method: &'static str, params: Value) {
    let _: Value = env.provider.raw_request(method.into(), params).await.expect(method);
}

/// Mines `n` blocks, the first at `base_fee` if given.
async fn mine(env: &Env, n: u64, base_fee: Option<u128>) {
    if let Some(fee) = base_fee {
        rpc(env, "hardhat_setNextBlockBaseFeePerGas", json!([format!("{fee:#x}")])).await;
    }
    rpc(env, "hardhat_mine", json!([format!("{n:#x}")])).await;
}

/// `new` raises both fees of `old` by at least 20% (the builder's bump).
fn assert_bumped(old: &Transaction, new: &Transaction) {
    let tip = |t: &Transaction| t.max_priority_fee_per_gas().expect("EIP-1559");
    assert_eq!(new.nonce(), old.nonce(), "same nonce");
    assert!(new.max_fee_per_gas() * 5 >= old.max_fee_per_gas() * 6, "maxFeePerGas +20%");
    assert!(tip(new) * 5 >= tip(old) * 6, "maxPriorityFeePerGas +20%");
}

#[tokio::test]
async fn a_stuck_bundle_on_a_paid_chain_is_bumped_and_the_replacement_mined() {
    let env = paid_env(Engine::Sqlite).await;
    let version = EntryPointVersion::V07;
    let recipient = random_address();
    let op = paid_op(&env, version, recipient).await;
    let bundler = env.bundler(BundlingMode::Auto).await;
    rpc(&env, "evm_setAutomine", json!([false])).await;
    let builder = Builder::start(&bundler);
    let hash = send(&bundler, version, &op).await;

    let first = submitted_in(&env, &bundler, hash, None).await;
    assert_eq!(first.inner.signer(), env.bundler_key.address());
    assert!(first.max_fee_per_gas() > 0 && first.max_priority_fee_per_gas() > Some(0), "a paid bundle");
    // The base fee jumps above what the bundle offers: the node keeps it, unmined, for the blocks it takes to
    // count as stuck.
    let stuck_after = env.config(BundlingMode::Auto).stuck_after_blocks;
    mine(&env, stuck_after, Some(first.max_fee_per_gas() * 10)).await;
    assert!(env.provider.get_transaction_receipt(*first.inner.tx_hash()).await.expect("lookup").is_none());

    // The builder re-sends it with higher fees; the node takes it as a replacement (it asks +10% on both).
    let bumped = submitted_in(&env, &bundler, hash, Some(*first.inner.tx_hash())).await;
    assert_bumped(&first, &bumped);
    assert_eq!((bumped.to(), bumped.input()), (first.to(), first.input()), "the same bundle");
    let replaced = env.provider.get_transaction_by_hash(*first.inner.tx_hash()).await.expect("lookup");
    assert!(replaced.is_none(), "the node replaced the first transaction");

    // A base fee only the bumped fees cover.
    mine(&env, 1, Some(first.max_fee_per_gas() + 1)).await;
    let receipt = wait_receipt(&bundler, hash).await;
    assert_eq!(receipt["success"], json!(true));
    assert_eq!(receipt["receipt"]["transactionHash"], json!(bumped.inner.tx_hash()));
    assert_eq!(env.provider.get_balance(recipient).await.expect("balance"), U256::from(1));
    builder.stop().await;
}

#[tokio::test]
async fn after_max_bumps_a_stuck_bundle_is_cancelled_and_its_operation_bundled_again() {
    let env = paid_env(Engine::Sqlite).await;
    let version = EntryPointVersion::V08;
    let recipient = random_address();
    let op = paid_op(&env, version, recipient).await;
    let config = BundlerConfig { max_bumps: 1, ..env.config(BundlingMode::Auto) };
    let stuck_after = config.stuck_after_blocks;
    let bundler = env.bundler_with(&env.keys.db, config).await;
    rpc(&env, "evm_setAutomine", json!([false])).await;
    let builder = Builder::start(&bundler);
    let hash = send(&bundler, version, &op).await;

    // The node loses the bundle, then its one bump.
    let first = submitted_in(&env, &bundler, hash, None).await;
    rpc(&env, "hardhat_dropTransaction", json!([first.inner.tx_hash()])).await;
    mine(&env, stuck_after, None).await;
    let bumped = submitted_in(&env, &bundler, hash, Some(*first.inner.tx_hash())).await;
    assert_bumped(&first, &bumped);
    rpc(&env, "hardhat_dropTransaction", json!([bumped.inner.tx_hash()])).await;
    mine(&env, stuck_after, None).await;

    // Bumps used up: the nonce is cancelled by a zero-value self-transfer, fees bumped again.
    let cancel = pending_tx(&env).await;
    let bundler_address = env.bundler_key.address();
    assert_eq!((cancel.inner.signer(), cancel.to()), (bundler_address, Some(bundler_address)));
    assert_eq!((cancel.value(), cancel.input().len()), (U256::ZERO, 0));
    assert_bumped(&bumped, &cancel);
    let view = bundler.user_operation(hash).await.expect("lookup").expect("known");
    assert_eq!(view.status, OpStatus::Submitted, "the operation waits for the cancel to be mined");

    // Once the cancel is mined the operation goes back to the mempool and into a bundle at the next nonce.
    mine(&env, 1, None).await;
    let cancelled = env.provider.get_transaction_receipt(*cancel.inner.tx_hash()).await.expect("lookup");
    assert!(cancelled.expect("the cancel is mined").status());
    let again = submitted_in(&env, &bundler, hash, Some(*bumped.inner.tx_hash())).await;
    assert_eq!(again.nonce(), first.nonce() + 1);
    assert_eq!(again.to(), Some(version.address()));
    mine(&env, 1, None).await;
    let receipt = wait_receipt(&bundler, hash).await;
    assert_eq!(receipt["success"], json!(true));
    assert_eq!(receipt["receipt"]["transactionHash"], json!(again.inner.tx_hash()));
    assert_eq!(env.provider.get_balance(recipient).await.expect("balance"), U256::from(1));
    builder.stop().await;
}
