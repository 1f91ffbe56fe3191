//! Errors of the paymaster.

/// What can go wrong sponsoring.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is unusable.
    #[error("paymaster configuration: {0}")]
    Config(String),
    /// The database failed.
    #[error("paymaster database: {what}: {source}")]
    Db {
        /// What was being done.
        what: &'static str,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// The migrations failed.
    #[error("paymaster migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The node failed.
    #[error("node: {call}: {message}")]
    Rpc {
        /// The JSON-RPC method.
        call: &'static str,
        /// The message.
        message: String,
    },
    /// The HSM failed to sign.
    #[error("signing a sponsorship: {0}")]
    Sign(#[from] custody_signer::Error),
    /// A stored row does not decode.
    #[error("corrupt paymaster row: {0}")]
    Corrupt(&'static str),
}

impl Error {
    pub(crate) fn db(what: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Db { what, source }
    }

    pub(crate) fn rpc<E: std::fmt::Display>(call: &'static str) -> impl FnOnce(E) -> Self {
        move |e| Self::Rpc { call, message: e.to_string() }
    }
}
