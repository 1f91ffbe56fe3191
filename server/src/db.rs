//! The service database: every component's migrations, applied at start-up.

use sqlx::{AnyPool, migrate::Migrator};

/// Applies the key store's and the service's migrations (each set ignores the others').
pub(crate) async fn migrate(pool: &AnyPool) -> anyhow::Result<()> {
    custody_signer::KeyStore::from_pool(pool.clone()).migrate().await?;
    let postgres = pool.acquire().await?.backend_name() == "PostgreSQL";
    let mut migrator: Migrator =
        if postgres { sqlx::migrate!("./migrations/postgres") } else { sqlx::migrate!("./migrations/sqlite") };
    migrator.set_ignore_missing(true);
    migrator.run(pool).await?;
    Ok(())
}
