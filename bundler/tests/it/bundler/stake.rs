//! The mempool's limits for unstaked entities (ERC-7562 UREP-010, UREP-020) do not hold entities staked
//! on the EntryPoint for real: a staked sender may have more than `SAME_SENDER_MEMPOOL_COUNT` operations
//! pending, a staked paymaster or factory more than `SAME_UNSTAKED_ENTITY_MEMPOOL_COUNT`.

use alloy::primitives::{Address, U256};
use custody_bundler::validation::RpcErrorCode;
use custody_bundler::{Bundler, BundlingMode, SAME_SENDER_MEMPOOL_COUNT, SAME_UNSTAKED_ENTITY_MEMPOOL_COUNT};
use custody_contracts::{EntryPointVersion, UserOperation};
use custody_db::test_utils::Engine;
use serde_json::json;

use super::setup::{Env, env, err, ok, send};
use crate::rule_contracts::{Probe, deployed_by, install, op_of, sponsored, stake};

const V: EntryPointVersion = EntryPointVersion::V08;

/// Installs rule-test contract `name`, staked on `V` with the simulator's minimums if `staked`.
async fn entity(env: &Env, name: &str, staked: bool) -> Address {
    let address = install(&env.chain, name).await;
    if staked {
        let config = env.simulator().config().clone();
        stake(&env.chain, V, address, config.min_stake, config.min_unstake_delay).await;
    }
    address
}

/// Sends `ops`: all but the last must be accepted; the last is accepted if `last_accepted`, else refused
/// as over the unstaked limit `why`.
async fn send_all(bundler: &Bundler, ops: &[UserOperation], last_accepted: bool, why: &str) {
    let (last, first) = ops.split_last().expect("operations");
    for op in first {
        send(bundler, V, op).await;
    }
    if last_accepted {
        send(bundler, V, last).await;
    } else {
        let (code, message) = err(bundler, "eth_sendUserOperation", json!([last, V.address()])).await;
        assert_eq!(code, RpcErrorCode::Banned.code(), "{message}");
        assert!(message.contains(why), "{message}");
    }
}

async fn pending(bundler: &Bundler) -> usize {
    ok(bundler, "debug_bundler_dumpMempool", json!([V.address()])).await.as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn a_staked_sender_is_not_held_to_the_unstaked_sender_limit() {
    let env = env(Engine::Sqlite).await;
    let bundler = env.bundler(BundlingMode::Manual).await;
    let over = SAME_SENDER_MEMPOOL_COUNT as u64 + 1;
    for staked in [false, true] {
        let sender = entity(&env, "ValidAccount", staked).await;
        // One operation per nonce key, so none replaces another.
        let ops: Vec<_> = (1..=over)
            .map(|key| UserOperation { nonce: U256::from(key) << 64, ..op_of(sender, Address::ZERO) })
            .collect();
        send_all(&bundler, &ops, staked, "an unstaked sender").await;
    }
    assert_eq!(pending(&bundler).await as u64, (over - 1) + over);
}

#[tokio::test]
async fn a_staked_paymaster_or_factory_is_not_held_to_the_unstaked_entity_limit() {
    let env = env(Engine::Sqlite).await;
    let bundler = env.bundler(BundlingMode::Manual).await;
    let over = SAME_UNSTAKED_ENTITY_MEMPOOL_COUNT + 1;
    for staked in [false, true] {
        let paymaster = entity(&env, "RulePaymaster", staked).await;
        let mut ops = Vec::new();
        for _ in 0..over {
            let sender = install(&env.chain, "ValidAccount").await;
            ops.push(sponsored(op_of(sender, Address::ZERO), paymaster, Probe::None, Address::ZERO));
        }
        send_all(&bundler, &ops, staked, "an unstaked entity").await;

        let factory = entity(&env, "RuleFactory", staked).await;
        let ops: Vec<_> =
            (0..over).map(|_| deployed_by(op_of(Address::ZERO, Address::ZERO), factory, false, false)).collect();
        send_all(&bundler, &ops, staked, "an unstaked entity").await;
    }
    assert_eq!(pending(&bundler).await as u64, 2 * (over - 1) + 2 * over);
}

/// For clients that send everything to the bundler URL: read-only node methods pass through (others are
/// -32601), fees come in Pimlico's and rundler's shapes (zero on this zero-fee chain), and an entity's
/// stake is reported against the configured minimums.
#[tokio::test]
async fn node_reads_fee_suggestions_and_stake_status() {
    use alloy::providers::Provider;
    let env = env(Engine::Sqlite).await;
    let bundler = env.bundler(BundlingMode::Manual).await;
    let node = env.provider.get_block_number().await.expect("block number");
    let block: alloy::primitives::U64 =
        serde_json::from_value(ok(&bundler, "eth_blockNumber", json!([])).await).expect("a quantity");
    assert_eq!(block.to::<u64>(), node);
    let code = ok(&bundler, "eth_getCode", json!([V.address(), "latest"])).await;
    assert!(code.as_str().is_some_and(|c| c.len() > 2), "the EntryPoint's code: {code}");
    assert_eq!(err(&bundler, "eth_sendRawTransaction", json!(["0x00"])).await.0, -32601, "not a read");
    let (code, message) = err(&bundler, "eth_getBalance", json!(["not an address", "latest"])).await;
    assert_ne!(code, -32601, "the node's own error, passed on: {message}");

    let zero = json!({"maxFeePerGas": "0x0", "maxPriorityFeePerGas": "0x0"});
    assert_eq!(
        ok(&bundler, "pimlico_getUserOperationGasPrice", json!([])).await,
        json!({"slow": zero, "standard": zero, "fast": zero})
    );
    assert_eq!(ok(&bundler, "rundler_maxPriorityFeePerGas", json!([])).await, json!("0x0"));

    let unstaked = entity(&env, "ValidAccount", false).await;
    let staked = entity(&env, "ValidAccount", true).await;
    let status = |address: Address| {
        let bundler = bundler.clone();
        async move { ok(&bundler, "debug_bundler_getStakeStatus", json!([address, V.address()])).await }
    };
    let none = status(unstaked).await;
    assert_eq!(
        none,
        json!({"stakeInfo": {"addr": unstaked, "stake": "0x0", "unstakeDelaySec": "0x0"}, "isStaked": false})
    );
    let config = env.simulator().config().clone();
    let some = status(staked).await;
    assert_eq!(some["isStaked"], true, "{some}");
    assert_eq!(some["stakeInfo"]["stake"], json!(config.min_stake));
    assert_eq!(some["stakeInfo"]["unstakeDelaySec"], json!(U256::from(config.min_unstake_delay)));
}
