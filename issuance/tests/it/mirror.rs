//! The mirror worker against the local chain: batches anchored and minted once, proofs PLOG accepts,
//! crashes between every step, a chain node that is down.

use std::collections::HashMap;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use custody_contracts::bindings::{peruri_badge::PeruriBadge, peruri_log::PeruriLog, peruri_token::PeruriToken};
use custody_db::test_utils::Engine;
use custody_issuance::{ActivityView, Indexer, NewActivity, WorkerConfig, activity_leaf, verify};
use serde_json::json;
use sqlx::Row;

use crate::setup::{Env, JAN_2026, activity, env, ptkn};

/// PTKN mints (Transfer from zero) per recipient, from the chain's logs.
async fn ptkn_mints(env: &Env) -> HashMap<Address, usize> {
    let filter = Filter::new()
        .address(env.deployment.contracts.peruri_token)
        .event_signature(PeruriToken::Transfer::SIGNATURE_HASH)
        .from_block(0);
    let mut mints = HashMap::new();
    for log in env.provider.get_logs(&filter).await.unwrap() {
        let event = PeruriToken::Transfer::decode_log(&log.inner).unwrap();
        if event.from == Address::ZERO {
            *mints.entry(event.to).or_default() += 1;
        }
    }
    mints
}

/// Checks a confirmed activity's proof off-chain and with PLOG.verify.
async fn check_proof(env: &Env, view: &ActivityView, occurred_at: i64) {
    assert_eq!(view.status, "confirmed", "{view:?}");
    assert!(view.tx_hash.is_some() && view.block_number.is_some(), "{view:?}");
    let leaf: B256 = view.leaf.as_deref().unwrap().parse().unwrap();
    let id: B256 = view.id.parse().unwrap();
    assert_eq!(leaf, activity_leaf(id, &view.kind, occurred_at as u64), "the leaf is the canonical record's");
    let proof: Vec<B256> = view.proof.as_ref().unwrap().iter().map(|p| p.parse().unwrap()).collect();
    let root: B256 = view.merkle_root.as_deref().unwrap().parse().unwrap();
    assert!(verify(root, leaf, &proof));
    let plog = PeruriLog::new(env.deployment.contracts.peruri_log, env.provider.clone());
    let batch: B256 = view.batch_id.as_deref().unwrap().parse().unwrap();
    assert!(plog.verify(batch, proof.clone(), leaf).call().await.unwrap(), "PLOG.verify accepts the proof");
    assert_eq!(view.occurred_at, occurred_at as u64, "the view carries the leaf's values");
    let from_values = plog.verifyActivity(batch, proof.clone(), id, view.kind.clone(), view.occurred_at);
    assert!(from_values.call().await.unwrap(), "PLOG.verifyActivity accepts the activity from its values");
    assert_eq!(plog.getBatch(batch).call().await.unwrap().root, root);
    assert!(!plog.verify(batch, proof, B256::repeat_byte(1)).call().await.unwrap());
}

async fn end_to_end(engine: Engine) {
    let env = env(engine).await;
    let m = &env.issuance;
    let mut ids = Vec::new();
    for (i, (user, kind)) in [
        ("alice", "attendance"),
        ("alice", "attendance"), // the month's badge
        ("bob", "attendance"),
        ("bob", "training_completed"),
        ("carol", "milestone"),
        ("carol", "coffee_break"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut a = activity(user, kind);
        if kind == "milestone" {
            a.payload = json!({"milestone": "first_year"});
        }
        ids.push(m.track("app", &format!("k{i}"), a).await.unwrap().id);
    }
    ids.push(m.mint("app", "mint", "carol", 3, "welcome").await.unwrap().id);
    env.settle(&ids).await;
    for id in &ids {
        let view = m.activity(id).await.unwrap().unwrap();
        let at = if view.kind == "_mint" { None } else { Some(JAN_2026) };
        if let Some(at) = at {
            check_proof(&env, &view, at).await;
        }
        assert!(view.issued.iter().all(|i| i.tx_hash.is_some()), "{view:?}");
    }

    let token = PeruriToken::new(env.deployment.contracts.peruri_token, env.provider.clone());
    let badge = PeruriBadge::new(env.deployment.contracts.peruri_badge, env.provider.clone());
    let (alice, bob, carol) = (env.account("alice").await, env.account("bob").await, env.account("carol").await);
    assert_eq!(token.balanceOf(alice).call().await.unwrap(), ptkn(20));
    assert_eq!(token.balanceOf(bob).call().await.unwrap(), ptkn(60));
    assert_eq!(token.balanceOf(carol).call().await.unwrap(), ptkn(3));
    assert_eq!(badge.balanceOf(alice, U256::from(202_601)).call().await.unwrap(), U256::from(1));
    assert_eq!(badge.balanceOf(bob, U256::from(7)).call().await.unwrap(), U256::from(1));
    assert_eq!(badge.balanceOf(carol, U256::from(900)).call().await.unwrap(), U256::from(1));
    let mints = ptkn_mints(&env).await;
    assert_eq!((mints[&alice], mints[&bob], mints[&carol]), (1, 1, 1), "one aggregated mint per recipient");

    // Nothing more to do, and the batch ids are spent on-chain.
    let again = env.worker().tick().await.unwrap();
    assert!(!again.any(), "{again:?}");
    let calldata: String = sqlx::query("SELECT calldata FROM issuance_txs WHERE target = $1 ORDER BY id LIMIT 1")
        .bind(custody_db::encode_address(env.deployment.contracts.peruri_token))
        .fetch_one(&env.keys.db.pool().await)
        .await
        .unwrap()
        .get("calldata");
    let replay = alloy::rpc::types::TransactionRequest::default()
        .from(env.issuer.address())
        .to(env.deployment.contracts.peruri_token)
        .input(calldata.parse::<alloy::primitives::Bytes>().unwrap().into());
    let err = env.provider.call(replay).await.unwrap_err();
    assert!(err.to_string().contains("0x") || err.is_error_resp(), "replayed batchMint is refused: {err}");

    // The caches, from the chain's events.
    let indexer = Indexer::new(m, env.provider.clone(), env.contracts());
    while indexer.step().await.unwrap() > 0 {}
    for (account, balance) in [(alice, 20), (bob, 60), (carol, 3)] {
        assert_eq!(m.token_balance(account).await.unwrap(), ptkn(balance));
    }
    assert_eq!(m.badges(alice).await.unwrap(), vec![(U256::from(202_601), U256::from(1))]);
    assert_eq!(m.badges(carol).await.unwrap(), vec![(U256::from(900), U256::from(1))]);
    // Rebuilt from block 0, the same.
    indexer.reset().await.unwrap();
    assert_eq!(m.token_balance(bob).await.unwrap(), U256::ZERO);
    while indexer.step().await.unwrap() > 0 {}
    assert_eq!(m.token_balance(bob).await.unwrap(), ptkn(60));
}

#[tokio::test]
async fn the_indexer_rewinds_after_a_reorg() {
    let env = env(Engine::Sqlite).await;
    let m = &env.issuance;
    let indexer = Indexer::new(m, env.provider.clone(), env.contracts());
    let snapshot: String = env.provider.raw_request("evm_snapshot".into(), json!([])).await.unwrap();
    let id = m.track("app", "k", activity("erin", "attendance")).await.unwrap().id;
    env.settle(&[id]).await;
    while indexer.step().await.unwrap() > 0 {}
    let erin = env.account("erin").await;
    assert_eq!(m.token_balance(erin).await.unwrap(), ptkn(10));
    // The blocks with the mint are replaced by others.
    let reverted: bool = env.provider.raw_request("evm_revert".into(), (snapshot,)).await.unwrap();
    assert!(reverted);
    for _ in 0..6 {
        let _: String = env.provider.raw_request("evm_mine".into(), json!([])).await.unwrap();
    }
    while indexer.step().await.unwrap() > 0 {}
    assert_eq!(m.token_balance(erin).await.unwrap(), U256::ZERO, "the reorged mint is gone from the cache");
}

custody_db::on_each_engine!(
    end_to_end: sqlite_activities_are_anchored_minted_once_and_proven,
    postgres_activities_are_anchored_minted_once_and_proven
);

/// Where the first worker stops.
#[derive(Clone, Copy, Debug)]
enum Crash {
    Stored,
    Batched,
    Signed,
    /// Sent to the node, but the worker died before recording it.
    SentUnrecorded,
    /// Submitted and mined, receipt not yet recorded.
    Mined,
    Recorded,
}

async fn crash_and_resume(engine: Engine) {
    let env = env(engine).await;
    let steps = [Crash::Stored, Crash::Batched, Crash::Signed, Crash::SentUnrecorded, Crash::Mined, Crash::Recorded];
    for (i, crash) in steps.into_iter().enumerate() {
        let user = format!("user-{i}");
        let id = env.issuance.track("app", &format!("k{i}"), activity(&user, "attendance")).await.unwrap().id;
        {
            let first = env.worker();
            if !matches!(crash, Crash::Stored) {
                assert_eq!(first.batch().await.unwrap(), 1, "{crash:?}");
            }
            if matches!(crash, Crash::Signed | Crash::SentUnrecorded | Crash::Mined | Crash::Recorded) {
                assert_eq!(first.sign().await.unwrap(), 2, "{crash:?}: anchor and mint");
            }
            if matches!(crash, Crash::SentUnrecorded) {
                let pool = env.keys.db.pool().await;
                for row in sqlx::query(
                    "SELECT a.raw FROM sender_attempts a JOIN issuance_txs t ON t.tx_hash = a.tx_hash \
                         WHERE t.status = 'signed'",
                )
                .fetch_all(&pool)
                .await
                .unwrap()
                {
                    let raw: String = row.get("raw");
                    let raw: alloy::primitives::Bytes = raw.parse().unwrap();
                    env.provider.send_raw_transaction(&raw).await.unwrap().get_receipt().await.unwrap();
                }
            }
            if matches!(crash, Crash::Mined | Crash::Recorded) {
                assert_eq!(first.submit().await.unwrap(), 2, "{crash:?}");
            }
            if matches!(crash, Crash::Recorded) {
                assert_eq!(first.confirm().await.unwrap(), 2, "{crash:?}");
            }
            drop(first); // the process dies here
        }
        env.settle(std::slice::from_ref(&id)).await;
        let view = env.issuance.activity(&id).await.unwrap().unwrap();
        check_proof(&env, &view, JAN_2026).await;
    }
    // Every user minted exactly once, with exactly 10 PTKN.
    let mints = ptkn_mints(&env).await;
    let token = PeruriToken::new(env.deployment.contracts.peruri_token, env.provider.clone());
    for i in 0..steps.len() {
        let account = env.account(&format!("user-{i}")).await;
        assert_eq!(mints.get(&account), Some(&1), "user-{i}: one mint");
        assert_eq!(token.balanceOf(account).call().await.unwrap(), ptkn(10));
    }
    assert_eq!(mints.values().sum::<usize>(), steps.len());
}

custody_db::on_each_engine!(
    crash_and_resume: sqlite_a_crash_between_any_two_steps_mints_once,
    postgres_a_crash_between_any_two_steps_mints_once
);

#[tokio::test]
async fn a_chain_node_that_is_down_delays_but_loses_nothing() {
    let env = env(Engine::Sqlite).await;
    let dead = ProviderBuilder::new().connect_http("http://127.0.0.1:1".parse().unwrap()).erased();
    let down = env.worker_on(dead);
    let ids = vec![
        env.issuance.track("app", "a", activity("dora", "attendance")).await.unwrap().id,
        env.issuance.track("app", "b", activity("dora", "attendance")).await.unwrap().id,
    ];
    assert!(down.tick().await.is_err(), "the node is unreachable");
    // Intake goes on while the node is down.
    let late = NewActivity { payload: json!({"n": 3}), ..activity("dora", "attendance") };
    let late = env.issuance.track("app", "c", late).await.unwrap().id;
    assert!(down.tick().await.is_err());
    for id in &ids {
        assert_eq!(env.issuance.activity(id).await.unwrap().unwrap().status, "batched");
    }
    // The node is back: everything catches up, once.
    let all = [ids, vec![late]].concat();
    env.settle(&all).await;
    let mints = ptkn_mints(&env).await;
    assert_eq!(mints.values().sum::<usize>(), 2, "two batches, one mint each");
    let token = PeruriToken::new(env.deployment.contracts.peruri_token, env.provider.clone());
    assert_eq!(token.balanceOf(env.account("dora").await).call().await.unwrap(), ptkn(30));
}

#[tokio::test]
async fn postgres_concurrent_workers_mint_each_item_once() {
    let env = env(Engine::Postgres).await;
    let mut ids = Vec::new();
    for i in 0..24 {
        ids.push(
            env.issuance
                .track("app", &format!("k{i}"), activity(&format!("u{}", i % 6), "attendance"))
                .await
                .unwrap()
                .id,
        );
    }
    for _ in 0..10 {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..3 {
            let worker = env.worker();
            set.spawn(async move { worker.tick().await });
        }
        while let Some(result) = set.join_next().await {
            result.unwrap().unwrap();
        }
    }
    env.settle(&ids).await;
    let token = PeruriToken::new(env.deployment.contracts.peruri_token, env.provider.clone());
    for u in 0..6 {
        let account = env.account(&format!("u{u}")).await;
        assert_eq!(token.balanceOf(account).call().await.unwrap(), ptkn(40), "u{u}: 4 attendances, once each");
    }
}

/// Gives PTKN's ISSUER_ROLE to the issuer key (`true`) or takes it away, as the admin (dev account 0).
async fn set_issuer_role(env: &Env, granted: bool) {
    let token = PeruriToken::new(env.deployment.contracts.peruri_token, env.chain.provider());
    let (role, issuer) = (token.ISSUER_ROLE().call().await.unwrap(), env.issuer.address());
    let pending = if granted {
        token.grantRole(role, issuer).send().await.unwrap()
    } else {
        token.revokeRole(role, issuer).send().await.unwrap()
    };
    assert!(pending.get_receipt().await.unwrap().status());
    assert_eq!(token.hasRole(role, issuer).call().await.unwrap(), granted);
}

/// A batch transaction's row.
#[derive(Debug)]
struct TxRow {
    status: String,
    attempts: i64,
    nonce: Option<i64>,
    hash: Option<B256>,
    error: Option<String>,
}

/// The rows of the transactions of activity `id`'s batch (anchor, then mint).
async fn batch_txs(env: &Env, id: &str) -> Vec<TxRow> {
    let rows = sqlx::query(
        "SELECT t.status, t.attempts, t.nonce, t.tx_hash, t.error FROM issuance_txs t \
         JOIN issuance_activities a ON a.batch_id = t.batch_id WHERE a.id = $1 ORDER BY t.ordinal",
    )
    .bind(id)
    .fetch_all(&env.keys.db.pool().await)
    .await
    .unwrap();
    rows.iter()
        .map(|r| TxRow {
            status: r.get("status"),
            attempts: r.get("attempts"),
            nonce: r.get("nonce"),
            hash: r.get::<Option<String>, _>("tx_hash").map(|h| h.parse().unwrap()),
            error: r.get("error"),
        })
        .collect()
}

/// The role is taken away after the mint was signed: it reverts on-chain, is planned again (attempts 1), and once
/// the role is back it is re-signed with a new nonce, mined, and the activity confirmed with one mint.
#[tokio::test]
async fn a_reverted_mint_is_planned_again_and_confirmed_once() {
    let env = env(Engine::Sqlite).await;
    let id = env.issuance.track("app", "k", activity("rita", "attendance")).await.unwrap().id;
    let worker = env.worker();
    assert_eq!(worker.batch().await.unwrap(), 1);
    assert_eq!(worker.sign().await.unwrap(), 2, "anchor and mint, signed while the issuer holds the role");
    set_issuer_role(&env, false).await;

    let progress = worker.tick().await.unwrap();
    assert_eq!((progress.submitted, progress.mined), (2, 2), "{progress:?}");
    let [anchor, reverted] = <[TxRow; 2]>::try_from(batch_txs(&env, &id).await).unwrap();
    assert_eq!(anchor.status, "mined");
    assert_eq!(
        (reverted.status.as_str(), reverted.attempts, reverted.error.as_deref()),
        ("planned", 1, Some("attempt 1 reverted"))
    );
    let receipt = env.provider.get_transaction_receipt(reverted.hash.unwrap()).await.unwrap().expect("mined");
    assert!(!receipt.status(), "the first mint reverted on-chain");
    assert_eq!(env.issuance.activity(&id).await.unwrap().unwrap().status, "submitted", "not settled yet");

    set_issuer_role(&env, true).await;
    env.settle(std::slice::from_ref(&id)).await;
    let view = env.issuance.activity(&id).await.unwrap().unwrap();
    check_proof(&env, &view, JAN_2026).await;
    let mint = batch_txs(&env, &id).await.pop().unwrap();
    assert_eq!((mint.status.as_str(), mint.attempts, mint.error), ("mined", 1, None), "the attempt is recorded");
    assert_eq!(mint.nonce, reverted.nonce.map(|n| n + 1), "re-signed with the issuer's next nonce");
    assert_ne!(mint.hash, reverted.hash);
    assert_eq!(view.issued[0].tx_hash, mint.hash.map(|h| h.to_string()), "{view:?}");

    let account = env.account("rita").await;
    let mints = ptkn_mints(&env).await;
    assert_eq!((mints.get(&account), mints.values().sum::<usize>()), (Some(&1), 1), "one mint on chain");
    let token = PeruriToken::new(env.deployment.contracts.peruri_token, env.provider.clone());
    assert_eq!(token.balanceOf(account).call().await.unwrap(), ptkn(10));
}

/// Without the role, the mint reverts at every attempt: after `max_attempts` it is failed, and so is the
/// activity, with the reason; nothing is minted and nothing more is sent.
#[tokio::test]
async fn a_mint_that_keeps_reverting_fails_after_max_attempts() {
    let env = env(Engine::Sqlite).await;
    set_issuer_role(&env, false).await;
    let id = env.issuance.track("app", "k", activity("rex", "attendance")).await.unwrap().id;
    let worker = env.worker();
    let max = i64::from(WorkerConfig::default().max_attempts);
    let mut view = env.issuance.activity(&id).await.unwrap().unwrap();
    for _ in 0..2 * max {
        if view.status == "failed" {
            break;
        }
        worker.tick().await.unwrap();
        view = env.issuance.activity(&id).await.unwrap().unwrap();
    }
    assert_eq!(view.status, "failed", "{view:?}");
    let batch = view.batch_id.as_deref().unwrap();
    assert_eq!(view.error, Some(format!("a transaction of batch {batch} reverted")));
    let [anchor, mint] = <[TxRow; 2]>::try_from(batch_txs(&env, &id).await).unwrap();
    assert_eq!(anchor.status, "mined", "the batch is anchored");
    assert_eq!(
        (mint.status.as_str(), mint.attempts, mint.error),
        ("failed", max, Some(format!("transaction reverted after {max} attempts")))
    );
    // Each attempt was a transaction of its own, mined and reverted.
    let sent = env.provider.get_transaction_count(env.issuer.address()).await.unwrap();
    assert_eq!(sent, max as u64, "one transaction per attempt");
    assert!(!env.provider.get_transaction_receipt(mint.hash.unwrap()).await.unwrap().unwrap().status());
    assert!(ptkn_mints(&env).await.is_empty(), "nothing minted");

    let after = worker.tick().await.unwrap();
    assert!(!after.any(), "a failed transaction is not tried again: {after:?}");
}
