//! The issuance tables (SQLite or PostgreSQL through sqlx `Any`): every query of the crate is a
//! [`Store`] method in one of these modules, named for what it holds.
//!
//! | module | tables | who |
//! |---|---|---|
//! | `intake` | activities, items, counters, outbox (written) | [`crate::Issuance`] |
//! | `views` | activities and their items and calls (read) | the API, the benchmarks |
//! | `batches` | the outbox claimed into merkle batches; batches settled | the worker's batch and confirm |
//! | `calls` | `issuance_txs`: planned → signed → submitted → mined or failed | the worker's sign, submit, confirm |
//! | `caches` | the indexer's cursor, `token_balance_cache`, `badge_index` | the indexer, the API |

mod batches;
mod caches;
mod calls;
mod intake;
mod views;

pub(crate) use caches::Transfer;
pub(crate) use calls::CallOutcome;
pub(crate) use intake::{Intake, fingerprint, intake_kind_ok};
pub use intake::{NewActivity, TrackRequest, Tracked};
pub use views::{
    ActivityCursor, ActivityQuery, ActivityStatus, ActivitySummary, ActivityView, IssuedItem, MirrorTotals,
};

use custody_db::{Dialect, WriteGate};
use sqlx::{Any, AnyPool, Transaction, any::AnyArguments, query::Query};
use tokio::sync::{OwnedMutexGuard, mpsc};

use crate::Error;

pub(crate) use custody_db::now_millis;

/// The issuance tables.
#[derive(Clone, Debug)]
pub(crate) struct Store {
    pub(crate) pool: AnyPool,
    postgres: bool,
    /// The database's write gate.
    write_gate: WriteGate,
    /// SQLite: the intake writer's queue (see [`intake::intake_writer`]).
    intake: Option<mpsc::Sender<intake::Queued>>,
}

impl Store {
    /// Opens the store on `pool` and applies this crate's migrations (others' are left alone).
    pub(crate) async fn open(pool: AnyPool) -> Result<Self, Error> {
        let postgres = Dialect::of(&pool).is_postgres();
        custody_db::migrate(&pool, sqlx::migrate!("./migrations/postgres"), sqlx::migrate!("./migrations/sqlite"))
            .await?;
        let write_gate = WriteGate::of(&pool);
        let intake = write_gate.takes_turns().then(|| {
            let (queue, requests) = mpsc::channel(4 * intake::MAX_GROUP);
            tokio::spawn(intake::intake_writer(pool.clone(), write_gate.clone(), requests));
            queue
        });
        Ok(Self { pool, postgres, write_gate, intake })
    }

    /// Begins a write transaction, on SQLite after waiting its turn at the write gate (the guard
    /// returned with the transaction; keep it until the commit).
    async fn begin_write(
        &self,
        what: &'static str,
    ) -> Result<(Option<OwnedMutexGuard<()>>, Transaction<'static, Any>), Error> {
        let turn = self.write_gate.turn().await;
        Ok((turn, self.write_gate.begin(&self.pool).await.map_err(Error::db(what))?))
    }

    /// Runs `statements` (each with the name of its operation) in one write transaction, `what`.
    async fn write_all<'q>(
        &self,
        what: &'static str,
        statements: impl IntoIterator<Item = (Query<'q, Any, AnyArguments<'q>>, &'static str)>,
    ) -> Result<(), Error> {
        let (_turn, mut tx) = self.begin_write(what).await?;
        for (statement, op) in statements {
            statement.execute(&mut *tx).await.map_err(Error::db(op))?;
        }
        tx.commit().await.map_err(Error::db(what))
    }
}

/// `$1, $2, …, $n`: the placeholders of `n` bound values.
fn placeholders(n: usize) -> String {
    (1..=n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}
