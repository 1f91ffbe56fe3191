//! Exactly once across crashes (issue 6): the real `custody serve` is killed with SIGKILL at each step of an
//! issuance (the mirror worker's failpoints, cargo feature `failpoints`) and restarted without the failpoint;
//! every activity ends confirmed, once, and the chain's events show one mint per issued item.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use custody_contracts::bindings::{peruri_log::PeruriLog, peruri_token::PeruriToken};
use custody_contracts::{DeployConfig, test_utils::LocalChain};
use custody_db::test_utils::Engine;
use custody_issuance::{activity_leaf, verify};
use serde_json::{Value, json};
use sqlx::Row;

use crate::service::{Service, token};

/// The steps of an issuance, in order, with what the database holds when the process dies there:
/// the activity's status and its transactions' statuses (anchor, then mint).
const POINTS: [(&str, &str, &[&str]); 6] = [
    ("stored", "queued", &[]),
    ("batched", "batched", &["planned", "planned"]),
    ("signed", "batched", &["signed", "planned"]),
    ("submitted", "batched", &["signed", "signed"]),
    ("mined", "submitted", &["submitted", "submitted"]),
    ("recorded", "submitted", &["mined", "mined"]),
];

/// `2026-01-05T08:00:00Z`, as the activities are tracked.
const OCCURRED_AT: u64 = 1_767_600_000;

#[tokio::test]
async fn sqlite_a_sigkill_at_every_step_confirms_once_and_mints_once() {
    let chain = LocalChain::start().await.expect("local chain starts");
    let extra = format!("[chain]\nrpc_url = \"{}\"\n\n[issuance]\nbatch_interval_ms = 50\n", chain.rpc_url());
    let mut s = Service::prepare(Engine::Sqlite, &extra).await;
    // The roles go to the HSM keys, created before `custody serve` starts; funded, since the local node
    // quotes a gas price above 0.
    let (issuer, anchorer) = (create_infra_key(&s, "issuer"), create_infra_key(&s, "anchor"));
    for key in [issuer, anchorer] {
        chain.set_balance(key, ptkn(1000)).await.unwrap();
    }
    let config = DeployConfig { issuer, anchorer, ..DeployConfig::single_operator(chain.dev_accounts()[0].address()) };
    let deployment = chain.deploy(&config).await.expect("deploys");
    deployment.write(&s.deployment_file()).unwrap();

    let app = token("backend", &["app"]);
    let mut confirmed = Vec::new();
    for (point, status, txs) in POINTS {
        s.restart(&[("CUSTODY_FAILPOINT", point)]).await;
        let user = format!("crash-{point}");
        let body = json!({"user_id": user, "type": "attendance", "occurred_at": "2026-01-05T08:00:00Z"});
        let (code, tracked) = s.post("/activity/track", &app, Some(point), &body).await;
        assert_eq!(code, 202, "{tracked}");
        let id = tracked["id"].as_str().unwrap().to_owned();
        wait_for_failpoint(&s, point).await;
        s.kill();

        // Dead exactly there: that step is durable, the next one has not happened.
        let (stored, stored_txs) = stored_state(&s, &id).await;
        let statuses: Vec<&str> = stored_txs.iter().map(|(status, _)| status.as_str()).collect();
        assert_eq!((stored.as_str(), statuses.as_slice()), (status, txs), "killed at {point}");
        if point == "submitted" {
            let mut on_chain = 0;
            for (_, hash) in &stored_txs {
                let receipt = chain.provider().get_transaction_receipt(hash.expect("signed")).await.unwrap();
                on_chain += usize::from(receipt.is_some());
            }
            assert_eq!(on_chain, 1, "the node took one transaction, the process died before recording it");
        }

        s.restart(&[]).await;
        confirmed.push((user, wait_confirmed(&s, &app, &id).await));
    }

    let provider = chain.provider();
    let mints = ptkn_mints(&provider, deployment.contracts.peruri_token).await;
    let token = PeruriToken::new(deployment.contracts.peruri_token, provider.clone());
    let plog = PeruriLog::new(deployment.contracts.peruri_log, provider.clone());
    for (user, view) in &confirmed {
        let (code, wallet) = s.get(&format!("/v1/wallets/{user}"), Some(&app)).await;
        assert_eq!(code, 200, "{wallet}");
        let account: Address = wallet["address"].as_str().unwrap().parse().unwrap();
        assert_eq!(mints.get(&account), Some(&1), "{user}: one mint");
        assert_eq!(token.balanceOf(account).call().await.unwrap(), ptkn(10), "{user}");
        assert_eq!(view["issued"][0]["amount"], ptkn(10).to_string(), "{view}");

        let hash = |field: &str| -> B256 { view[field].as_str().unwrap().parse().unwrap() };
        let (id, leaf, root, batch) = (hash("id"), hash("leaf"), hash("merkleRoot"), hash("batchId"));
        assert_eq!(leaf, activity_leaf(id, "attendance", OCCURRED_AT), "{user}: the leaf is the activity's");
        let proof: Vec<B256> =
            view["proof"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().parse().unwrap()).collect();
        assert!(verify(root, leaf, &proof), "{user}");
        assert_eq!(plog.getBatch(batch).call().await.unwrap().root, root, "{user}: the root is anchored");
        assert!(plog.verify(batch, proof.clone(), leaf).call().await.unwrap(), "{user}: PLOG accepts the proof");
        let at = view["occurredAt"].as_u64().unwrap();
        let from_values = plog.verifyActivity(batch, proof, id, view["type"].as_str().unwrap().to_owned(), at);
        assert!(from_values.call().await.unwrap(), "{user}: PLOG.verifyActivity accepts the API's values");
    }
    assert_eq!(mints.values().sum::<usize>(), POINTS.len(), "no other mint: {mints:?}");
    s.stop();
}

/// `custody keys create --class infra --name <name>`; the key's address.
fn create_infra_key(s: &Service, name: &str) -> Address {
    let out = s.cli(&["keys", "create", "--class", "infra", "--name", name]);
    assert!(out.status.success(), "keys create {name}: {}", String::from_utf8_lossy(&out.stderr));
    let row = String::from_utf8(out.stdout).unwrap();
    row.split_whitespace().nth(3).and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("an address in {row:?}"))
}

/// Waits until the service logs that it is parked at failpoint `point`.
async fn wait_for_failpoint(s: &Service, point: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let parked = s
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|l| l["fields"]["failpoint"] == point && l["fields"]["message"] == "failpoint reached; parked");
        if parked {
            return;
        }
        assert!(Instant::now() < deadline, "failpoint {point} not reached within 30 s (feature `failpoints` off?)");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The activity's status and its transactions' statuses and hashes (by ordinal), from the database.
async fn stored_state(s: &Service, id: &str) -> (String, Vec<(String, Option<B256>)>) {
    let pool = s.db.pool().await;
    let status: String = sqlx::query("SELECT status FROM issuance_activities WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap()
        .get("status");
    let rows = sqlx::query(
        "SELECT t.status, t.tx_hash FROM issuance_txs t JOIN issuance_activities a ON a.batch_id = t.batch_id \
         WHERE a.id = $1 ORDER BY t.ordinal",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .unwrap();
    let txs = rows
        .iter()
        .map(|r| (r.get("status"), r.get::<Option<String>, _>("tx_hash").map(|h| h.parse().unwrap())))
        .collect();
    (status, txs)
}

/// Polls `GET /activity/{id}` until it is confirmed.
async fn wait_confirmed(s: &Service, app: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, view) = s.get(&format!("/activity/{id}"), Some(app)).await;
        assert_eq!(code, 200, "{view}");
        match view["status"].as_str() {
            Some("confirmed") => return view,
            Some("failed") => panic!("failed after the restart: {view}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "not confirmed within 30 s of the restart: {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// PTKN mints (`Transfer` from the zero address) per recipient, from the chain's logs.
async fn ptkn_mints(provider: &alloy::providers::DynProvider, ptkn: Address) -> HashMap<Address, usize> {
    let filter = Filter::new().address(ptkn).event_signature(PeruriToken::Transfer::SIGNATURE_HASH).from_block(0);
    let mut mints = HashMap::new();
    for log in provider.get_logs(&filter).await.unwrap() {
        let event = PeruriToken::Transfer::decode_log(&log.inner).unwrap();
        if event.from == Address::ZERO {
            *mints.entry(event.to).or_default() += 1;
        }
    }
    mints
}

/// `whole` PTKN in base units.
fn ptkn(whole: u64) -> U256 {
    U256::from(whole) * U256::from(10u64).pow(U256::from(18))
}
