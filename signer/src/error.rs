//! Errors of the signing core. None of them carries key material or a PIN.

use std::path::PathBuf;

use alloy_primitives::Address;

/// Everything that can go wrong in the signing core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The PKCS#11 module file does not exist.
    #[error("PKCS#11 module {0} not found; install SoftHSM2 (`apt-get install softhsm2`) or set CUSTODY_PKCS11_MODULE")]
    ModuleMissing(PathBuf),
    /// The PKCS#11 module could not be loaded or initialised.
    #[error("PKCS#11 module {path} could not be loaded: {source}")]
    ModuleLoad {
        /// The module path from configuration.
        path: PathBuf,
        /// The loader's error.
        #[source]
        source: cryptoki::error::Error,
    },
    /// A PKCS#11 call failed.
    #[error("PKCS#11 {op} failed: {source}")]
    Pkcs11 {
        /// What the core was doing.
        op: &'static str,
        /// The module's error (return value and function).
        #[source]
        source: cryptoki::error::Error,
    },
    /// No slot holds a token with the configured label.
    #[error("no PKCS#11 token labelled {0:?}")]
    TokenNotFound(String),
    /// The token refused the PIN.
    #[error("PKCS#11 login refused: the PIN is incorrect")]
    PinIncorrect,
    /// No key of that name, user or id.
    #[error("key {0} not found")]
    KeyNotFound(String),
    /// A key of that name already exists.
    #[error("key {0} already exists")]
    KeyExists(String),
    /// The key exists but may not sign.
    #[error("key {key} is {state}, not active")]
    KeyNotActive {
        /// The key's name or id.
        key: String,
        /// Its state.
        state: &'static str,
    },
    /// A digest of the wrong length was given.
    #[error("a digest must be 32 bytes, got {0}")]
    DigestLength(usize),
    /// A wrapped key blob could not be unwrapped.
    #[error("wrapped key {key_id} could not be unwrapped: the blob is corrupt or was wrapped under another KEK")]
    Unwrap {
        /// The key's id.
        key_id: String,
        /// The module's error.
        #[source]
        source: cryptoki::error::Error,
    },
    /// The backend returned a signature that does not verify against the key.
    #[error("the {backend} backend returned a signature that does not verify against key {address}")]
    SignatureMismatch {
        /// Backend label.
        backend: &'static str,
        /// The key's address.
        address: Address,
    },
    /// The signature's R point has an x coordinate at or above the group order,
    /// which Ethereum's `v` cannot express (probability about 2^-128).
    #[error("signature not expressible with an Ethereum recovery id")]
    UnrepresentableSignature,
    /// A public key or signature from a backend is malformed.
    #[error("malformed {0} from the backend")]
    Malformed(&'static str),
    /// An AWS KMS call failed.
    #[error("AWS KMS {op} failed: {source}")]
    Kms {
        /// The KMS operation.
        op: &'static str,
        /// The SDK's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A KMS key is not a secp256k1 signing key.
    #[error("KMS key {key_id} has spec {spec}, expected ECC_SECG_P256K1 with usage SIGN_VERIFY")]
    KmsKeySpec {
        /// The KMS key id.
        key_id: String,
        /// The spec KMS reported.
        spec: String,
    },
    /// The key store's database failed.
    #[error("key store: {0}")]
    Store(#[from] sqlx::Error),
    /// The key store's migrations failed.
    #[error("key store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A key store row does not decode.
    #[error("key store row {key_id} is corrupt: {what}")]
    CorruptRow {
        /// The row's key id.
        key_id: String,
        /// Which column is wrong.
        what: &'static str,
    },
    /// The key class does not support the operation.
    #[error("key {key} of class {class} cannot {op}")]
    WrongClass {
        /// The key.
        key: String,
        /// Its class.
        class: &'static str,
        /// The refused operation.
        op: &'static str,
    },
    /// A blocking HSM task panicked or was cancelled.
    #[error("HSM worker task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}
