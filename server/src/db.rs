//! The service database: every component's migrations, applied at start-up.

use sqlx::AnyPool;

/// Applies the key store's, the transaction sender's and the service's migrations (each set ignores
/// the others').
pub(crate) async fn migrate(pool: &AnyPool) -> anyhow::Result<()> {
    custody_signer::KeyStore::from_pool(pool.clone()).migrate().await?;
    custody_sender::Sender::migrate(pool).await?;
    custody_db::migrate(pool, sqlx::migrate!("./migrations/postgres"), sqlx::migrate!("./migrations/sqlite")).await?;
    Ok(())
}
