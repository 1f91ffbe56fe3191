//! Creating wallets: idempotent, one key and one row per user, also under concurrent calls.

use std::collections::HashSet;

use custody_accounts::{Custody, Did};
use custody_db::test_utils::Engine;
use serde_json::json;

use crate::setup::{account_of, env};

async fn create_is_idempotent(engine: Engine) {
    let env = env(engine).await;
    let (wallet, created) = env.wallets.create("user-1").await.unwrap();
    assert!(created, "the first call creates");

    let keys = env.user_keys().await;
    assert_eq!(keys.len(), 1);
    assert_eq!(wallet.owner, keys[0].address().unwrap());
    assert_eq!(wallet.owner_key_id, keys[0].id);
    assert_eq!(wallet.owner_key_version, keys[0].version);
    assert_eq!(wallet.address, account_of(wallet.owner));
    assert_eq!(wallet.user_id, "user-1");
    assert_eq!(wallet.custody, Custody::Custodial);
    assert!(!wallet.deployed && !wallet.deactivated);
    assert_eq!(wallet.did.as_str().parse::<Did>().unwrap(), wallet.did);
    assert_eq!(wallet.did.id().len(), 32);

    let (again, created) = env.wallets.create("user-1").await.unwrap();
    assert!(!created, "the second call finds it");
    assert_eq!(again, wallet);
    assert_eq!(env.wallets.get("user-1").await.unwrap(), Some(wallet.clone()));
    assert_eq!(env.user_keys().await.len(), 1);
    assert_eq!(env.rows().await, 1);

    let json = serde_json::to_value(&wallet).unwrap();
    assert_eq!(
        json,
        json!({
            "user_id": "user-1",
            "did": wallet.did.as_str(),
            "address": wallet.address.to_checksum(None),
            "owner": wallet.owner.to_checksum(None),
            "custody": "custodial",
            "deployed": false
        })
    );
}

custody_db::on_each_engine!(create_is_idempotent: create_is_idempotent_sqlite, create_is_idempotent_postgres);

async fn concurrent_creates(engine: Engine) {
    let env = env(engine).await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let wallets = env.wallets.clone();
            tokio::spawn(async move { wallets.create("racer").await })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap().unwrap());
    }
    assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1, "exactly one call created");
    let first = &results[0].0;
    assert!(results.iter().all(|(wallet, _)| wallet == first), "every call got the same wallet");
    let keys = env.user_keys().await;
    assert_eq!(keys.len(), 1, "exactly one user key");
    assert_eq!(keys[0].id, first.owner_key_id);
    assert_eq!(env.rows().await, 1, "exactly one row");
}

custody_db::on_each_engine!(#[tokio::test(flavor = "multi_thread", worker_threads = 4)] concurrent_creates: concurrent_creates_sqlite, concurrent_creates_postgres);

#[tokio::test]
async fn users_get_distinct_dids_and_addresses_without_their_user_id() {
    let env = env(Engine::Sqlite).await;
    // User ids drawn from the base32 alphabet, so that they could appear in a DID if it leaked them.
    let users = ["abcdefgh", "abcdefgi", "zz22", "user@example.com", "ユーザー"];
    let mut dids = HashSet::new();
    let mut addresses = HashSet::new();
    let mut owners = HashSet::new();
    for user in users {
        let (wallet, created) = env.wallets.create(user).await.unwrap();
        assert!(created);
        assert!(!wallet.did.as_str().contains(user), "the DID does not contain the user id");
        assert!(!wallet.did.as_str().to_lowercase().contains(&user.to_lowercase()));
        dids.insert(wallet.did);
        addresses.insert(wallet.address);
        owners.insert(wallet.owner);
    }
    assert_eq!((dids.len(), addresses.len(), owners.len()), (users.len(), users.len(), users.len()));
    assert_eq!(env.user_keys().await.len(), users.len());
}

#[tokio::test]
async fn the_did_is_the_keyed_pseudonym_of_the_user_id() {
    let env = env(Engine::Sqlite).await;
    let (wallet, _) = env.wallets.create("user-7").await.unwrap();
    let pseudonym = env.ring.keyring.pseudonym(b"did:peruri:user-7").await.unwrap();
    assert_eq!(
        base32_decode(wallet.did.id()),
        pseudonym[..20],
        "DID id = base32(HMAC(\"did:peruri:\" || user_id)[..20])"
    );
}

/// RFC 4648 base32 (lowercase, no padding), decoded bit by bit: an independent check of the encoder.
fn base32_decode(text: &str) -> Vec<u8> {
    let bits: Vec<bool> = text
        .bytes()
        .flat_map(|c| {
            let v = b"abcdefghijklmnopqrstuvwxyz234567".iter().position(|&a| a == c).expect("base32 character");
            (0..5).rev().map(move |i| v >> i & 1 == 1)
        })
        .collect();
    bits.chunks_exact(8).map(|byte| byte.iter().fold(0u8, |acc, &bit| acc << 1 | u8::from(bit))).collect()
}
