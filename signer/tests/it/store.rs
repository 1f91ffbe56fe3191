//! The key store on SQLite and PostgreSQL.

use custody_db::test_utils::Engine;
use custody_signer::{KeyClass, KeyState, test_utils::TestKeyring};

async fn round_trip(engine: Engine) {
    let t = TestKeyring::new(engine).await;
    let infra = t.keyring.create_infra("issuer").await.unwrap();
    let user = t.keyring.create_user("user-1").await.unwrap();

    let all = t.keyring.list(None).await.unwrap();
    let classes: Vec<_> = all.iter().map(|k| k.class).collect();
    for class in [KeyClass::Kek, KeyClass::Pseudonym, KeyClass::Infra, KeyClass::User] {
        assert!(classes.contains(&class), "{class} missing from {classes:?}");
    }
    let stored = t.keyring.store().get(&user.id).await.unwrap().unwrap();
    assert_eq!(stored.wrapped, user.wrapped);
    assert_eq!(stored.address(), user.address());
    assert_eq!(stored.kek_version, Some(1));
    let stored = t.keyring.store().active(KeyClass::Infra, "issuer").await.unwrap().unwrap();
    assert_eq!(stored.id, infra.id);
    assert_eq!(stored.public_key, infra.public_key);

    // A retired key no longer signs and the next version is free.
    t.keyring.store().set_state(&infra.id, KeyState::Retired).await.unwrap();
    assert!(t.keyring.signer(KeyClass::Infra, "issuer").await.is_err());
    let v2 = t.keyring.create_infra("issuer").await.unwrap();
    assert_eq!(v2.version, 2);
    assert_ne!(v2.address(), infra.address());

    // Migrations are idempotent.
    t.keyring.store().migrate().await.unwrap();
}

custody_db::on_each_engine!(round_trip: sqlite_round_trip, postgres_round_trip);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_user_creation() {
    let t = TestKeyring::new(Engine::Postgres).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let ring = t.keyring.clone();
        tasks.push(tokio::spawn(async move { ring.create_user(&format!("p{i}")).await.unwrap() }));
    }
    let mut addresses = std::collections::HashSet::new();
    for task in tasks {
        assert!(addresses.insert(task.await.unwrap().address().unwrap()));
    }
    assert_eq!(t.keyring.list(Some(KeyClass::User)).await.unwrap().len(), 40);
}
