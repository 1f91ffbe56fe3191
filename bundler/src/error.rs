//! Errors of the bundler's storage and chain plumbing (RPC rejections are [`ValidationError`]s).

use crate::validation::{RpcErrorCode, ValidationError};

/// What can go wrong below the RPC.
#[derive(Debug, thiserror::Error)]
pub enum BundlerError {
    #[error("bundler database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("bundler migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored {what} is corrupt: {source}")]
    Corrupt {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("node request {op} failed: {source}")]
    Node {
        op: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("sending the bundle transaction: {0}")]
    Sender(#[from] custody_sender::Error),
    #[error("bundler configuration: {0}")]
    Config(String),
    #[error("bundler key: {0}")]
    Key(#[from] custody_signer::Error),
}

impl BundlerError {
    pub(crate) fn node(op: &'static str, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Node { op, source: Box::new(source) }
    }

    pub(crate) fn corrupt(what: &'static str, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Corrupt { what, source: Box::new(source) }
    }
}

/// Internal failures reach RPC callers as a generic -32603; the detail goes to the log.
impl From<BundlerError> for ValidationError {
    fn from(e: BundlerError) -> Self {
        tracing::error!(error = %e, "bundler internal error");
        ValidationError::new(RpcErrorCode::Internal, "internal error")
    }
}
