//! Integration tests of the activity mirror against real parts: SQLite and PostgreSQL, a SoftHSM token
//! holding the issuer and anchor keys, and a local chain with the Peruri contracts.

#![allow(clippy::unwrap_used, unreachable_pub, missing_debug_implementations, dead_code)]

/// One test per engine: `$sqlite` and `$postgres` run `$scenario(engine)`.
macro_rules! on_each_engine {
    ($scenario:ident: $sqlite:ident, $postgres:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            $scenario(custody_db::test_utils::Engine::Sqlite).await;
        }

        #[tokio::test]
        async fn $postgres() {
            $scenario(custody_db::test_utils::Engine::Postgres).await;
        }
    };
}

mod intake;
mod mirror;
mod rabbitmq;
mod setup;
mod storage;
