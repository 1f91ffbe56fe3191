//! The keyring: creates, finds and signs with keys of every class, keeping the
//! key store and the backend in step. The one entry point callers need.

use std::sync::Arc;

use custody_db::now_millis;
use rand::RngCore;
use tracing::info;

use crate::{
    BackendKind, Error, EthSigner, KeyBackend,
    kms::Kms,
    pkcs11::{Hsm, TokenKey, WrappedKey},
    store::{KeyClass, KeyRecord, KeyState, KeyStore},
};

/// Name of the KEK and pseudonym keys in the store.
const KEK: &str = "kek";
const PSEUDONYM: &str = "pseudonym";

/// Where keys live.
#[derive(Clone, Debug)]
pub enum Backend {
    /// A PKCS#11 token: infrastructure keys on the token, user keys wrapped under its KEK.
    Pkcs11(Hsm),
    /// AWS KMS: one KMS key per infrastructure or user key (no export, no KEK).
    Kms(Kms),
}

/// Keys of every class over one backend and one key store.
#[derive(Clone, Debug)]
pub struct Keyring {
    backend: Backend,
    store: KeyStore,
}

/// The PKCS#11 label of a KEK version.
fn kek_label(version: i64) -> String {
    format!("kek-v{version}")
}

impl Keyring {
    /// A keyring over `backend` and `store`; on PKCS#11 it makes sure a KEK and a
    /// pseudonym key exist (creating version 1 of each on first use).
    pub async fn open(backend: Backend, store: KeyStore) -> Result<Self, Error> {
        let ring = Self { backend, store };
        if let Backend::Pkcs11(hsm) = &ring.backend {
            for (class, name) in [(KeyClass::Kek, KEK), (KeyClass::Pseudonym, PSEUDONYM)] {
                if ring.store.active(class, name).await?.is_some() {
                    continue;
                }
                let label = match class {
                    KeyClass::Kek => kek_label(1),
                    _ => format!("{PSEUDONYM}-v1"),
                };
                let created = match class {
                    KeyClass::Kek => hsm.ensure_kek(&label).await?,
                    _ => hsm.ensure_hmac_key(&label).await?,
                };
                ring.store.insert(&active_record(class, name, 1, Some(label.clone()))).await?;
                info!(class = %class, label, created, "secret key ready");
            }
        }
        Ok(ring)
    }

    /// The key store.
    pub fn store(&self) -> &KeyStore {
        &self.store
    }

    /// The backend.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Creates infrastructure key `name` (an error if an active one exists).
    pub async fn create_infra(&self, name: &str) -> Result<KeyRecord, Error> {
        let (version, active) = self.store.versions(KeyClass::Infra, name).await?;
        if active {
            return Err(Error::KeyExists(format!("infra {name}")));
        }
        let (backend, backend_ref, public) = match &self.backend {
            Backend::Pkcs11(hsm) => {
                let label = format!("infra/{name}/v{version}");
                let key = hsm.create_token_key(&label).await?;
                (BackendKind::Pkcs11, label, *key.public_key())
            }
            Backend::Kms(kms) => {
                let key = kms.create_key(&format!("custody infra {name} v{version}")).await?;
                (BackendKind::Kms, key.key_id().to_owned(), *key.public_key())
            }
        };
        let record = KeyRecord {
            backend,
            public_key: Some(public),
            ..active_record(KeyClass::Infra, name, version, Some(backend_ref))
        };
        self.store.insert(&record).await?;
        metrics::counter!("custody_keys_created_total", "class" => "infra", "backend" => backend.as_str()).increment(1);
        info!(key_id = %record.id, name, version, address = ?record.address(), "infrastructure key created");
        Ok(record)
    }

    /// Creates the owner key of `user_id`: generated in the HSM and stored only
    /// wrapped under the current KEK (on KMS: a KMS key). An error if one is active.
    pub async fn create_user(&self, user_id: &str) -> Result<KeyRecord, Error> {
        let (version, active) = self.store.versions(KeyClass::User, user_id).await?;
        if active {
            return Err(Error::KeyExists("user key".to_owned()));
        }
        self.generate_user(user_id, version, KeyState::Active).await
    }

    /// Creates the successor of `user_id`'s owner key (owner rotation): the next version, made like
    /// [`Self::create_user`]'s but stored `retired`, so that it signs nothing until
    /// [`Self::promote_user`] makes it the active key, once the account's owner changed on-chain.
    pub async fn create_user_successor(&self, user_id: &str) -> Result<KeyRecord, Error> {
        let (version, _) = self.store.versions(KeyClass::User, user_id).await?;
        self.generate_user(user_id, version, KeyState::Retired).await
    }

    /// Makes key `successor` the active owner key of its user and retires `previous` (an owner rotation
    /// confirmed on-chain). Idempotent; between the two writes the newer version is the one that signs.
    pub async fn promote_user(&self, successor: &str, previous: &str) -> Result<(), Error> {
        for (id, state) in [(successor, KeyState::Active), (previous, KeyState::Retired)] {
            let record = self.store.get(id).await?.ok_or_else(|| Error::KeyNotFound(id.to_owned()))?;
            if record.class != KeyClass::User {
                return Err(Error::WrongClass { key: id.to_owned(), class: record.class.as_str(), op: "promote" });
            }
            if record.state != state {
                self.store.set_state(id, state).await?;
            }
        }
        info!(key_id = %successor, previous = %previous, "user key promoted");
        Ok(())
    }

    async fn generate_user(&self, user_id: &str, version: i64, state: KeyState) -> Result<KeyRecord, Error> {
        let mut record = KeyRecord { state, ..active_record(KeyClass::User, user_id, version, None) };
        let id = record.id.clone();
        match &self.backend {
            Backend::Pkcs11(hsm) => {
                let kek = self.current_kek().await?;
                let (public, blob) = hsm.create_wrapped_key(&id, &kek_label(kek)).await?;
                record.public_key = Some(public);
                record.wrapped = Some(blob);
                record.kek_version = Some(kek);
            }
            Backend::Kms(kms) => {
                let key = kms.create_key(&format!("custody user key {id}")).await?;
                record.backend = BackendKind::Kms;
                record.backend_ref = Some(key.key_id().to_owned());
                record.public_key = Some(*key.public_key());
            }
        }
        self.store.insert(&record).await?;
        metrics::counter!("custody_keys_created_total", "class" => "user", "backend" => record.backend.as_str())
            .increment(1);
        info!(key_id = %id, version, address = ?record.address(), "user key created");
        Ok(record)
    }

    /// The signer of the active key of `class` named `name` (a user id for user keys).
    pub async fn signer(&self, class: KeyClass, name: &str) -> Result<EthSigner, Error> {
        let record = self.store.active(class, name).await?.ok_or_else(|| Error::KeyNotFound(describe(class, name)))?;
        self.signer_for(&record).await
    }

    /// The signer of a stored key, whatever its class (only active keys sign).
    pub async fn signer_for(&self, record: &KeyRecord) -> Result<EthSigner, Error> {
        if record.state != KeyState::Active {
            return Err(Error::KeyNotActive { key: record.id.clone(), state: record.state.as_str() });
        }
        let corrupt = |what| Error::CorruptRow { key_id: record.id.clone(), what };
        let public = record.public_key.ok_or(Error::WrongClass {
            key: record.id.clone(),
            class: record.class.as_str(),
            op: "sign",
        })?;
        let backend: Arc<dyn KeyBackend> = match (&self.backend, record.backend) {
            (Backend::Pkcs11(hsm), BackendKind::Pkcs11) => match (&record.wrapped, record.kek_version) {
                (Some(blob), Some(kek)) => {
                    Arc::new(WrappedKey::new(hsm.clone(), &record.id, &kek_label(kek), blob, public))
                }
                (None, None) => {
                    let label = record.backend_ref.as_deref().ok_or_else(|| corrupt("backend_ref"))?;
                    Arc::new(TokenKey::new(hsm.clone(), label, public))
                }
                _ => return Err(corrupt("wrapped/kek_version")),
            },
            (Backend::Kms(kms), BackendKind::Kms) => {
                let key_id = record.backend_ref.as_deref().ok_or_else(|| corrupt("backend_ref"))?;
                let key = kms.key(key_id).await?;
                if key.public_key() != &public {
                    return Err(corrupt("public_key (differs from KMS)"));
                }
                Arc::new(key)
            }
            _ => return Err(corrupt("backend (not the configured one)")),
        };
        Ok(EthSigner::new(backend, &record.id, record.class))
    }

    /// Every key, optionally of one class.
    pub async fn list(&self, class: Option<KeyClass>) -> Result<Vec<KeyRecord>, Error> {
        self.store.list(class).await
    }

    /// HMAC-SHA256 of `data` under the pseudonym key, inside the HSM.
    pub async fn pseudonym(&self, data: &[u8]) -> Result<[u8; 32], Error> {
        let Backend::Pkcs11(hsm) = &self.backend else {
            return Err(Error::WrongClass { key: PSEUDONYM.to_owned(), class: "pseudonym", op: "run on KMS" });
        };
        let record = self
            .store
            .active(KeyClass::Pseudonym, PSEUDONYM)
            .await?
            .ok_or_else(|| Error::KeyNotFound(PSEUDONYM.into()))?;
        let label = record.backend_ref.ok_or_else(|| Error::CorruptRow { key_id: record.id, what: "backend_ref" })?;
        hsm.hmac(&label, data).await
    }

    /// The current KEK version.
    pub async fn current_kek(&self) -> Result<i64, Error> {
        let record = self.store.active(KeyClass::Kek, KEK).await?.ok_or_else(|| Error::KeyNotFound(KEK.into()))?;
        Ok(record.version)
    }

    /// KEK rotation: creates the next KEK version (or resumes one under way) and
    /// re-wraps every stored blob under it inside the HSM, in batches. Addresses do
    /// not change. Idempotent and resumable: a blob already under the new KEK is
    /// skipped. Returns the new version and how many blobs were re-wrapped.
    pub async fn rotate_kek(&self) -> Result<(i64, u64), Error> {
        let Backend::Pkcs11(hsm) = &self.backend else {
            return Err(Error::WrongClass { key: KEK.to_owned(), class: "kek", op: "rotate on KMS" });
        };
        let current = self.current_kek().await?;
        // A KEK row above the active one means an earlier rotation stopped half-way.
        let newest = self.store.next_version(KeyClass::Kek, KEK).await? - 1;
        let target = if newest > current { newest } else { current + 1 };
        let label = kek_label(target);
        hsm.ensure_kek(&label).await?;
        if newest < target {
            let mut record = active_record(KeyClass::Kek, KEK, target, Some(label.clone()));
            record.state = KeyState::Retired; // becomes active once every blob is under it
            self.store.insert(&record).await?;
        }
        let mut rewrapped = 0;
        loop {
            let batch = self.store.wrapped_before(target, 256).await?;
            if batch.is_empty() {
                break;
            }
            for key in batch {
                let (Some(blob), Some(old)) = (&key.wrapped, key.kek_version) else { continue };
                let new_blob = hsm.rewrap(&key.id, blob, &kek_label(old), &label).await?;
                if self.store.replace_wrapped(&key.id, old, &new_blob, target).await? {
                    rewrapped += 1;
                }
            }
        }
        for record in self.store.list(Some(KeyClass::Kek)).await? {
            let state = if record.version == target { KeyState::Active } else { KeyState::Retired };
            if record.state != state && record.state != KeyState::Destroyed {
                self.store.set_state(&record.id, state).await?;
            }
        }
        info!(kek_version = target, rewrapped, "KEK rotated");
        Ok((target, rewrapped))
    }
}

/// A new active PKCS#11 key row without material; `backend_ref` names the HSM object (or KMS key) where
/// there is one.
fn active_record(class: KeyClass, name: &str, version: i64, backend_ref: Option<String>) -> KeyRecord {
    let now = now_millis();
    KeyRecord {
        id: new_id(),
        class,
        name: name.to_owned(),
        version,
        backend: BackendKind::Pkcs11,
        backend_ref,
        public_key: None,
        wrapped: None,
        kek_version: None,
        state: KeyState::Active,
        created_at: now,
        updated_at: now,
    }
}

/// A key for an error message; user ids are not repeated back.
fn describe(class: KeyClass, name: &str) -> String {
    match class {
        KeyClass::User => "user key".to_owned(),
        _ => format!("{class} {name}"),
    }
}

/// A random 128-bit key id in hex.
fn new_id() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}
