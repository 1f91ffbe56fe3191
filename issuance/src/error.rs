//! The crate's error type.

/// What can go wrong in intake, the worker and the indexer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The activity is not acceptable (bad type, time, user id or amount).
    #[error("invalid activity: {0}")]
    Invalid(&'static str),
    /// Well-formed but outside what is accepted (e.g. `occurred_at` in the future).
    #[error("{0}")]
    OutOfRange(&'static str),
    /// `occurred_at` was sent but is not an RFC 3339 time.
    #[error("occurred_at must be an RFC 3339 time, e.g. 2026-01-05T08:00:00Z")]
    InvalidOccurredAt,
    /// The Idempotency-Key was used before with other parameters.
    #[error("this idempotency key was used with other parameters")]
    IdempotencyConflict,
    /// The database failed.
    #[error("issuance store {op}: {source}")]
    Database {
        /// The query.
        op: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The migrations failed.
    #[error("issuance migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored row does not decode.
    #[error("issuance row is corrupt: {0}")]
    CorruptRow(&'static str),
    /// The chain node failed or is unreachable.
    #[error("chain {op}: {source}")]
    Rpc {
        /// The call.
        op: &'static str,
        /// The transport's error.
        #[source]
        source: alloy::transports::TransportError,
    },
    /// The transaction sender failed (the database, the node or the HSM).
    #[error("sending a transaction: {0}")]
    Send(#[from] custody_sender::Error),
    /// The issuer key is missing or unusable.
    #[error("issuer key: {0}")]
    Keyring(#[source] custody_signer::Error),
    /// The intake writer task is gone (the process is stopping).
    #[error("the activity intake is stopping; retry")]
    IntakeStopped,
    /// A recipient's wallet could not be resolved.
    #[error("recipient wallet: {0}")]
    Wallets(#[source] custody_accounts::Error),
}

impl Error {
    /// A short label of the kind, for metrics (`reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Invalid(_) | Self::OutOfRange(_) | Self::InvalidOccurredAt => "invalid",
            Self::IdempotencyConflict => "idempotency_conflict",
            Self::Database { .. } | Self::Migrate(_) => "database",
            Self::CorruptRow(_) => "corrupt_row",
            Self::Rpc { .. } => "chain",
            Self::Keyring(_) => "signing",
            Self::Send(e) => e.reason(),
            Self::IntakeStopped => "stopping",
            Self::Wallets(_) => "wallets",
        }
    }

    /// A database error of `op`.
    pub(crate) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Database { op, source }
    }

    /// An RPC error of `op`.
    pub(crate) fn rpc(op: &'static str) -> impl FnOnce(alloy::transports::TransportError) -> Self {
        move |source| Self::Rpc { op, source }
    }
}
