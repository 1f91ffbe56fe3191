//! The write gate of a SQLite database.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex, PoisonError},
};

use sqlx::AnyPool;

use crate::Dialect;

/// The write gate of a SQLite database: this process's write transactions on it take turns here, in
/// order, rather than in SQLite's busy handler, whose growing sleeps (up to 100 ms each) made the
/// latency tails of intake and of the bundler's admission. One gate per database, shared by every
/// component writing to it; open (no turns) on PostgreSQL, whose writers do not exclude each other.
#[derive(Clone, Debug, Default)]
pub struct WriteGate(Option<Arc<tokio::sync::Mutex<()>>>);

impl WriteGate {
    /// The gate of `pool`'s database.
    pub fn of(pool: &AnyPool) -> Self {
        static GATES: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = LazyLock::new(Mutex::default);
        if Dialect::of(pool) != Dialect::Sqlite {
            return Self(None);
        }
        let url = pool.connect_options().database_url.as_str().to_owned();
        let mut gates = GATES.lock().unwrap_or_else(PoisonError::into_inner);
        Self(Some(gates.entry(url).or_default().clone()))
    }

    /// Whether writers take turns (SQLite).
    pub fn takes_turns(&self) -> bool {
        self.0.is_some()
    }

    /// This writer's turn (on PostgreSQL at once); hold it until the write commits.
    pub async fn turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.0 {
            Some(gate) => Some(gate.clone().lock_owned().await),
            None => None,
        }
    }

    /// A write transaction on `pool` (take [`Self::turn`] first). On SQLite it is `BEGIN IMMEDIATE`: the
    /// write lock is taken at BEGIN, where the busy timeout applies. A deferred transaction that reads
    /// first and then finds the lock held (say by a dropped write whose rollback is still running) fails
    /// at once with "database is locked" instead.
    pub async fn begin(&self, pool: &AnyPool) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        if self.takes_turns() { pool.begin_with("BEGIN IMMEDIATE").await } else { pool.begin().await }
    }
}

#[cfg(test)]
mod tests {
    use super::WriteGate;
    use crate::{
        Dialect,
        test_utils::{Engine, TestDb},
    };

    #[tokio::test]
    async fn sqlite_writers_share_one_gate_per_database() {
        let db = TestDb::new(Engine::Sqlite).await;
        let (a, b) = (db.pool().await, db.pool().await);
        assert_eq!(Dialect::of(&a), Dialect::Sqlite);
        let (gate_a, gate_b) = (WriteGate::of(&a), WriteGate::of(&b));
        assert!(gate_a.takes_turns());
        let turn = gate_a.turn().await;
        assert!(turn.is_some());
        assert!(gate_b.0.as_ref().is_some_and(|g| g.try_lock().is_err()), "the second pool waits for the first");
        drop(turn);
        assert!(gate_b.turn().await.is_some());
    }

    #[tokio::test]
    async fn postgres_writers_do_not_take_turns() {
        let db = TestDb::new(Engine::Postgres).await;
        let pool = db.pool().await;
        assert_eq!(Dialect::of(&pool), Dialect::Postgres);
        let gate = WriteGate::of(&pool);
        assert!(!gate.takes_turns());
        assert!(gate.turn().await.is_none());
    }
}
