//! A fresh SQLite or PostgreSQL database for tests, removed on drop.
//!
//! A missing PostgreSQL is a failure with a message that says what is needed, never a silent skip.

use rand::RngCore;
use sqlx::AnyPool;

use crate::connect_pool;

/// Which database engine a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// An SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on the local PostgreSQL server.
    Postgres,
}

/// One test per engine: `on_each_engine!(scenario: sqlite_name, postgres_name)` makes two `#[tokio::test]`s
/// that run `scenario(Engine::Sqlite)` and `scenario(Engine::Postgres)`; a leading attribute
/// (`#[tokio::test(flavor = "multi_thread")]`) replaces `#[tokio::test]`.
#[macro_export]
macro_rules! on_each_engine {
    (#[$test:meta] $scenario:ident: $sqlite:ident, $postgres:ident) => {
        #[$test]
        async fn $sqlite() {
            $scenario($crate::test_utils::Engine::Sqlite).await;
        }

        #[$test]
        async fn $postgres() {
            $scenario($crate::test_utils::Engine::Postgres).await;
        }
    };
    ($scenario:ident: $sqlite:ident, $postgres:ident) => {
        $crate::on_each_engine!(#[tokio::test] $scenario: $sqlite, $postgres);
    };
}

/// A fresh, empty database, removed on drop.
#[derive(Debug)]
pub struct TestDb {
    /// Its URL.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_drop: Option<(String, String)>,
}

/// The PostgreSQL server tests use: `CUSTODY_TEST_POSTGRES`, else the local one.
pub fn postgres_admin_url() -> String {
    std::env::var("CUSTODY_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl TestDb {
    /// A fresh database on `engine`. Panics with a clear message when PostgreSQL is unreachable.
    pub async fn new(engine: Engine) -> Self {
        match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}", dir.path().join("custody.db").display());
                Self { url, _dir: Some(dir), pg_drop: None }
            }
            Engine::Postgres => {
                let admin = postgres_admin_url();
                let name = format!("custody_test_{}", random_hex(8));
                let pool = connect_pool(&admin)
                    .await
                    .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is required for this test: {e}"));
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&pool).await.expect("create database");
                pool.close().await;
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
                Self { url: format!("{base}/{name}"), _dir: None, pg_drop: Some((admin, name)) }
            }
        }
    }

    /// A pool on the database.
    pub async fn pool(&self) -> AnyPool {
        connect_pool(&self.url).await.expect("connect to test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg_drop.take() else { return };
        // Drop runs inside or outside a runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                if let Ok(pool) = connect_pool(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&pool).await;
                }
            });
        })
        .join();
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}
