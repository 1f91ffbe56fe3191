//! The transaction sender against real parts: a local chain, an HSM key on SoftHSM2, SQLite and
//! PostgreSQL. Each test checks one promise: once per id, nothing lost across a crash, a refused
//! transaction never wedging its key, a taken nonce noticed, several senders of one key.

#![allow(clippy::unwrap_used, missing_debug_implementations)]

use std::time::Duration;

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use custody_contracts::test_utils::LocalChain;
use custody_db::test_utils::Engine;
use custody_sender::{Call, Outcome, Sender, SenderConfig, Settled};
use custody_signer::test_utils::TestKeyring;
use custody_signer::{EthSigner, KeyClass};

struct Env {
    chain: LocalChain,
    keys: TestKeyring,
    key: EthSigner,
    provider: DynProvider,
}

async fn env(engine: Engine) -> Env {
    let chain = LocalChain::start().await.unwrap();
    let keys = TestKeyring::new(engine).await;
    keys.keyring.create_infra("sender").await.unwrap();
    let key = keys.keyring.signer(KeyClass::Infra, "sender").await.unwrap();
    let provider = ProviderBuilder::new().connect_http(chain.rpc_url().parse().unwrap()).erased();
    Env { chain, keys, key, provider }
}

impl Env {
    async fn sender(&self) -> Sender {
        Sender::open(self.keys.db.pool().await, self.provider.clone(), SenderConfig::default()).await.unwrap()
    }

    /// Tracks until `ids` are all settled; finishes and returns them.
    async fn settle(&self, sender: &Sender, ids: &[&str]) -> Vec<Settled> {
        let mut out: Vec<Settled> = Vec::new();
        for _ in 0..100 {
            for settled in sender.track(&self.key, "").await.unwrap() {
                sender.finish(&settled.id).await.unwrap();
                out.push(settled);
            }
            if ids.iter().all(|id| out.iter().any(|s| s.id == *id)) {
                return out;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("not settled: {ids:?}; settled so far {out:?}");
    }
}

/// A value transfer of `wei` to a fresh address.
fn pay(to: Address, wei: u64) -> Call {
    Call { to, value: U256::from(wei), ..Default::default() }
}

fn included(settled: &Settled) -> &alloy::rpc::types::TransactionReceipt {
    match &settled.outcome {
        Outcome::Included(receipt) => receipt,
        other => panic!("{}: expected included, got {other:?}", settled.id),
    }
}

async fn sends_once_per_id(engine: Engine) {
    let env = env(engine).await;
    env.chain.set_balance(env.key.address(), U256::from(1_000_000u64)).await.unwrap();
    let sender = env.sender().await;
    let to = Address::repeat_byte(0x42);
    let first = sender.send("pay:1", &env.key, pay(to, 7), "ctx").await.unwrap();
    assert!(first.new);
    // The same id again (a retry, another process): the first send, no second transfer.
    let again = sender.send("pay:1", &env.key, pay(to, 7), "ctx").await.unwrap();
    assert_eq!((again.nonce, again.hash, again.new), (first.nonce, first.hash, false));
    let settled = env.settle(&sender, &["pay:1"]).await;
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].context, "ctx");
    let receipt = included(&settled[0]);
    assert!(receipt.status());
    assert_eq!(receipt.transaction_hash, first.hash);
    assert_eq!(env.provider.get_balance(to).await.unwrap(), U256::from(7));
    // Finished: not returned again.
    assert!(sender.track(&env.key, "").await.unwrap().is_empty());
    // A second id takes the next nonce.
    assert_eq!(sender.send("pay:2", &env.key, pay(to, 1), "").await.unwrap().nonce, first.nonce + 1);
    // Callers sharing a key see only their own outcomes (by id prefix); tracking still follows all.
    assert!(sender.track(&env.key, "other:").await.unwrap().is_empty());
    let mine = sender.track(&env.key, "pay:").await.unwrap();
    assert_eq!(mine.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["pay:2"]);
}

custody_db::on_each_engine!(sends_once_per_id: sqlite_sends_once_per_id, postgres_sends_once_per_id);

/// Recorded, then the process died before broadcasting: another sender over the database sends the stored
/// bytes. A write rolled back gives its nonce back.
#[tokio::test]
async fn a_recorded_transaction_survives_a_crash_and_a_rollback_gives_its_nonce_back() {
    let env = env(Engine::Sqlite).await;
    let to = Address::repeat_byte(0x43);
    let first = env.sender().await;
    let prepared = first.prepare(env.key.address(), pay(to, 0)).await.unwrap();
    let mut write = first.begin().await.unwrap();
    let lost = first.record(&mut write, "lost", &env.key, prepared.clone(), "").await.unwrap();
    drop(write); // rolled back
    let mut write = first.begin().await.unwrap();
    let sent = first.record(&mut write, "kept", &env.key, prepared, "").await.unwrap();
    write.commit().await.unwrap();
    assert_eq!(sent.nonce, lost.nonce, "the rolled-back nonce is used again");
    drop(first); // dies before broadcasting

    let second = env.sender().await;
    let settled = env.settle(&second, &["kept"]).await;
    assert_eq!(included(&settled[0]).transaction_hash, sent.hash, "the stored bytes were sent");
}

/// The node refuses a call for good (gas below the intrinsic 21,000): its nonce is filled by a
/// self-transfer, the send ends `rejected` with the node's reason, and the key's next send is mined.
#[tokio::test]
async fn a_refused_transaction_never_wedges_its_key() {
    let env = env(Engine::Sqlite).await;
    let sender = env.sender().await;
    let to = Address::repeat_byte(0x44);
    let refused = sender.send("refused", &env.key, Call { gas_limit: Some(1_000), ..pay(to, 0) }, "").await.unwrap();
    let next = sender.send("next", &env.key, pay(to, 0), "").await.unwrap();
    assert_eq!(next.nonce, refused.nonce + 1);
    let settled = env.settle(&sender, &["refused", "next"]).await;
    let outcome = |id| &settled.iter().find(|s| s.id == id).unwrap().outcome;
    match outcome("refused") {
        Outcome::Rejected(reason) => assert!(reason.to_lowercase().contains("gas"), "{reason}"),
        other => panic!("expected rejected, got {other:?}"),
    }
    assert!(matches!(outcome("next"), Outcome::Included(r) if r.status()), "{:?}", outcome("next"));
    assert_eq!(env.provider.get_transaction_count(env.key.address()).await.unwrap(), next.nonce + 1);
}

/// The key sent a transaction of its own at the nonce a recorded send holds: that send is `dropped`.
#[tokio::test]
async fn a_nonce_taken_by_another_transaction_drops_the_send() {
    let env = env(Engine::Sqlite).await;
    let sender = env.sender().await;
    let prepared = sender.prepare(env.key.address(), pay(Address::repeat_byte(0x45), 0)).await.unwrap();
    let mut write = sender.begin().await.unwrap();
    let sent = sender.record(&mut write, "held", &env.key, prepared, "").await.unwrap();
    write.commit().await.unwrap();
    let other = ProviderBuilder::new()
        .wallet(EthereumWallet::from(env.key.clone()))
        .connect_http(env.chain.rpc_url().parse().unwrap());
    let request = TransactionRequest::default()
        .with_to(Address::repeat_byte(0x46))
        .with_nonce(sent.nonce)
        .with_gas_limit(21_000)
        .with_max_fee_per_gas(0)
        .with_max_priority_fee_per_gas(0);
    assert!(other.send_transaction(request).await.unwrap().get_receipt().await.unwrap().status());
    let settled = env.settle(&sender, &["held"]).await;
    assert!(matches!(settled[0].outcome, Outcome::Dropped), "{settled:?}");
    // The next send starts after the taken nonce.
    assert_eq!(sender.send("after", &env.key, pay(Address::ZERO, 0), "").await.unwrap().nonce, sent.nonce + 1);
}

/// Two senders (as two processes would) send from one key at once: every nonce once, every call mined.
#[tokio::test]
async fn postgres_several_senders_of_one_key_share_its_nonces() {
    let env = env(Engine::Postgres).await;
    let (a, b) = (env.sender().await, env.sender().await);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16 {
        let sender = if i % 2 == 0 { a.clone() } else { b.clone() };
        let key = env.key.clone();
        tasks.spawn(async move {
            sender.send(&format!("c{i}"), &key, pay(Address::repeat_byte(0x47), 0), "").await.unwrap().nonce
        });
    }
    let mut nonces = tasks.join_all().await;
    nonces.sort_unstable();
    assert_eq!(nonces, (0..16).collect::<Vec<u64>>());
    let ids: Vec<String> = (0..16).map(|i| format!("c{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    for settled in env.settle(&a, &ids).await {
        assert!(included(&settled).status());
    }
    assert_eq!(env.provider.get_transaction_count(env.key.address()).await.unwrap(), 16);
}
