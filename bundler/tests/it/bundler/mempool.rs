//! The mempool against the real chain: replacement, per-sender limits, restart, failing operations
//! inside a bundle, prefunds on a chain that charges fees, SQLite and PostgreSQL.

use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use custody_bundler::BundlingMode;
use custody_bundler::validation::RpcErrorCode;
use custody_contracts::{EntryPointVersion, IEntryPoint, UserOperation, account};
use custody_db::test_utils::Engine;
use custody_signer::KeyClass;
use serde_json::{Value, json};

use super::setup::{env, err, ok, paid_env, send, wait_receipt};
use custody_contracts::test_utils::random_address;

const V: EntryPointVersion = EntryPointVersion::V08;

#[tokio::test]
async fn replacement_rules_and_the_unstaked_sender_limit() {
    let env = env(Engine::Sqlite).await;
    let bundler = env.bundler(BundlingMode::Manual).await;
    let owner = env.owner.address();
    let call = |n: u64| account::execute(random_address(), U256::from(n), Bytes::new());
    let sender = env.account(V, owner);
    env.chain.set_balance(sender, U256::from(10u64.pow(18))).await.expect("fund");

    // Paid fees: a replacement needs +10% on both fees.
    let mut first = env.peruri_op(V, owner, 1, call(0)).await;
    first.max_fee_per_gas = U256::from(100);
    first.max_priority_fee_per_gas = U256::from(100);
    let first = env.sign(V, first, &env.owner).await;
    let first_hash = send(&bundler, V, &first).await;
    // Sending the same operation again is idempotent.
    assert_eq!(send(&bundler, V, &first).await, first_hash);

    let mut low = first.clone();
    low.call_data = call(1);
    low.max_fee_per_gas = U256::from(105);
    low.max_priority_fee_per_gas = U256::from(200);
    let low = env.sign(V, low, &env.owner).await;
    let (code, message) = err(&bundler, "eth_sendUserOperation", json!([low, V.address()])).await;
    assert_eq!(code, RpcErrorCode::InvalidParams.code());
    assert!(message.contains("replacement underpriced"), "{message}");

    let mut high = first.clone();
    high.call_data = call(2);
    high.max_fee_per_gas = U256::from(110);
    high.max_priority_fee_per_gas = U256::from(110);
    let high = env.sign(V, high, &env.owner).await;
    let high_hash = send(&bundler, V, &high).await;
    // A replaced operation will never be mined as sent: null by hash (ERC-7769), the reason in its status.
    assert!(ok(&bundler, "eth_getUserOperationByHash", json!([first_hash])).await.is_null());
    let replaced = ok(&bundler, "rundler_getUserOperationStatus", json!([first_hash])).await;
    assert_eq!(replaced["status"], "unknown");
    assert_eq!(replaced["removed"]["status"], "replaced", "{replaced}");
    assert_eq!(replaced["removed"]["reason"], json!(format!("replaced by {high_hash:#x}")));
    let pending = ok(&bundler, "eth_getUserOperationByHash", json!([high_hash])).await;
    assert!(pending["blockNumber"].is_null() && pending["transactionHash"].is_null(), "{pending}");
    assert_eq!(pending["userOperation"], json!(high));
    assert_eq!(ok(&bundler, "rundler_getUserOperationStatus", json!([high_hash])).await["status"], "pending");

    // Zero-fee chain rule: equal (zero) fees replace.
    let zero = env.sign(V, env.peruri_op(V, owner, 2, call(3)).await, &env.owner).await;
    let zero_hash = send(&bundler, V, &zero).await;
    let zero2 = env.sign(V, env.peruri_op(V, owner, 2, call(4)).await, &env.owner).await;
    let zero2_hash = send(&bundler, V, &zero2).await;
    assert_ne!(zero_hash, zero2_hash);
    let replaced = ok(&bundler, "rundler_getUserOperationStatus", json!([zero_hash])).await;
    assert_eq!(replaced["removed"]["status"], "replaced", "{replaced}");

    // Live: nonce keys 1 and 2; two more fit, the fifth is refused.
    for key in [3, 4] {
        send(&bundler, V, &env.sign(V, env.peruri_op(V, owner, key, call(5)).await, &env.owner).await).await;
    }
    let fifth = env.sign(V, env.peruri_op(V, owner, 5, call(6)).await, &env.owner).await;
    let (code, message) = err(&bundler, "eth_sendUserOperation", json!([fifth, V.address()])).await;
    assert_eq!(code, RpcErrorCode::Banned.code(), "{message}");
    assert!(message.contains("unstaked sender"), "{message}");
    let pool = ok(&bundler, "debug_bundler_dumpMempool", json!([V.address()])).await;
    assert_eq!(pool.as_array().map(Vec::len), Some(4));
}

async fn restart_keeps_the_mempool(engine: Engine) {
    let env = env(engine).await;
    let owner = env.owner.address();
    let recipient = random_address();
    let op = env.peruri_op(V, owner, 0, account::execute(recipient, U256::from(3), Bytes::new())).await;
    env.chain.set_balance(op.sender, U256::from(10)).await.expect("fund");
    let op = env.sign(V, op, &env.owner).await;
    let hash = {
        let bundler = env.bundler(BundlingMode::Manual).await;
        send(&bundler, V, &op).await
    };
    // A new bundler over the same database.
    let bundler = env.bundler(BundlingMode::Manual).await;
    let pool = ok(&bundler, "debug_bundler_dumpMempool", json!([V.address()])).await;
    assert_eq!(pool, json!([op]));
    let tx = ok(&bundler, "debug_bundler_sendBundleNow", json!([])).await;
    assert!(tx.is_string(), "a bundle was sent: {tx}");
    let receipt = wait_receipt(&bundler, hash).await;
    assert_eq!(receipt["success"], json!(true));
    assert_eq!(receipt["receipt"]["transactionHash"], tx);
    let rep = ok(&bundler, "debug_bundler_dumpReputation", json!([V.address()])).await;
    let entry =
        |address: Address| rep.as_array().and_then(|r| r.iter().find(|e| e["address"] == json!(address))).cloned();
    // The factory's counts survived the restart; the unstaked sender has none (ERC-7562 UREP-010).
    let factory = entry(op.factory.expect("a first operation")).expect("factory reputation");
    assert_eq!(
        (&factory["opsSeen"], &factory["opsIncluded"], &factory["status"]),
        (&json!("0x1"), &json!("0x1"), &json!("ok"))
    );
    assert_eq!(entry(op.sender), None, "no reputation for an unstaked sender");
    assert_eq!(ok(&bundler, "debug_bundler_dumpMempool", json!([V.address()])).await, json!([]));
}

custody_db::on_each_engine!(restart_keeps_the_mempool: restart_keeps_the_mempool_sqlite, restart_keeps_the_mempool_postgres);

/// A dropped operation (here by clearState) is sent again unchanged: accepted under the same hash,
/// bundled and mined, its reputation counted once more.
#[tokio::test]
async fn a_dropped_operation_can_be_sent_again_unchanged() {
    let env = env(Engine::Sqlite).await;
    let bundler = env.bundler(BundlingMode::Manual).await;
    let call = account::execute(random_address(), U256::ZERO, Bytes::new());
    let op = env.sign(V, env.peruri_op(V, env.owner.address(), 0, call).await, &env.owner).await;
    let hash = send(&bundler, V, &op).await;
    ok(&bundler, "debug_bundler_clearState", json!([])).await;
    let dropped = ok(&bundler, "rundler_getUserOperationStatus", json!([hash])).await;
    assert_eq!(dropped["removed"]["status"], "dropped", "{dropped}");

    assert_eq!(send(&bundler, V, &op).await, hash, "the same operation, accepted again");
    assert_eq!(ok(&bundler, "rundler_getUserOperationStatus", json!([hash])).await["removed"], Value::Null);
    assert_eq!(ok(&bundler, "debug_bundler_dumpMempool", json!([V.address()])).await, json!([op]));
    assert!(ok(&bundler, "debug_bundler_sendBundleNow", json!([])).await.is_string());
    assert_eq!(wait_receipt(&bundler, hash).await["success"], json!(true));
}

/// An operation whose limits could never fit a bundle is refused at admission, not kept forever.
#[tokio::test]
async fn an_operation_too_big_for_any_bundle_is_refused() {
    let env = env(Engine::Sqlite).await;
    let config = custody_bundler::BundlerConfig { max_bundle_gas: 1_000_000, ..env.config(BundlingMode::Manual) };
    let bundler = env.bundler_with(&env.keys.db, config).await;
    let call = account::execute(random_address(), U256::ZERO, Bytes::new());
    let mut op = env.peruri_op(V, env.owner.address(), 0, call).await;
    op.call_gas_limit = U256::from(900_000);
    let op = env.sign(V, op, &env.owner).await;
    let (code, message) = err(&bundler, "eth_sendUserOperation", json!([op, V.address()])).await;
    assert_eq!(code, RpcErrorCode::InvalidParams.code());
    assert!(message.contains("could never be bundled") && message.contains("1000000"), "{message}");
    assert_eq!(ok(&bundler, "debug_bundler_dumpMempool", json!([V.address()])).await, json!([]));
}

#[tokio::test]
async fn a_failing_operation_is_dropped_with_its_reason_and_the_rest_is_bundled() {
    let env = env(Engine::Sqlite).await;
    let bundler = env.bundler(BundlingMode::Manual).await;
    env.keys.keyring.create_user("bob").await.expect("bob");
    let bob = env.keys.keyring.signer(KeyClass::User, "bob").await.expect("bob signer");
    let (alice_recipient, bob_recipient) = (random_address(), random_address());

    let a = env.peruri_op(V, env.owner.address(), 0, account::execute(alice_recipient, U256::from(1), Bytes::new()));
    let a = env.sign(V, a.await, &env.owner).await;
    let b = env.peruri_op(V, bob.address(), 0, account::execute(bob_recipient, U256::from(1), Bytes::new())).await;
    let b = env.sign(V, b, &bob).await;
    for op in [&a, &b] {
        env.chain.set_balance(op.sender, U256::from(10)).await.expect("fund");
    }
    let a_hash = send(&bundler, V, &a).await;
    let b_hash = send(&bundler, V, &b).await;

    // Someone else uses alice's nonce first: her pooled operation can no longer be included.
    let mut other = a.clone();
    other.call_data = account::execute(random_address(), U256::from(1), Bytes::new());
    let other = env.sign(V, other, &env.owner).await;
    env.handle_ops_directly(V, vec![other]).await;

    let tx = ok(&bundler, "debug_bundler_sendBundleNow", json!([])).await;
    assert!(tx.is_string());
    assert_eq!(wait_receipt(&bundler, b_hash).await["success"], json!(true));
    assert!(ok(&bundler, "eth_getUserOperationByHash", json!([a_hash])).await.is_null());
    let failed = ok(&bundler, "rundler_getUserOperationStatus", json!([a_hash])).await;
    assert_eq!(failed["removed"]["status"], "failed", "{failed}");
    assert!(failed["removed"]["reason"].as_str().is_some_and(|r| r.starts_with("AA")), "{failed}");
    assert!(ok(&bundler, "eth_getUserOperationReceipt", json!([a_hash])).await.is_null());
    let mined = ok(&bundler, "rundler_getUserOperationStatus", json!([b_hash])).await;
    assert_eq!(mined["status"], "mined", "{mined}");
    assert_eq!(mined["receipt"]["userOpHash"], json!(b_hash));
    assert_eq!(mined["userOperation"], json!(b));
}

#[tokio::test]
async fn on_a_paid_chain_the_account_pays_the_bundler_for_its_operation() {
    let env = paid_env(Engine::Sqlite).await;
    let bundler = env.bundler(BundlingMode::Manual).await;
    let recipient = random_address();
    let op = env.priced_op(V, account::execute(recipient, U256::from(1), Bytes::new())).await;
    let op = env.sign(V, op, &env.owner).await;

    // Fees below the chain's base fee: refused before anything else, naming the base fee.
    let cheap = UserOperation { max_fee_per_gas: U256::from(1), max_priority_fee_per_gas: U256::from(1), ..op.clone() };
    let cheap = env.sign(V, cheap, &env.owner).await;
    let (code, message) = err(&bundler, "eth_sendUserOperation", json!([cheap, V.address()])).await;
    assert_eq!(code, RpcErrorCode::InvalidParams.code(), "{message}");
    assert!(message.contains("below the current base fee"), "{message}");

    // Nothing to pay the prefund with: refused.
    let (code, message) = err(&bundler, "eth_sendUserOperation", json!([op, V.address()])).await;
    assert_eq!(code, RpcErrorCode::EntryPointRejected.code(), "{message}");
    assert!(message.contains("AA21"), "{message}");

    // Funded by a transfer (a new block: the simulator reads state per block).
    let funds = U256::from(10u64.pow(18));
    let transfer = TransactionRequest::default().to(op.sender).value(funds);
    let funded = env.provider.send_transaction(transfer).await.expect("sent").get_receipt().await.expect("mined");
    assert!(funded.status());
    let hash = send(&bundler, V, &op).await;
    let bundler_before = env.provider.get_balance(env.bundler_key.address()).await.expect("balance");
    ok(&bundler, "debug_bundler_sendBundleNow", json!([])).await;
    let receipt = wait_receipt(&bundler, hash).await;
    assert_eq!(receipt["success"], json!(true), "{receipt}");
    let number = |v: &Value| -> U256 { serde_json::from_value(v.clone()).expect("a hex number") };
    let cost = number(&receipt["actualGasCost"]);
    assert!(cost > U256::ZERO, "the operation cost something");

    // The account paid the gas cost (its prefund, less the refund left on its EntryPoint deposit) and 1 wei.
    let balance = env.provider.get_balance(op.sender).await.expect("balance");
    let deposit =
        IEntryPoint::new(V.address(), env.provider.clone()).balanceOf(op.sender).call().await.expect("deposit");
    assert_eq!(balance + deposit, funds - cost - U256::from(1));
    // The bundler, its beneficiary, paid the transaction's fee and was paid the operation's cost.
    let fee = number(&receipt["receipt"]["gasUsed"]) * number(&receipt["receipt"]["effectiveGasPrice"]);
    assert!(fee > U256::ZERO, "the bundle transaction paid a fee");
    let bundler_after = env.provider.get_balance(env.bundler_key.address()).await.expect("balance");
    assert_eq!(bundler_after, bundler_before - fee + cost);
}

/// With `sponsors` set (the server's `require_sponsorship`), an operation without one of those
/// paymasters is refused at admission with -32501, before any simulation.
#[tokio::test]
async fn with_required_sponsorship_an_unsponsored_operation_is_refused() {
    let env = env(Engine::Sqlite).await;
    let sponsor = random_address();
    let config = custody_bundler::BundlerConfig { sponsors: vec![sponsor], ..env.config(BundlingMode::Manual) };
    let bundler = env.bundler_with(&env.keys.db, config).await;
    let op = env.peruri_op(V, env.owner.address(), 0, account::execute(random_address(), U256::ZERO, Bytes::new()));
    let op = env.sign(V, op.await, &env.owner).await;
    let (code, message) = err(&bundler, "eth_sendUserOperation", json!([op, V.address()])).await;
    assert_eq!(code, RpcErrorCode::PaymasterRejected.code());
    assert!(message.contains("sponsored"), "{message}");
    let other = UserOperation { paymaster: Some(random_address()), ..op };
    let response = super::setup::call(&bundler, "eth_sendUserOperation", json!([other, V.address()])).await;
    assert_eq!(response["error"]["code"], RpcErrorCode::PaymasterRejected.code(), "another paymaster");
    assert_eq!(response["error"]["data"]["paymaster"], json!(other.paymaster), "ERC-7769: -32501 names the paymaster");
}

/// `debug_bundler_addUserOps` (ERC-7769): operations go into the mempool as if validated, with no
/// simulation (an unsigned one too); hashes as `eth_sendUserOperation` computes them; a known one is not
/// added twice; the unstaked-sender limit still applies; a malformed one is refused.
#[tokio::test]
async fn debug_add_user_ops_fills_the_mempool_without_validation() {
    let env = env(Engine::Sqlite).await;
    let bundler = env.bundler(BundlingMode::Manual).await;
    let owner = env.owner.address();
    let call = account::execute(random_address(), U256::ZERO, Bytes::new());
    let signed = env.sign(V, env.peruri_op(V, owner, 0, call.clone()).await, &env.owner).await;
    // Unsigned, from an account nobody deployed: simulation would refuse it.
    let unsigned = UserOperation { sender: random_address(), factory: None, factory_data: None, ..signed.clone() };
    let (_, message) = err(&bundler, "eth_sendUserOperation", json!([unsigned, V.address()])).await;
    assert!(message.contains("AA20"), "sent normally it is simulated and refused: {message}");
    let ops = json!([[signed, unsigned], V.address()]);
    assert_eq!(ok(&bundler, "debug_bundler_addUserOps", ops.clone()).await, json!("ok"));
    assert_eq!(ok(&bundler, "debug_bundler_addUserOps", ops).await, json!("ok"), "known ones are not added twice");
    let pool = ok(&bundler, "debug_bundler_dumpMempool", json!([V.address()])).await;
    assert_eq!(pool, json!([signed, unsigned]));
    // The entry point is optional (the first one served); the same per-sender limit applies.
    let more: Vec<UserOperation> =
        (1..=4).map(|key| UserOperation { nonce: U256::from(key) << 64, ..unsigned.clone() }).collect();
    let (code, message) = err(&bundler, "debug_bundler_addUserOps", json!([more])).await;
    assert_eq!(code, RpcErrorCode::Banned.code(), "{message}");
    let (code, _) = err(&bundler, "debug_bundler_addUserOps", json!([[{"sender": "0x12"}]])).await;
    assert_eq!(code, RpcErrorCode::InvalidParams.code());
}
