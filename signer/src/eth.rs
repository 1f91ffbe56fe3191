//! The Ethereum face of any key: checked signatures, alloy `Signer` and `TxSigner`.

use std::{fmt, sync::Arc, time::Instant};

use alloy_consensus::SignableTransaction;
use alloy_primitives::{Address, B256, ChainId, Signature};
use async_trait::async_trait;
use tracing::error;

use crate::{
    Error, KeyBackend, KeyClass, address_of,
    ecdsa::{FinishError, finish},
};

/// Signs with one key, whatever backend holds it, and never releases a
/// signature that does not verify against the key's address.
///
/// Every signature is low-s (EIP-2) and carries its `y` parity. `Debug` shows
/// the key id and address only.
#[derive(Clone)]
pub struct EthSigner {
    backend: Arc<dyn KeyBackend>,
    address: Address,
    key_id: Arc<str>,
    class: KeyClass,
    chain_id: Option<ChainId>,
}

impl EthSigner {
    /// A signer for `backend`'s key, named `key_id` in logs and metrics.
    pub fn new(backend: Arc<dyn KeyBackend>, key_id: &str, class: KeyClass) -> Self {
        let address = address_of(backend.public_key());
        Self { backend, address, key_id: key_id.into(), class, chain_id: None }
    }

    /// The key's Ethereum address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The key id.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The key class.
    pub fn class(&self) -> KeyClass {
        self.class
    }

    /// Signs a 32-byte digest given as a slice (an error for any other length).
    pub async fn sign_digest_slice(&self, digest: &[u8]) -> Result<Signature, Error> {
        let digest: [u8; 32] = digest.try_into().map_err(|_| Error::DigestLength(digest.len()))?;
        self.sign_digest(&B256::from(digest)).await
    }

    /// Signs a 32-byte digest: backend signature, low-s, recovery id, check.
    pub async fn sign_digest(&self, digest: &B256) -> Result<Signature, Error> {
        let backend = self.backend.kind().as_str();
        let class = self.class.as_str();
        let started = Instant::now();
        let result = match self.backend.sign_digest(digest).await {
            Ok(raw) => finish(self.backend.public_key(), digest, &raw).map_err(|e| match e {
                FinishError::Mismatch => {
                    metrics::counter!("custody_signature_mismatch_total", "backend" => backend).increment(1);
                    error!(key_id = %self.key_id, address = %self.address, backend, "backend signature does not verify; withheld");
                    Error::SignatureMismatch { backend, address: self.address }
                }
                FinishError::Unrepresentable => Error::UnrepresentableSignature,
            }),
            Err(e) => Err(e),
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(Error::SignatureMismatch { .. }) => "mismatch",
            Err(_) => "error",
        };
        metrics::histogram!("custody_sign_duration_seconds", "backend" => backend, "class" => class)
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("custody_signatures_total", "backend" => backend, "class" => class, "outcome" => outcome)
            .increment(1);
        result
    }
}

impl fmt::Debug for EthSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EthSigner")
            .field("key_id", &self.key_id)
            .field("address", &self.address)
            .field("class", &self.class)
            .field("chain_id", &self.chain_id)
            .finish()
    }
}

#[async_trait]
impl alloy_signer::Signer for EthSigner {
    async fn sign_hash(&self, hash: &B256) -> alloy_signer::Result<Signature> {
        self.sign_digest(hash).await.map_err(alloy_signer::Error::other)
    }

    fn address(&self) -> Address {
        self.address
    }

    fn chain_id(&self) -> Option<ChainId> {
        self.chain_id
    }

    fn set_chain_id(&mut self, chain_id: Option<ChainId>) {
        self.chain_id = chain_id;
    }
}

#[async_trait]
impl alloy_network::TxSigner<Signature> for EthSigner {
    fn address(&self) -> Address {
        self.address
    }

    async fn sign_transaction(&self, tx: &mut dyn SignableTransaction<Signature>) -> alloy_signer::Result<Signature> {
        use alloy_signer::Signer;
        alloy_signer::sign_transaction_with_chain_id!(self, tx, self.sign_digest(&tx.signature_hash()).await)
    }
}
