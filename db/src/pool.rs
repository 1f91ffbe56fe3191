//! The pool, its dialect and each crate's migrations.

use std::time::Duration;

use sqlx::{
    AnyPool, Executor,
    any::AnyPoolOptions,
    migrate::{MigrateError, Migrator},
};

/// How long a pooled connection may sit idle before it is pinged on acquire.
const PING_IF_IDLE: Duration = Duration::from_secs(5);

/// A pool on `sqlite://…` (created if missing; WAL, busy timeout) or `postgres://…`.
pub async fn connect_pool(url: &str) -> Result<AnyPool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let sqlite = url.starts_with("sqlite:");
    let url = if sqlite && !url.contains("mode=") && !url.contains(":memory:") {
        format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
    } else {
        url.to_owned()
    };
    let options = AnyPoolOptions::new()
        .max_connections(if sqlite { 8 } else { 16 })
        .acquire_timeout(Duration::from_secs(10))
        // sqlx pings a connection as it returns to the pool, and by default again on every acquire: a
        // round trip per transaction. Now only a connection idle for longer than PING_IF_IDLE is pinged
        // (one that broke since its release fails its next statement once, and is then closed).
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_IF_IDLE {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if sqlite {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
                         PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                    )
                    .await?;
                }
                Ok(())
            })
        });
    options.connect(&url).await
}

/// The SQL dialect of a pool's database, for the few queries that differ between the two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite (the embedded default).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Dialect {
    /// The dialect of `pool`, read from the URL it was connected with (no round trip).
    pub fn of(pool: &AnyPool) -> Self {
        if pool.connect_options().database_url.scheme() == "sqlite" { Self::Sqlite } else { Self::Postgres }
    }

    /// Whether this is PostgreSQL.
    pub fn is_postgres(self) -> bool {
        self == Self::Postgres
    }
}

/// Applies one crate's migrations: `postgres` or `sqlite` by the pool's dialect (each crate passes
/// `sqlx::migrate!` of its own two folders). The crates share one `_sqlx_migrations` table, so
/// versions must be unique across every crate's folders and the other crates' entries are ignored.
pub async fn migrate(pool: &AnyPool, postgres: Migrator, sqlite: Migrator) -> Result<(), MigrateError> {
    let mut migrator = match Dialect::of(pool) {
        Dialect::Postgres => postgres,
        Dialect::Sqlite => sqlite,
    };
    migrator.set_ignore_missing(true);
    migrator.run(pool).await
}

/// Now, in Unix milliseconds (the timestamps every table of the service stores).
pub fn now_millis() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}
