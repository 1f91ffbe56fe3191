//! The key store: every key's metadata, public key and (for user keys) wrapped
//! blob, in SQLite or PostgreSQL through one sqlx `Any` pool. Addresses are stored as lowercase hex
//! ([`custody_db::encode_address`]).

use std::{fmt, str::FromStr};

use alloy_primitives::Address;
use custody_db::{connect_pool, decode_address, encode_address, now_millis};
use k256::ecdsa::VerifyingKey;
use sqlx::{AnyPool, Row, any::AnyRow};

use crate::{BackendKind, Error, address_of};

/// What a key is for (DESIGN.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyClass {
    /// AES-256 key-encryption key that wraps user keys.
    Kek,
    /// HMAC-SHA256 key for pseudonymous identifiers.
    Pseudonym,
    /// Infrastructure key (bundler, paymaster, issuer, anchor).
    Infra,
    /// A user's smart-account owner key.
    User,
}

/// Where a key is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyState {
    /// Signs.
    Active,
    /// Kept for verification and audit; signs no more.
    Retired,
    /// Key material destroyed.
    Destroyed,
}

macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// The stored and printed name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }
        impl FromStr for $ty {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                match s { $($text => Ok(Self::$variant),)+ _ => Err(()) }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(KeyClass { Kek => "kek", Pseudonym => "pseudonym", Infra => "infra", User => "user" });
text_enum!(KeyState { Active => "active", Retired => "retired", Destroyed => "destroyed" });

impl FromStr for BackendKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "pkcs11" => Ok(Self::Pkcs11),
            "kms" => Ok(Self::Kms),
            _ => Err(()),
        }
    }
}

/// One key version as stored.
#[derive(Clone)]
pub struct KeyRecord {
    /// Stable random id (also the unwrap-cache key and the PKCS#11 label of user keys).
    pub id: String,
    /// Key class.
    pub class: KeyClass,
    /// Infrastructure name, user id, or the KEK/pseudonym name.
    pub name: String,
    /// Version, from 1.
    pub version: i64,
    /// Which backend holds it.
    pub backend: BackendKind,
    /// Token label or KMS key id; none for wrapped user keys.
    pub backend_ref: Option<String>,
    /// Public key of an asymmetric key.
    pub public_key: Option<VerifyingKey>,
    /// Wrapped private key (user keys on PKCS#11).
    pub wrapped: Option<Vec<u8>>,
    /// KEK version the blob is wrapped under.
    pub kek_version: Option<i64>,
    /// Life-cycle state.
    pub state: KeyState,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// Last change, Unix milliseconds.
    pub updated_at: i64,
}

impl KeyRecord {
    /// The address of an asymmetric key.
    pub fn address(&self) -> Option<Address> {
        self.public_key.as_ref().map(address_of)
    }

    fn from_row(row: &AnyRow) -> Result<Self, Error> {
        let id: String = row.try_get("id")?;
        let corrupt = |what| Error::CorruptRow { key_id: id.clone(), what };
        let class = row.try_get::<String, _>("class")?.parse().map_err(|()| corrupt("class"))?;
        let backend = row.try_get::<String, _>("backend")?.parse().map_err(|()| corrupt("backend"))?;
        let state = row.try_get::<String, _>("state")?.parse().map_err(|()| corrupt("state"))?;
        let public_key = match row.try_get::<Option<Vec<u8>>, _>("public_key")? {
            Some(bytes) => Some(VerifyingKey::from_sec1_bytes(&bytes).map_err(|_| corrupt("public_key"))?),
            None => None,
        };
        let address: Option<String> = row.try_get("address")?;
        match (&public_key, address) {
            (Some(key), Some(address)) => {
                let stored = decode_address(&address).map_err(|_| corrupt("address"))?;
                if stored != address_of(key) {
                    return Err(corrupt("address (does not match the public key)"));
                }
            }
            (None, None) => {}
            _ => return Err(corrupt("address")),
        }
        Ok(Self {
            class,
            name: row.try_get("name")?,
            version: row.try_get("version")?,
            backend,
            backend_ref: row.try_get("backend_ref")?,
            public_key,
            wrapped: row.try_get("wrapped")?,
            kek_version: row.try_get("kek_version")?,
            state,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            id,
        })
    }
}

impl fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRecord")
            .field("id", &self.id)
            .field("class", &self.class)
            .field("version", &self.version)
            .field("address", &self.address())
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// The key table, in SQLite or PostgreSQL.
#[derive(Clone, Debug)]
pub struct KeyStore {
    pool: AnyPool,
}

const COLUMNS: &str = "id, class, name, version, backend, backend_ref, public_key, address, wrapped, kek_version, state, created_at, updated_at";

impl KeyStore {
    /// Connects to `sqlite://…` or `postgres://…` and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let pool = connect_pool(url).await?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// A store on an existing pool (the service shares its own). Call [`Self::migrate`] once.
    pub fn from_pool(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// The pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Applies the key store's migrations (other components keep their own).
    pub async fn migrate(&self) -> Result<(), Error> {
        custody_db::migrate(&self.pool, sqlx::migrate!("./migrations/postgres"), sqlx::migrate!("./migrations/sqlite"))
            .await?;
        Ok(())
    }

    /// Stores a new key version. A duplicate (class, name, version) is [`Error::KeyExists`].
    pub async fn insert(&self, key: &KeyRecord) -> Result<(), Error> {
        let sql =
            format!("INSERT INTO keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)");
        let result = sqlx::query(&sql)
            .bind(&key.id)
            .bind(key.class.as_str())
            .bind(&key.name)
            .bind(key.version)
            .bind(key.backend.as_str())
            .bind(key.backend_ref.clone())
            .bind(key.public_key.map(|k| k.to_encoded_point(false).as_bytes().to_vec()))
            .bind(key.address().map(encode_address))
            .bind(key.wrapped.clone())
            .bind(key.kek_version)
            .bind(key.state.as_str())
            .bind(key.created_at)
            .bind(key.updated_at)
            .execute(&self.pool)
            .await;
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(Error::KeyExists(format!("{} {} v{}", key.class, redact(key), key.version)))
            }
            other => other.map(drop).map_err(Error::from),
        }
    }

    /// The active key of `class` and `name` with the highest version.
    pub async fn active(&self, class: KeyClass, name: &str) -> Result<Option<KeyRecord>, Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM keys WHERE class = $1 AND name = $2 AND state = 'active' ORDER BY version DESC LIMIT 1"
        );
        let row = sqlx::query(&sql).bind(class.as_str()).bind(name).fetch_optional(&self.pool).await?;
        row.as_ref().map(KeyRecord::from_row).transpose()
    }

    /// A key by id.
    pub async fn get(&self, id: &str) -> Result<Option<KeyRecord>, Error> {
        let sql = format!("SELECT {COLUMNS} FROM keys WHERE id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(KeyRecord::from_row).transpose()
    }

    /// The next free version for `class` and `name`.
    pub async fn next_version(&self, class: KeyClass, name: &str) -> Result<i64, Error> {
        Ok(self.versions(class, name).await?.0)
    }

    /// In one query: the next free version, and whether an active version exists.
    pub async fn versions(&self, class: KeyClass, name: &str) -> Result<(i64, bool), Error> {
        let row = sqlx::query(
            "SELECT COALESCE(MAX(version), 0) AS v, COUNT(CASE WHEN state = 'active' THEN 1 END) AS active \
             FROM keys WHERE class = $1 AND name = $2",
        )
        .bind(class.as_str())
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get::<i64, _>("v")? + 1, row.try_get::<i64, _>("active")? > 0))
    }

    /// Every key, oldest first, optionally of one class.
    pub async fn list(&self, class: Option<KeyClass>) -> Result<Vec<KeyRecord>, Error> {
        let rows = match class {
            Some(class) => {
                let sql = format!("SELECT {COLUMNS} FROM keys WHERE class = $1 ORDER BY created_at, id");
                sqlx::query(&sql).bind(class.as_str()).fetch_all(&self.pool).await?
            }
            None => {
                let sql = format!("SELECT {COLUMNS} FROM keys ORDER BY created_at, id");
                sqlx::query(&sql).fetch_all(&self.pool).await?
            }
        };
        rows.iter().map(KeyRecord::from_row).collect()
    }

    /// Up to `limit` keys (of `class`, if given) with ids after `after`, in id order: a page for listings
    /// that cannot hold every user's key at once.
    pub async fn page(&self, class: Option<KeyClass>, after: &str, limit: i64) -> Result<Vec<KeyRecord>, Error> {
        let rows = match class {
            Some(class) => {
                let sql = format!("SELECT {COLUMNS} FROM keys WHERE class = $1 AND id > $2 ORDER BY id LIMIT $3");
                sqlx::query(&sql).bind(class.as_str()).bind(after).bind(limit).fetch_all(&self.pool).await?
            }
            None => {
                let sql = format!("SELECT {COLUMNS} FROM keys WHERE id > $1 ORDER BY id LIMIT $2");
                sqlx::query(&sql).bind(after).bind(limit).fetch_all(&self.pool).await?
            }
        };
        rows.iter().map(KeyRecord::from_row).collect()
    }

    /// Up to `limit` wrapped keys whose blob is under a KEK older than `kek_version`.
    pub async fn wrapped_before(&self, kek_version: i64, limit: i64) -> Result<Vec<KeyRecord>, Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM keys WHERE wrapped IS NOT NULL AND kek_version < $1 AND state <> 'destroyed' ORDER BY id LIMIT $2"
        );
        let rows = sqlx::query(&sql).bind(kek_version).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(KeyRecord::from_row).collect()
    }

    /// Replaces a key's blob, only if it is still under `old_kek` (idempotent, safe to resume).
    pub async fn replace_wrapped(&self, id: &str, old_kek: i64, blob: &[u8], new_kek: i64) -> Result<bool, Error> {
        let result = sqlx::query(
            "UPDATE keys SET wrapped = $1, kek_version = $2, updated_at = $3 WHERE id = $4 AND kek_version = $5",
        )
        .bind(blob.to_vec())
        .bind(new_kek)
        .bind(now_millis())
        .bind(id)
        .bind(old_kek)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Moves a key to `state`.
    pub async fn set_state(&self, id: &str, state: KeyState) -> Result<(), Error> {
        let result = sqlx::query("UPDATE keys SET state = $1, updated_at = $2 WHERE id = $3")
            .bind(state.as_str())
            .bind(now_millis())
            .bind(id)
            .execute(&self.pool)
            .await?;
        if result.rows_affected() == 0 {
            return Err(Error::KeyNotFound(id.to_owned()));
        }
        Ok(())
    }
}

/// A name fit for an error message: user ids are not repeated back.
fn redact(key: &KeyRecord) -> &str {
    match key.class {
        KeyClass::User => "(user)",
        _ => &key.name,
    }
}
