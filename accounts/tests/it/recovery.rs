//! A creation that crashed half-way is finished by the next call, adopting the key it made.

use custody_db::test_utils::Engine;
use custody_signer::KeyClass;

use crate::setup::{account_of, env};

async fn stale_pending_row_is_taken_over(engine: Engine) {
    let env = env(engine).await;
    // A creator claimed the row long ago, made the owner key, and died.
    sqlx::query(
        "INSERT INTO identity_map (user_id, did, state, claim, claimed_at, created_at) \
         VALUES ($1, $2, 'pending', $3, $4, $5)",
    )
    .bind("crashed")
    .bind("did:peruri:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
    .bind("dead-claim")
    .bind(0_i64)
    .bind(0_i64)
    .execute(&env.pool)
    .await
    .unwrap();
    let key = env.ring.keyring.create_user("crashed").await.unwrap();

    let (wallet, created) = env.wallets.create("crashed").await.unwrap();
    assert!(created, "the call that finishes the row reports the creation");
    assert_eq!(wallet.owner_key_id, key.id, "the existing owner key is adopted");
    assert_eq!(wallet.address, account_of(key.address().unwrap()));
    assert_eq!(env.user_keys().await.len(), 1);
    assert_eq!(env.rows().await, 1);
    assert!(!env.wallets.create("crashed").await.unwrap().1);
}

custody_db::on_each_engine!(stale_pending_row_is_taken_over: stale_pending_row_is_taken_over_sqlite, stale_pending_row_is_taken_over_postgres);

#[tokio::test]
async fn an_active_key_without_a_row_is_adopted() {
    // The creator made the key, then failed and released its row.
    let env = env(Engine::Sqlite).await;
    let key = env.ring.keyring.create_user("orphan").await.unwrap();
    let (wallet, created) = env.wallets.create("orphan").await.unwrap();
    assert!(created);
    assert_eq!(wallet.owner_key_id, key.id);
    let keys = env.ring.keyring.list(Some(KeyClass::User)).await.unwrap();
    assert_eq!(keys.len(), 1);
}
