//! Errors of the transaction sender.

/// What went wrong sending a transaction.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed (what was being done).
    #[error("database: {what}: {source}")]
    Db {
        /// What was being done.
        what: &'static str,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// The migrations failed.
    #[error("migrating the sender's tables: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    /// The node failed or could not be reached (the call).
    #[error("node: {call}: {message}")]
    Rpc {
        /// The JSON-RPC method.
        call: &'static str,
        /// The transport's or the node's message.
        message: String,
    },
    /// The HSM refused to sign.
    #[error("signing: {0}")]
    Sign(alloy::signers::Error),
    /// A stored row does not decode (the column).
    #[error("corrupt sender row: {0}")]
    Corrupt(&'static str),
    /// Another sender recorded `id` at the same time: roll this write back (its nonce is given back).
    /// Callers avoid it by claiming their own row first in the same write.
    #[error("send {0} was recorded concurrently by another sender")]
    Concurrent(String),
    /// `id` was recorded before by another key, or prepared for another.
    #[error("send {0} was recorded or prepared for another key")]
    OtherKey(String),
    /// The journal did not record a signed transaction (its broadcast waits for the next track).
    #[error("journal: {0}")]
    Journal(String),
}

impl Error {
    pub(crate) fn db(what: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Db { what, source }
    }

    pub(crate) fn rpc<E: std::fmt::Display>(call: &'static str) -> impl FnOnce(E) -> Self {
        move |e| Self::Rpc { call, message: e.to_string() }
    }

    /// A short label for metrics.
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::Db { .. } | Self::Migrate(_) => "database",
            Self::Rpc { .. } => "chain",
            Self::Sign(_) => "signing",
            Self::Corrupt(_) => "corrupt_row",
            Self::OtherKey(_) => "other_key",
            Self::Concurrent(_) => "concurrent",
            Self::Journal(_) => "journal",
        }
    }
}
