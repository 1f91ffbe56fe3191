//! Errors of the identity map. None of them carries a user id: rows are named by their DID.

use std::time::Duration;

use alloy::primitives::Address;

/// Everything that can go wrong in wallets and identities.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A user id is empty, longer than [`crate::MAX_USER_ID_CHARS`] characters, or holds a control character.
    #[error("invalid user id: {0}")]
    InvalidUserId(&'static str),
    /// A string is not a `did:peruri:<id>` DID.
    #[error("malformed DID: {0}")]
    MalformedDid(&'static str),
    /// The keyring failed (pseudonym, owner key).
    #[error("{op}: {source}")]
    Keyring {
        /// What the service was doing.
        op: &'static str,
        /// The signing core's error.
        #[source]
        source: custody_signer::Error,
    },
    /// The identity map's database failed.
    #[error("identity map {op}: {source}")]
    Database {
        /// The query.
        op: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The identity map's migrations failed.
    #[error("identity map migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored row does not decode.
    #[error("identity map row {did} is corrupt: {column}")]
    CorruptRow {
        /// The row's DID.
        did: String,
        /// Which column is wrong.
        column: &'static str,
    },
    /// The owner key has no public key (it is not a signing key).
    #[error("owner key {key_id} has no public key")]
    OwnerKeyWithoutPublicKey {
        /// The key's id.
        key_id: String,
    },
    /// Another caller's wallet creation for the same user neither finished nor let go in time.
    #[error("wallet creation did not finish within {0:?}")]
    CreateTimedOut(Duration),
    /// The task that creates the owner key and completes the row panicked or was cancelled.
    #[error("wallet creation task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A JSON-RPC request to the chain failed.
    #[error("{op}: {source}")]
    Rpc {
        /// The request.
        op: &'static str,
        /// The transport's error.
        #[source]
        source: alloy::transports::TransportError,
    },
    /// A contract call failed.
    #[error("{op}: {source}")]
    Contract {
        /// The call.
        op: &'static str,
        /// The contract error (boxed: it is large).
        #[source]
        source: Box<alloy::contract::Error>,
    },
    /// The chain is not the configured one.
    #[error("the chain's id is {actual}, the configuration says {expected}")]
    ChainIdMismatch {
        /// Configured chain id.
        expected: u64,
        /// The node's chain id.
        actual: u64,
    },
    /// The factory clones another implementation than configured.
    #[error("factory {factory} clones implementation {actual}, the configuration says {expected}")]
    ImplementationMismatch {
        /// The factory.
        factory: Address,
        /// Configured implementation.
        expected: Address,
        /// The factory's `accountImplementation()`.
        actual: Address,
    },
    /// The factory computes another counterfactual address than this crate.
    #[error("factory {factory} gives account {onchain} for owner {owner}, the local computation {local}")]
    AddressMismatch {
        /// The factory.
        factory: Address,
        /// The probe owner.
        owner: Address,
        /// `account_address` here.
        local: Address,
        /// The factory's `getAddress(owner, 0)`.
        onchain: Address,
    },
}

impl Error {
    /// A database error of `op`.
    pub(crate) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Database { op, source }
    }

    /// A keyring error of `op`.
    pub(crate) fn keyring(op: &'static str) -> impl FnOnce(custody_signer::Error) -> Self {
        move |source| Self::Keyring { op, source }
    }
}
