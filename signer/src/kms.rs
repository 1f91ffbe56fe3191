//! AWS KMS backend: `ECC_SECG_P256K1` keys, `Sign` with `MessageType=DIGEST`.
//!
//! KMS returns DER signatures whose `s` is high about half the time; that and the
//! recovery id are handled above, in [`crate::EthSigner`]. Public keys are cached
//! per key id. Throttling and transient errors are retried by the SDK's standard
//! retry strategy (exponential backoff with jitter, `max_attempts` tries).

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
};

use alloy_primitives::B256;
use async_trait::async_trait;
use aws_sdk_kms::{
    Client,
    config::{BehaviorVersion, Credentials, Region, retry::RetryConfig},
    primitives::Blob,
    types::{KeySpec, KeyUsageType, MessageType, SigningAlgorithmSpec},
};
use k256::{
    PublicKey,
    ecdsa::{Signature, VerifyingKey},
    pkcs8::DecodePublicKey,
};
use secrecy::{ExposeSecret, SecretString};

use crate::{BackendKind, Error, KeyBackend, address_of};

/// How to reach AWS KMS.
#[derive(Clone, Default)]
pub struct KmsConfig {
    /// AWS region; the SDK's default chain when absent.
    pub region: Option<String>,
    /// Endpoint override (a KMS emulator, a VPC endpoint).
    pub endpoint_url: Option<String>,
    /// Static credentials; the SDK's default chain (environment, profile, IMDS) when absent.
    pub credentials: Option<(String, SecretString)>,
    /// Tries per call, including the first (throttling is retried with backoff).
    pub max_attempts: u32,
}

impl fmt::Debug for KmsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsConfig")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

/// A KMS client with a cache of public keys.
#[derive(Clone)]
pub struct Kms {
    client: Client,
    public_keys: Arc<Mutex<HashMap<String, VerifyingKey>>>,
}

impl fmt::Debug for Kms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kms").finish_non_exhaustive()
    }
}

fn kms_err<E: std::error::Error + Send + Sync + 'static>(op: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::Kms { op, source: Box::new(e) }
}

impl Kms {
    /// Builds a client from `config` on top of the SDK's default configuration chain.
    pub async fn connect(config: KmsConfig) -> Result<Self, Error> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(config.max_attempts.max(1)));
        if let Some(region) = config.region {
            loader = loader.region(Region::new(region));
        }
        if let Some(url) = config.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some((id, secret)) = config.credentials {
            loader = loader.credentials_provider(Credentials::new(id, secret.expose_secret(), None, None, "custody"));
        }
        let shared = loader.load().await;
        Ok(Self { client: Client::new(&shared), public_keys: Arc::default() })
    }

    /// Creates a secp256k1 signing key described as `description`.
    pub async fn create_key(&self, description: &str) -> Result<KmsKey, Error> {
        let out = self
            .client
            .create_key()
            .key_spec(KeySpec::EccSecgP256K1)
            .key_usage(KeyUsageType::SignVerify)
            .description(description)
            .send()
            .await
            .map_err(kms_err("CreateKey"))?;
        let key_id = out.key_metadata().map(|m| m.key_id().to_owned()).ok_or(Error::Malformed("CreateKey answer"))?;
        self.key(&key_id).await
    }

    /// An existing key, checked to be a secp256k1 signing key; its public key is cached.
    pub async fn key(&self, key_id: &str) -> Result<KmsKey, Error> {
        let cached = self.public_keys.lock().unwrap_or_else(|p| p.into_inner()).get(key_id).copied();
        let public = match cached {
            Some(public) => public,
            None => {
                let public = self.fetch_public_key(key_id).await?;
                self.public_keys.lock().unwrap_or_else(|p| p.into_inner()).insert(key_id.to_owned(), public);
                public
            }
        };
        Ok(KmsKey { client: self.client.clone(), key_id: key_id.into(), public })
    }

    async fn fetch_public_key(&self, key_id: &str) -> Result<VerifyingKey, Error> {
        let out = self.client.get_public_key().key_id(key_id).send().await.map_err(kms_err("GetPublicKey"))?;
        #[allow(deprecated, reason = "emulators and older regions answer only CustomerMasterKeySpec")]
        let spec = out
            .key_spec()
            .map(|s| s.as_str().to_owned())
            .or_else(|| out.customer_master_key_spec().map(|s| s.as_str().to_owned()))
            .unwrap_or_default();
        let usable = spec == KeySpec::EccSecgP256K1.as_str() && out.key_usage() == Some(&KeyUsageType::SignVerify);
        if !usable {
            return Err(Error::KmsKeySpec { key_id: key_id.to_owned(), spec });
        }
        let der = out.public_key().ok_or(Error::Malformed("KMS public key"))?;
        let public = PublicKey::from_public_key_der(der.as_ref()).map_err(|_| Error::Malformed("KMS public key"))?;
        Ok(VerifyingKey::from(public))
    }
}

/// One KMS key.
#[derive(Clone)]
pub struct KmsKey {
    client: Client,
    key_id: Arc<str>,
    public: VerifyingKey,
}

impl KmsKey {
    /// The KMS key id.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
}

impl fmt::Debug for KmsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsKey").field("key_id", &self.key_id).field("address", &address_of(&self.public)).finish()
    }
}

#[async_trait]
impl KeyBackend for KmsKey {
    #[tracing::instrument(skip_all, fields(key_id = %self.key_id))]
    async fn sign_digest(&self, digest: &B256) -> Result<Signature, Error> {
        let out = self
            .client
            .sign()
            .key_id(self.key_id.as_ref())
            .message(Blob::new(digest.as_slice()))
            .message_type(MessageType::Digest)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .map_err(kms_err("Sign"))?;
        let der = out.signature().ok_or(Error::Malformed("KMS signature"))?;
        Signature::from_der(der.as_ref()).map_err(|_| Error::Malformed("KMS signature"))
    }

    fn public_key(&self) -> &VerifyingKey {
        &self.public
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Kms
    }
}
