//! The signing core of Peruri Custody: secp256k1 keys that never leave an HSM
//! (PKCS#11) or AWS KMS, and Ethereum signatures checked before they are released.
//!
//! ```text
//!   Keyring ──► KeyStore (SQLite | PostgreSQL through custody-db: metadata, public keys, wrapped blobs)
//!      │
//!      └─► EthSigner ── alloy Signer / TxSigner, EIP-191, EIP-712, transactions
//!             │  low-s, recovery id and verification in one multiplication
//!             ▼
//!      dyn KeyBackend ── sign a 32-byte digest, give the public key
//!        ├─ TokenKey    infrastructure key on the token      (PKCS#11)
//!        ├─ WrappedKey  user key unwrapped on demand (LRU)   (PKCS#11, CKM_AES_KEY_WRAP_PAD)
//!        └─ KmsKey      ECC_SECG_P256K1, Sign(DIGEST)        (AWS KMS)
//! ```
//!
//! No plaintext private key exists outside the HSM or KMS: user keys are
//! generated inside the token as session objects and leave it only wrapped under
//! a non-extractable KEK.

mod backend;
mod ecdsa;
mod error;
mod eth;
mod keyring;
mod kms;
mod pkcs11;
mod store;

#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;

pub use backend::{BackendKind, KeyBackend};
pub use ecdsa::address_of;
pub use error::Error;
pub use eth::EthSigner;
pub use keyring::{Backend, Keyring};
pub use kms::{Kms, KmsConfig, KmsKey};
pub use pkcs11::{Hsm, ObjectFacts, Pkcs11Config, TokenKey, WrappedKey};
pub use store::{KeyClass, KeyRecord, KeyState, KeyStore};
