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

    // An owner rotation's successor signs nothing until promoted; then it signs and the old key does not.
    let successor = t.keyring.create_user_successor("user-1").await.unwrap();
    assert_eq!((successor.version, successor.state), (2, KeyState::Retired));
    assert_ne!(successor.address(), user.address());
    assert!(t.keyring.signer_for(&successor).await.is_err(), "not before the owner changed on-chain");
    assert_eq!(t.keyring.signer(KeyClass::User, "user-1").await.unwrap().address(), user.address().unwrap());
    t.keyring.promote_user(&successor.id, &user.id).await.unwrap();
    t.keyring.promote_user(&successor.id, &user.id).await.unwrap(); // idempotent
    assert_eq!(t.keyring.signer(KeyClass::User, "user-1").await.unwrap().address(), successor.address().unwrap());
    let old = t.keyring.store().get(&user.id).await.unwrap().unwrap();
    assert_eq!(old.state, KeyState::Retired);
    assert!(t.keyring.signer_for(&old).await.is_err());
    assert!(t.keyring.promote_user(&infra.id, &user.id).await.is_err(), "user keys only");

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
