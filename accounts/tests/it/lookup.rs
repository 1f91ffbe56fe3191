//! Lookups by user id, DID and address; DID resolution; the deployed flag; migrations shared with the signer.

use alloy::primitives::Address;
use custody_accounts::{ChainContext, Did, DidResolution, Wallets};
use custody_db::test_utils::Engine;
use serde_json::json;

use crate::setup::{CHAIN, env};

async fn lookups(engine: Engine) {
    let env = env(engine).await;
    let (alice, _) = env.wallets.create("alice").await.unwrap();
    let (bob, _) = env.wallets.create("bob").await.unwrap();

    assert_eq!(env.wallets.by_did(&alice.did).await.unwrap(), Some(alice.clone()));
    assert_eq!(env.wallets.by_did(&bob.did).await.unwrap(), Some(bob.clone()));
    assert_eq!(env.wallets.by_address(alice.address).await.unwrap(), Some(alice.clone()));
    assert_eq!(env.wallets.by_address(bob.address).await.unwrap(), Some(bob.clone()));
    assert_eq!(env.wallets.get("bob").await.unwrap(), Some(bob.clone()));

    let unknown: Did = "did:peruri:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".parse().unwrap();
    assert_eq!(env.wallets.by_did(&unknown).await.unwrap(), None);
    assert_eq!(env.wallets.by_address(Address::repeat_byte(0x42)).await.unwrap(), None);
    assert_eq!(env.wallets.by_address(alice.owner).await.unwrap(), None, "the owner is not the account");
    assert_eq!(env.wallets.get("carol").await.unwrap(), None);
    assert_eq!(env.wallets.resolve(&unknown).await.unwrap(), None);

    let resolution: DidResolution = env.wallets.resolve(&alice.did).await.unwrap().unwrap();
    let json = serde_json::to_value(&resolution).unwrap();
    let method = format!("{}#controller", alice.did);
    assert_eq!(json["didDocument"]["id"], alice.did.as_str());
    assert_eq!(
        json["didDocument"]["verificationMethod"],
        json!([{
            "id": method,
            "type": "EcdsaSecp256k1RecoveryMethod2020",
            "controller": alice.did.as_str(),
            "blockchainAccountId": format!("eip155:1337:{}", alice.address.to_checksum(None)),
        }])
    );
    assert_eq!(json["didDocument"]["authentication"], json!([method]));
    assert_eq!(json["didDocumentMetadata"]["deactivated"], false);
    let created = json["didDocumentMetadata"]["created"].as_str().unwrap();
    assert!(created.len() == 20 && created.ends_with('Z') && created.starts_with("20"), "{created}");

    // Deployment is recorded per account.
    assert!(env.wallets.mark_deployed(alice.address).await.unwrap());
    assert!(!env.wallets.mark_deployed(Address::repeat_byte(0x42)).await.unwrap());
    assert!(env.wallets.get("alice").await.unwrap().unwrap().deployed);
    assert!(!env.wallets.get("bob").await.unwrap().unwrap().deployed);
}

custody_db::on_each_engine!(lookups: lookups_sqlite, lookups_postgres);

async fn migrations_coexist_with_the_key_store(engine: Engine) {
    let env = env(engine).await;
    let (wallet, _) = env.wallets.create("u").await.unwrap();
    // Both migrators run again over the shared `_sqlx_migrations`, in either order.
    env.ring.keyring.store().migrate().await.expect("key store migrates again");
    let reopened = Wallets::open(env.ring.keyring.clone(), env.pool.clone(), CHAIN).await.expect("reopens");
    env.ring.keyring.store().migrate().await.expect("key store migrates after the identity map");
    assert_eq!(reopened.get("u").await.unwrap(), Some(wallet));
    assert_eq!(reopened.chain(), &CHAIN);
    let _: &ChainContext = reopened.chain();
}

custody_db::on_each_engine!(migrations_coexist_with_the_key_store: migrations_coexist_with_the_key_store_sqlite, migrations_coexist_with_the_key_store_postgres);
