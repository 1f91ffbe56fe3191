//! A bundle transaction the node lost is re-broadcast once it counts as stuck (zero-fee chain: the
//! same signed transaction again), and its operation is then included.

use std::time::Duration;

use alloy::primitives::{B256, Bytes, U256};
use alloy::providers::Provider;
use custody_bundler::BundlingMode;
use custody_contracts::{EntryPointVersion, account};
use custody_signer::test_utils::Engine;
use serde_json::{Value, json};

use super::setup::{env, ok, random_address, send, wait_receipt};

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
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(bundler.clone().run(async move {
        let _ = stopped.await;
    }));
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
    assert_eq!(ok(&bundler, "eth_getUserOperationByHash", json!([hash])).await["status"], "submitted");
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
    let _ = stop.send(());
    runner.await.expect("joins").expect("stops");
}
