//! The JSON-RPC surface: HTTP, batches, ERC-7769 error codes, debug methods and reputation.

use std::sync::Arc;

use alloy::primitives::{Address, B256, Bytes, U256};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use custody_bundler::validation::RpcErrorCode;
use custody_bundler::{Bundler, BundlerConfig, BundlingMode, Hardfork};
use custody_contracts::{EntryPointVersion, account};
use custody_db::test_utils::Engine;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::setup::{env, err, ok};
use custody_contracts::test_utils::random_address;

async fn post(bundler: &Arc<Bundler>, body: &str) -> (StatusCode, Value) {
    let response = custody_bundler::rpc::router(bundler.clone())
        .oneshot(
            Request::post("/rpc")
                .header("content-type", "application/json")
                .body(Body::from(body.to_owned()))
                .expect("request"),
        )
        .await
        .expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    (status, if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("json body") })
}

#[tokio::test]
async fn json_rpc_surface_and_error_codes() {
    let env = env(Engine::Sqlite).await;
    let bundler = env.bundler(BundlingMode::Manual).await;

    // HTTP: single, batch, parse error, empty batch, notification.
    let (status, body) = post(&bundler, r#"{"jsonrpc":"2.0","id":7,"method":"eth_chainId","params":[]}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"jsonrpc": "2.0", "id": 7, "result": format!("{:#x}", env.chain.chain_id())}));
    let (_, body) = post(
        &bundler,
        r#"[{"jsonrpc":"2.0","id":1,"method":"eth_supportedEntryPoints"},{"jsonrpc":"2.0","id":2,"method":"nope"}]"#,
    )
    .await;
    assert_eq!(body[0]["result"], json!([EntryPointVersion::V07.address(), EntryPointVersion::V08.address()]));
    assert_eq!(body[1]["error"]["code"], -32601);
    assert_eq!(post(&bundler, "{not json").await.1["error"]["code"], -32700);
    assert_eq!(post(&bundler, "[]").await.1["error"]["code"], -32600);
    assert_eq!(post(&bundler, r#"{"jsonrpc":"1.0","id":1,"method":"eth_chainId"}"#).await.1["error"]["code"], -32600);
    let (status, _) = post(&bundler, r#"{"jsonrpc":"2.0","method":"eth_chainId"}"#).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Parameters.
    let owner = env.owner.address();
    let call = account::execute(random_address(), U256::ZERO, Bytes::new());
    let op = env.sign(EntryPointVersion::V07, env.peruri_op(EntryPointVersion::V07, owner, 0, call).await, &env.owner);
    let op = op.await;
    let unknown = Address::repeat_byte(0x42);
    let (code, message) = err(&bundler, "eth_sendUserOperation", json!([op, unknown])).await;
    assert_eq!(code, -32602);
    assert!(message.contains("not supported"), "{message}");
    assert_eq!(err(&bundler, "eth_sendUserOperation", json!([{"sender": "0x12"}, unknown])).await.0, -32602);
    assert_eq!(err(&bundler, "eth_getUserOperationByHash", json!(["0x1234"])).await.0, -32602);
    assert_eq!(err(&bundler, "eth_sendUserOperation", json!("not an array")).await.0, -32602);
    // No estimator configured yet: an honest -32601.
    let (code, message) =
        err(&bundler, "eth_estimateUserOperationGas", json!([op, EntryPointVersion::V07.address()])).await;
    assert_eq!(code, -32601, "{message}");
    assert!(ok(&bundler, "eth_getUserOperationByHash", json!([B256::with_last_byte(1)])).await.is_null());

    // A signature from another key is rejected as such (-32507).
    let bad = env.sign(EntryPointVersion::V07, op.clone(), &env.bundler_key).await;
    let (code, message) = err(&bundler, "eth_sendUserOperation", json!([bad, EntryPointVersion::V07.address()])).await;
    assert_eq!(code, RpcErrorCode::InvalidSignature.code(), "{message}");

    // Reputation: a banned sender is refused (-32504) and shows as banned.
    ok(
        &bundler,
        "debug_bundler_setReputation",
        json!([[{"address": op.sender, "opsSeen": "0x1388", "opsIncluded": 0}], EntryPointVersion::V07.address()]),
    )
    .await;
    let (code, message) = err(&bundler, "eth_sendUserOperation", json!([op, EntryPointVersion::V07.address()])).await;
    assert_eq!(code, RpcErrorCode::Banned.code());
    assert!(message.contains("banned"), "{message}");
    let dump = ok(&bundler, "debug_bundler_dumpReputation", json!([EntryPointVersion::V07.address()])).await;
    assert_eq!(dump, json!([{"address": op.sender, "opsSeen": "0x1388", "opsIncluded": "0x0", "status": "banned"}]));
    ok(&bundler, "debug_bundler_clearState", json!([])).await;
    assert_eq!(ok(&bundler, "debug_bundler_dumpReputation", json!([])).await, json!([]));
    let hash = ok(&bundler, "eth_sendUserOperation", json!([op, EntryPointVersion::V07.address()])).await;
    assert!(hash.is_string());
    assert_eq!(ok(&bundler, "debug_bundler_setBundlingMode", json!(["auto"])).await, "ok");
    assert_eq!(err(&bundler, "debug_bundler_setBundlingMode", json!(["sometimes"])).await.0, -32602);

    // Debug methods are off unless enabled.
    let validator = env.validator();
    let config = BundlerConfig { debug_methods: false, ..BundlerConfig::default() };
    let quiet = Bundler::new(
        config,
        env.keys.db.pool().await,
        vec![env.bundler_key.clone()],
        env.provider.clone(),
        validator,
        None,
    )
    .await
    .expect("bundler");
    assert_eq!(err(&quiet, "debug_bundler_dumpMempool", json!([EntryPointVersion::V07.address()])).await.0, -32601);
}

/// EIP-7702 operations are refused with the reason (-32602), never read without their authorization
/// or hashed as plain v0.8 operations: an `eip7702Auth`, viem's `0x7702` factory flag, the marker in
/// the initCode; the message follows the configured hardfork.
#[tokio::test]
async fn eip7702_operations_are_refused_with_the_reason() {
    let env = env(Engine::Sqlite).await;
    let v08 = EntryPointVersion::V08;
    let call = account::execute(random_address(), U256::ZERO, Bytes::new());
    let op = env.sign(v08, env.peruri_op(v08, env.owner.address(), 0, call).await, &env.owner).await;
    let auth = json!({"chainId": "0x1", "address": random_address(), "nonce": "0x0", "yParity": "0x0", "r": "0x1", "s": "0x1"});
    let mut authorised = json!(op);
    authorised["eip7702Auth"] = auth;
    let mut flagged = json!(op);
    flagged["factory"] = json!("0x7702");
    flagged["factoryData"] = json!("0x");

    for (hardfork, expected) in [(Hardfork::Cancun, "has no EIP-7702"), (Hardfork::Prague, "does not carry EIP-7702")] {
        let config = BundlerConfig { hardfork, ..env.config(BundlingMode::Manual) };
        let bundler = env.bundler_with(&env.keys.db, config).await;
        for (what, op) in [("eip7702Auth", &authorised), ("the 0x7702 flag", &flagged)] {
            for method in ["eth_sendUserOperation", "eth_estimateUserOperationGas"] {
                let (code, message) = err(&bundler, method, json!([op, v08.address()])).await;
                assert_eq!(code, -32602, "{method} with {what}: {message}");
                assert!(message.contains("EIP-7702") && message.contains(expected), "{method} with {what}: {message}");
            }
        }
        // The marker reached through a padded factory address is refused by the bundler itself.
        let mut marked = op.clone();
        marked.factory = Some(Address::from_slice(&hex_marker()));
        marked.factory_data = Some(Bytes::new());
        let e = bundler.send_user_operation(marked, v08.address()).await.expect_err("refused");
        assert_eq!(e.code, RpcErrorCode::InvalidParams);
        assert!(e.message.contains(expected), "{e}");
        assert_eq!(ok(&bundler, "debug_bundler_dumpMempool", json!([v08.address()])).await, json!([]));
    }
}

/// `0x7702` padded to 20 bytes.
fn hex_marker() -> [u8; 20] {
    let mut marker = [0u8; 20];
    marker[..2].copy_from_slice(&[0x77, 0x02]);
    marker
}
