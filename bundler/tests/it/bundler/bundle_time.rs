//! Checks made again when a bundle is built: code hashes (ERC-7562 COD-010) and the eviction of a
//! throttled entity's operations after `THROTTLED_ENTITY_LIVE_BLOCKS`.

use alloy::primitives::{Bytes, U256};
use custody_bundler::{BundlingMode, OpStatus, THROTTLED_ENTITY_LIVE_BLOCKS};
use custody_contracts::{EntryPointVersion, UserOperation, account};
use custody_db::test_utils::Engine;
use serde_json::json;

use super::setup::{Env, env, ok, send};
use custody_contracts::test_utils::random_address;

const VERSION: EntryPointVersion = EntryPointVersion::V08;

/// A signed operation deploying the owner key's Peruri account.
async fn deploying_op(env: &Env) -> UserOperation {
    let call = account::execute(random_address(), U256::ZERO, Bytes::new());
    let op = env.peruri_op(VERSION, env.owner.address(), 0, call).await;
    assert!(op.factory.is_some());
    env.sign(VERSION, op, &env.owner).await
}

#[tokio::test]
async fn an_operation_whose_code_changed_is_not_bundled() {
    let env = env(Engine::Sqlite).await;
    let bundler = env.bundler(BundlingMode::Manual).await;
    let op = deploying_op(&env).await;
    let hash = send(&bundler, VERSION, &op).await;

    // The factory validation ran is replaced (here by a STOP) before the bundle is built.
    let factory = op.factory.expect("factory");
    env.chain.set_code(factory, Bytes::from_static(&[0x00])).await.expect("setCode");
    assert!(ok(&bundler, "debug_bundler_sendBundleNow", json!([])).await.is_null(), "no bundle sent");

    let view = bundler.user_operation(hash).await.expect("lookup").expect("known");
    assert_eq!(view.status, OpStatus::Failed);
    let reason = view.reason.unwrap_or_default();
    assert!(reason.contains("COD-010") && reason.contains(&factory.to_string()), "{reason}");
}

#[tokio::test]
async fn a_throttled_entitys_operation_is_evicted_after_ten_blocks() {
    let env = env(Engine::Sqlite).await;
    let bundler = env.bundler(BundlingMode::Manual).await;
    let op = deploying_op(&env).await;
    let hash = send(&bundler, VERSION, &op).await;

    // opsSeen 150 / 10 = 15 > 0 + THROTTLING_SLACK: throttled, not banned.
    let factory = op.factory.expect("factory");
    let rep = json!([[{"address": factory, "opsSeen": "0x96", "opsIncluded": 0}], VERSION.address()]);
    ok(&bundler, "debug_bundler_setReputation", rep).await;
    for _ in 0..=THROTTLED_ENTITY_LIVE_BLOCKS {
        env.chain.mine().await.expect("mine");
    }
    assert!(ok(&bundler, "debug_bundler_sendBundleNow", json!([])).await.is_null(), "no bundle sent");
    let view = bundler.user_operation(hash).await.expect("lookup").expect("known");
    assert_eq!(view.status, OpStatus::Dropped);
    assert!(view.reason.unwrap_or_default().contains("throttled"));
}
