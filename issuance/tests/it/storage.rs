//! Storage format: addresses are stored as lowercase hex, and rows written before that (EIP-55) are
//! rewritten by the migration so that lookups by account still find them.

use alloy::primitives::{U256, address};
use custody_db::test_utils::Engine;
use custody_issuance::Issuance;
use sqlx::Row;

use crate::setup::{intake, rules};

async fn checksummed_cache_rows_are_found_after_the_migration(engine: Engine) {
    let (db, issuance) = intake(engine).await;
    let pool = db.pool().await;
    let account = address!("0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf");
    // Rows as the indexer wrote them before 20261204000001: the account in EIP-55.
    sqlx::query("INSERT INTO token_balance_cache (account, balance) VALUES ($1, '42')")
        .bind(account.to_checksum(None))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO badge_index (account, badge_id, amount) VALUES ($1, '202601', '1')")
        .bind(account.to_checksum(None))
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(issuance.token_balance(account).await.unwrap(), U256::ZERO, "looked up by the lowercase form");

    // Run the migration again over them.
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 20261204000001").execute(&pool).await.unwrap();
    let issuance = Issuance::open(pool.clone(), rules()).await.unwrap();
    assert_eq!(issuance.token_balance(account).await.unwrap(), U256::from(42));
    assert_eq!(issuance.badges(account).await.unwrap(), vec![(U256::from(202_601), U256::from(1))]);
    let stored: String =
        sqlx::query("SELECT account FROM token_balance_cache").fetch_one(&pool).await.unwrap().get("account");
    assert_eq!(stored, custody_db::encode_address(account));
}

custody_db::on_each_engine!(checksummed_cache_rows_are_found_after_the_migration: checksummed_cache_rows_are_found_after_the_migration_sqlite, checksummed_cache_rows_are_found_after_the_migration_postgres);
