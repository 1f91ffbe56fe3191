//! The one narrow trait every key backend implements.

use std::fmt;

use alloy_primitives::B256;
use async_trait::async_trait;
use k256::ecdsa::{Signature, VerifyingKey};

use crate::Error;

/// Which kind of backend holds a key (a metrics label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// A PKCS#11 token (SoftHSM2, a network HSM).
    Pkcs11,
    /// AWS KMS.
    Kms,
}

impl BackendKind {
    /// The label used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pkcs11 => "pkcs11",
            Self::Kms => "kms",
        }
    }
}

/// A secp256k1 key held by a backend that never releases it.
///
/// A backend signs a 32-byte digest and returns `(r, s)` exactly as the device
/// produced them (`s` may be high). Low-s normalisation, the recovery id and the
/// check against the public key live once, in [`crate::EthSigner`].
#[async_trait]
pub trait KeyBackend: Send + Sync + fmt::Debug {
    /// Signs a prehashed 32-byte digest.
    async fn sign_digest(&self, digest: &B256) -> Result<Signature, Error>;

    /// The key's public key, as recorded when the key was created.
    fn public_key(&self) -> &VerifyingKey;

    /// Which kind of backend this is.
    fn kind(&self) -> BackendKind;
}
