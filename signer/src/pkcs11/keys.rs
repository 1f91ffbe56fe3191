//! Key operations on a token and the two PKCS#11 key backends.

use std::{fmt, sync::Arc};

use alloy_primitives::{Address, B256};
use async_trait::async_trait;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use k256::ecdsa::{Signature, VerifyingKey};
use zeroize::Zeroizing;

use super::{Hsm, objects, p11};
use crate::{BackendKind, Error, KeyBackend, address_of};

impl Hsm {
    /// Creates an AES-256 KEK labelled `label` unless one exists. Returns whether it was created.
    pub async fn ensure_kek(&self, label: &str) -> Result<bool, Error> {
        self.ensure_secret(label, objects::generate_kek).await
    }

    /// Creates the HMAC-SHA256 pseudonym key labelled `label` unless one exists.
    pub async fn ensure_hmac_key(&self, label: &str) -> Result<bool, Error> {
        self.ensure_secret(label, objects::generate_hmac_key).await
    }

    async fn ensure_secret(
        &self,
        label: &str,
        generate: fn(&cryptoki::session::Session, &str) -> cryptoki::error::Result<cryptoki::object::ObjectHandle>,
    ) -> Result<bool, Error> {
        let label = label.to_owned();
        self.run(move |_, s| {
            if objects::find(s, ObjectClass::SECRET_KEY, &label).map_err(p11("C_FindObjects"))?.is_some() {
                return Ok(false);
            }
            generate(s, &label).map_err(p11("C_GenerateKey"))?;
            Ok(true)
        })
        .await
    }

    /// HMAC-SHA256 of `data` under the secret key labelled `label`.
    pub async fn hmac(&self, label: &str, data: &[u8]) -> Result<[u8; 32], Error> {
        let (label, data) = (label.to_owned(), data.to_vec());
        self.run(move |inner, s| {
            let key = inner.handle(s, ObjectClass::SECRET_KEY, &label)?;
            let mac = objects::hmac(s, key, &data).map_err(p11("C_Sign"))?;
            mac.try_into().map_err(|_| Error::Malformed("HMAC"))
        })
        .await
    }

    /// Generates a secp256k1 key pair as token objects (sensitive, never extractable).
    pub async fn create_token_key(&self, label: &str) -> Result<TokenKey, Error> {
        let owned = label.to_owned();
        let public = self
            .run(move |_, s| {
                if objects::find(s, ObjectClass::PRIVATE_KEY, &owned).map_err(p11("C_FindObjects"))?.is_some() {
                    return Err(Error::KeyExists(owned.clone()));
                }
                let (public, _) = objects::generate_ec(s, &owned, true).map_err(p11("C_GenerateKeyPair"))?;
                objects::public_key(s, public).map_err(p11("C_GetAttributeValue"))?.ok_or(Error::Malformed("EC point"))
            })
            .await?;
        Ok(TokenKey::new(self.clone(), label, public))
    }

    /// The public key of the token key pair labelled `label`.
    pub async fn token_public_key(&self, label: &str) -> Result<VerifyingKey, Error> {
        let label = label.to_owned();
        self.run(move |inner, s| {
            let public = inner.handle(s, ObjectClass::PUBLIC_KEY, &label)?;
            objects::public_key(s, public).map_err(p11("C_GetAttributeValue"))?.ok_or(Error::Malformed("EC point"))
        })
        .await
    }

    /// Generates a secp256k1 key pair inside the token as session objects and wraps
    /// the private key at once under the KEK `kek` (CKM_AES_KEY_WRAP_PAD).
    ///
    /// The private key never becomes a token object; its session copy stays in the
    /// unwrapped-key cache under `key_id`, so a first signature needs no unwrap.
    pub async fn create_wrapped_key(&self, key_id: &str, kek: &str) -> Result<(VerifyingKey, Vec<u8>), Error> {
        let (key_id, kek) = (key_id.to_owned(), kek.to_owned());
        self.run(move |inner, s| {
            let kek = inner.handle(s, ObjectClass::SECRET_KEY, &kek)?;
            let (public, private) = objects::generate_ec(s, &key_id, false).map_err(p11("C_GenerateKeyPair"))?;
            let point = objects::public_key(s, public).map_err(p11("C_GetAttributeValue"));
            // The public half is in the database from now on; the object is not needed.
            let _ = s.destroy_object(public);
            let point = point?.ok_or(Error::Malformed("EC point"))?;
            let blob = objects::wrap(s, kek, private).map_err(p11("C_WrapKey"));
            match blob {
                Ok(blob) => {
                    inner.cache_unwrapped(s, &key_id, private);
                    Ok((point, blob))
                }
                Err(e) => {
                    let _ = s.destroy_object(private);
                    Err(e)
                }
            }
        })
        .await
    }

    /// Checks that the token answers on a pooled session (readiness).
    pub async fn ping(&self) -> Result<(), Error> {
        self.run(|_, s| s.get_session_info().map(drop).map_err(p11("C_GetSessionInfo"))).await
    }

    /// Destroys every unwrapped user key held in session objects; the next
    /// signature of each user unwraps its blob again.
    pub async fn evict_unwrapped(&self) -> Result<usize, Error> {
        self.run(move |inner, s| {
            let evicted: Vec<_> = std::mem::replace(&mut *super::lock(&inner.unwrapped), lru::LruCache::unbounded())
                .into_iter()
                .map(|(_, h)| h)
                .collect();
            *super::lock(&inner.unwrapped) = lru::LruCache::new(inner.unwrapped_cap);
            for handle in &evicted {
                let _ = s.destroy_object(*handle);
            }
            Ok(evicted.len())
        })
        .await
    }

    /// Re-wraps a blob from KEK `from` to KEK `to` inside the token.
    pub async fn rewrap(&self, key_id: &str, blob: &[u8], from: &str, to: &str) -> Result<Vec<u8>, Error> {
        let (key_id, blob, from, to) = (key_id.to_owned(), blob.to_vec(), from.to_owned(), to.to_owned());
        self.run(move |inner, s| {
            let old = inner.handle(s, ObjectClass::SECRET_KEY, &from)?;
            let new = inner.handle(s, ObjectClass::SECRET_KEY, &to)?;
            let key = objects::unwrap(s, old, &blob, true)
                .map_err(|source| Error::Unwrap { key_id: key_id.clone(), source })?;
            let wrapped = objects::wrap(s, new, key).map_err(p11("C_WrapKey"));
            let _ = s.destroy_object(key);
            wrapped
        })
        .await
    }

    /// Signs a digest with a token key directly (no checks): the benchmark's and
    /// the tests' view of what the device returns.
    pub async fn sign_raw(&self, label: &str, digest: &B256) -> Result<Signature, Error> {
        let (label, digest) = (label.to_owned(), digest.0);
        self.run(move |inner, s| inner.sign_token(s, &label, &digest)).await
    }

    /// Facts about the token objects of `class` labelled `label`, for audits and tests.
    pub async fn object_facts(&self, class: ObjectClass, label: &str) -> Result<Vec<ObjectFacts>, Error> {
        let label = label.to_owned();
        self.run(move |_, s| {
            let handles = s
                .find_objects(&[Attribute::Class(class), Attribute::Label(label.as_bytes().to_vec())])
                .map_err(p11("C_FindObjects"))?;
            handles.into_iter().map(|h| ObjectFacts::read(s, h)).collect()
        })
        .await
    }

    /// How many private keys are persistent token objects.
    pub async fn token_private_key_labels(&self) -> Result<Vec<String>, Error> {
        self.run(move |_, s| {
            let handles = s
                .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY), Attribute::Token(true)])
                .map_err(p11("C_FindObjects"))?;
            let mut labels = Vec::with_capacity(handles.len());
            for h in handles {
                let attrs = s.get_attributes(h, &[AttributeType::Label]).map_err(p11("C_GetAttributeValue"))?;
                labels.extend(attrs.into_iter().filter_map(|a| match a {
                    Attribute::Label(l) => Some(String::from_utf8_lossy(&l).into_owned()),
                    _ => None,
                }));
            }
            Ok(labels)
        })
        .await
    }
}

/// What a token says about one object's protection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectFacts {
    /// `CKA_TOKEN`: a persistent object.
    pub token: bool,
    /// `CKA_SENSITIVE`.
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE`.
    pub extractable: bool,
    /// Whether reading `CKA_VALUE` succeeded (it must not for a private key).
    pub value_readable: bool,
}

impl ObjectFacts {
    fn read(s: &cryptoki::session::Session, h: cryptoki::object::ObjectHandle) -> Result<Self, Error> {
        let attrs = s
            .get_attributes(h, &[AttributeType::Token, AttributeType::Sensitive, AttributeType::Extractable])
            .map_err(p11("C_GetAttributeValue"))?;
        let mut facts = Self { token: false, sensitive: false, extractable: true, value_readable: false };
        for a in attrs {
            match a {
                Attribute::Token(v) => facts.token = v,
                Attribute::Sensitive(v) => facts.sensitive = v,
                Attribute::Extractable(v) => facts.extractable = v,
                _ => {}
            }
        }
        // A sensitive value is refused (or simply left out); wipe whatever comes back.
        let value = s.get_attributes(h, &[AttributeType::Value]);
        facts.value_readable = match value {
            Ok(attrs) => attrs.into_iter().any(|a| match a {
                Attribute::Value(v) => {
                    let _wiped = Zeroizing::new(v);
                    true
                }
                _ => false,
            }),
            Err(_) => false,
        };
        Ok(facts)
    }
}

/// An infrastructure key: a secp256k1 key pair that lives on the token.
#[derive(Clone)]
pub struct TokenKey {
    hsm: Hsm,
    label: Arc<str>,
    public: VerifyingKey,
}

impl TokenKey {
    /// A key on `hsm` whose private half is labelled `label` and whose public key is `public`.
    pub fn new(hsm: Hsm, label: &str, public: VerifyingKey) -> Self {
        Self { hsm, label: label.into(), public }
    }

    /// The token label.
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey").field("label", &self.label).field("address", &address_of(&self.public)).finish()
    }
}

#[async_trait]
impl KeyBackend for TokenKey {
    async fn sign_digest(&self, digest: &B256) -> Result<Signature, Error> {
        self.hsm.sign_raw(&self.label, digest).await
    }

    fn public_key(&self) -> &VerifyingKey {
        &self.public
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Pkcs11
    }
}

/// A user key stored wrapped under a KEK, unwrapped into a session object on demand.
#[derive(Clone)]
pub struct WrappedKey {
    hsm: Hsm,
    key_id: Arc<str>,
    kek: Arc<str>,
    blob: Arc<[u8]>,
    public: VerifyingKey,
}

impl WrappedKey {
    /// A wrapped key: its id (the unwrap cache key), its KEK's label, the blob and the public key.
    pub fn new(hsm: Hsm, key_id: &str, kek: &str, blob: &[u8], public: VerifyingKey) -> Self {
        Self { hsm, key_id: key_id.into(), kek: kek.into(), blob: blob.into(), public }
    }

    /// The key's address.
    pub fn address(&self) -> Address {
        address_of(&self.public)
    }
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedKey").field("key_id", &self.key_id).field("address", &self.address()).finish()
    }
}

#[async_trait]
impl KeyBackend for WrappedKey {
    async fn sign_digest(&self, digest: &B256) -> Result<Signature, Error> {
        let this = self.clone();
        let digest = digest.0;
        self.hsm.run(move |inner, s| inner.sign_wrapped(s, &this.key_id, &this.kek, &this.blob, &digest)).await
    }

    fn public_key(&self) -> &VerifyingKey {
        &self.public
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Pkcs11
    }
}
