//! The wallets service: one custodial owner key, one DID and one counterfactual smart account per user.

use std::{
    fmt,
    time::{Duration, Instant},
};

use alloy::{
    primitives::{Address, U256, address},
    providers::Provider,
};
use custody_contracts::{
    Deployment, EntryPointVersion, account::account_address,
    bindings::peruri_account_factory_v07::PeruriAccountFactoryV07,
};
use custody_db::now_millis;
use custody_signer::{KeyClass, KeyRecord, Keyring};
use rand::RngCore;
use serde::{Serialize, Serializer};
use sqlx::AnyPool;
use tracing::{info, instrument, warn};

use crate::{
    Did, DidDocument, DidResolution, Error,
    store::{Completion, Entry, IdentityMap},
};

/// The longest user id accepted, in characters.
pub const MAX_USER_ID_CHARS: usize = 256;

/// How long a pending row belongs to its creator before another caller may take it over (the creator
/// crashed). The creation itself runs in its own task, so a cancelled caller does not leave one behind.
const CLAIM_LEASE: Duration = Duration::from_secs(30);

/// The salt of every user's account: one account per owner.
const SALT: U256 = U256::ZERO;

/// The owner [`Wallets::verify_address_on_chain`] asks the factory about.
const PROBE_OWNER: Address = address!("0x00000000000000000000000000000000DeaDBeef");

/// Where accounts live: the chain, the EntryPoint version and its Peruri account factory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainContext {
    /// Chain id (the CAIP-10 reference in DID documents).
    pub chain_id: u64,
    /// EntryPoint version the accounts are used with.
    pub entry_point: EntryPointVersion,
    /// The Peruri account factory.
    pub factory: Address,
    /// The account implementation the factory clones.
    pub implementation: Address,
}

impl ChainContext {
    /// The v0.7 Peruri factory of a deployment (the default).
    pub fn from_deployment(deployment: &Deployment) -> Self {
        Self::for_version(deployment, EntryPointVersion::V07)
    }

    /// The Peruri factory of a deployment for EntryPoint `version`.
    pub fn for_version(deployment: &Deployment, version: EntryPointVersion) -> Self {
        Self {
            chain_id: deployment.chain_id,
            entry_point: version,
            factory: deployment.contracts.account_factory(version),
            implementation: deployment.contracts.account_implementation(version),
        }
    }

    /// The counterfactual account of `owner` (salt 0): CREATE2 through the factory, as its `getAddress`.
    pub fn account_address(&self, owner: Address) -> Address {
        account_address(self.factory, self.implementation, owner, SALT)
    }
}

/// Who holds the owner key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
pub enum Custody {
    /// The service, in the HSM.
    #[serde(rename = "custodial")]
    Custodial,
    /// The user (after an owner transfer or key export).
    #[serde(rename = "self")]
    SelfCustody,
}

/// A user's wallet. Serialises to the API shape
/// `{"user_id","did","address","owner","custody","deployed"}` (addresses EIP-55 checksummed); the other
/// fields are for the service. `Debug` leaves out the user id.
#[derive(Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Wallet {
    /// The application's user id.
    #[schema(value_type = crate::UserId)]
    pub user_id: String,
    /// `did:peruri:<pseudonym>`.
    pub did: Did,
    /// The smart account (counterfactual until deployed).
    #[serde(serialize_with = "checksummed")]
    #[schema(value_type = crate::AddressText)]
    pub address: Address,
    /// The owner key's address.
    #[serde(serialize_with = "checksummed")]
    #[schema(value_type = crate::AddressText)]
    pub owner: Address,
    /// Who holds the owner key.
    pub custody: Custody,
    /// Whether the account has code on chain (as last recorded).
    pub deployed: bool,
    /// Whether the DID is deactivated.
    #[serde(skip)]
    pub deactivated: bool,
    /// The owner key's id in the key store.
    #[serde(skip)]
    pub owner_key_id: String,
    /// The owner key's version.
    #[serde(skip)]
    pub owner_key_version: i64,
    /// Creation time, Unix milliseconds.
    #[serde(skip)]
    pub created_at: i64,
}

/// Serializes `address` EIP-55 checksummed (`#[serde(serialize_with = "checksummed")]`).
pub fn checksummed<S: Serializer>(address: &Address, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&address.to_checksum(None))
}

impl fmt::Debug for Wallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wallet")
            .field("did", &self.did)
            .field("address", &self.address)
            .field("owner", &self.owner)
            .field("custody", &self.custody)
            .field("deployed", &self.deployed)
            .field("deactivated", &self.deactivated)
            .field("owner_key_id", &self.owner_key_id)
            .field("owner_key_version", &self.owner_key_version)
            .finish_non_exhaustive()
    }
}

/// Wallets over a keyring and the identity map (the key store's database).
#[derive(Clone, Debug)]
pub struct Wallets {
    keyring: Keyring,
    map: IdentityMap,
    chain: ChainContext,
}

/// What became of a claimed creation.
enum Finished {
    Created(Wallet),
    /// Another caller took the row over meanwhile.
    Lost,
}

impl Wallets {
    /// The service on `keyring`, whose identity map lives in `pool` (migrated here; the key store's
    /// own migrations must have run, as [`Keyring::open`] on that database ensures).
    pub async fn open(keyring: Keyring, pool: AnyPool, chain: ChainContext) -> Result<Self, Error> {
        let map = IdentityMap::new(pool);
        map.migrate().await?;
        Ok(Self { keyring, map, chain })
    }

    /// Where accounts live.
    pub fn chain(&self) -> &ChainContext {
        &self.chain
    }

    /// The wallet of `user_id`, created if missing: `(wallet, true)` if this call created it.
    ///
    /// Idempotent, also under concurrent calls: the caller that inserts the pending identity row makes the
    /// owner key (`Keyring::create_user`) and completes the row; the others wait for it. An active owner key
    /// left by a crashed creation is adopted, never duplicated.
    #[instrument(skip_all)]
    pub async fn create(&self, user_id: &str) -> Result<(Wallet, bool), Error> {
        validate_user_id(user_id)?;
        let deadline = Instant::now() + 2 * CLAIM_LEASE;
        let mut pause = Duration::from_millis(5);
        let mut did = None;
        loop {
            if Instant::now() > deadline {
                return Err(Error::CreateTimedOut(2 * CLAIM_LEASE));
            }
            match self.map.by_user(user_id).await? {
                Some(Entry::Ready(wallet)) => return Ok((wallet, false)),
                Some(Entry::Pending { claim, claimed_at }) => {
                    let stale = now_millis().saturating_sub(claimed_at) > lease_millis();
                    let mine = new_claim();
                    if stale && self.map.take_over(user_id, &claim, &mine, now_millis()).await? {
                        warn!("took over a stale wallet creation");
                        if let Finished::Created(wallet) = self.finish(user_id, mine).await? {
                            return Ok((wallet, true));
                        }
                        continue;
                    }
                }
                None => {
                    let did = match &did {
                        Some(did) => did,
                        None => did.insert(self.did_of(user_id).await?),
                    };
                    let mine = new_claim();
                    if self.map.claim(user_id, did, &mine, now_millis()).await?
                        && let Finished::Created(wallet) = self.finish(user_id, mine).await?
                    {
                        return Ok((wallet, true));
                    }
                    continue; // someone else holds or finished the row: read it again at once
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// The ready wallet of `user_id`.
    pub async fn get(&self, user_id: &str) -> Result<Option<Wallet>, Error> {
        validate_user_id(user_id)?;
        Ok(match self.map.by_user(user_id).await? {
            Some(Entry::Ready(wallet)) => Some(wallet),
            _ => None,
        })
    }

    /// The wallet of a DID.
    pub async fn by_did(&self, did: &Did) -> Result<Option<Wallet>, Error> {
        self.map.by_did(did).await
    }

    /// The wallet whose smart account is `address`.
    pub async fn by_address(&self, address: Address) -> Result<Option<Wallet>, Error> {
        self.map.by_address(address).await
    }

    /// The DID resolution result of `did` (`None`: not found), for a Universal Resolver driver.
    pub async fn resolve(&self, did: &Did) -> Result<Option<DidResolution>, Error> {
        Ok(self.by_did(did).await?.map(|wallet| wallet.resolution(self.chain.chain_id)))
    }

    /// Deactivates the DID of `user_id` (it then resolves as deactivated, HTTP 410); returns the
    /// wallet as it is now, `None` if the user has none. Deactivating twice changes nothing.
    pub async fn deactivate(&self, user_id: &str) -> Result<Option<Wallet>, Error> {
        validate_user_id(user_id)?;
        if !self.map.deactivate(user_id).await? {
            return Ok(None);
        }
        self.get(user_id).await
    }

    /// Records that `user_id`'s account changed its owner on-chain from the key `from` to `successor`
    /// (an owner rotation, confirmed by its `OwnerChanged` event; the account is deployed by then).
    /// Returns the wallet as it is now; `None` if it names neither key (nothing changed).
    pub async fn owner_changed(
        &self,
        user_id: &str,
        from: &str,
        successor: &KeyRecord,
    ) -> Result<Option<Wallet>, Error> {
        validate_user_id(user_id)?;
        let owner =
            successor.address().ok_or_else(|| Error::OwnerKeyWithoutPublicKey { key_id: successor.id.clone() })?;
        let changed = self.map.change_owner(user_id, from, (owner, &successor.id, successor.version)).await?;
        let wallet = self.get(user_id).await?.filter(|w| w.owner_key_id == successor.id);
        if changed && let Some(w) = &wallet {
            info!(did = %w.did, owner = %owner, key_id = %successor.id, "wallet owner changed");
        }
        Ok(wallet)
    }

    /// Records that the account at `address` is deployed: `false` if no wallet has that address.
    pub async fn mark_deployed(&self, address: Address) -> Result<bool, Error> {
        self.map.mark_deployed(address).await
    }

    /// Checks, once (at start-up), that the configured chain and factory compute account addresses as this
    /// crate does: the chain id, the factory's `accountImplementation()`, and its `getAddress(owner, 0)`
    /// for a probe owner against [`ChainContext::account_address`].
    pub async fn verify_address_on_chain<P: Provider>(&self, provider: &P) -> Result<(), Error> {
        let chain = &self.chain;
        let actual = provider.get_chain_id().await.map_err(|source| Error::Rpc { op: "eth_chainId", source })?;
        if actual != chain.chain_id {
            return Err(Error::ChainIdMismatch { expected: chain.chain_id, actual });
        }
        // The v0.7 and v0.8 factories share this ABI.
        let factory = PeruriAccountFactoryV07::new(chain.factory, provider);
        let implementation = factory
            .accountImplementation()
            .call()
            .await
            .map_err(|source| Error::Contract { op: "factory.accountImplementation", source: Box::new(source) })?;
        if implementation != chain.implementation {
            return Err(Error::ImplementationMismatch {
                factory: chain.factory,
                expected: chain.implementation,
                actual: implementation,
            });
        }
        let onchain = factory
            .getAddress(PROBE_OWNER, SALT)
            .call()
            .await
            .map_err(|source| Error::Contract { op: "factory.getAddress", source: Box::new(source) })?;
        let local = chain.account_address(PROBE_OWNER);
        if onchain != local {
            return Err(Error::AddressMismatch { factory: chain.factory, owner: PROBE_OWNER, local, onchain });
        }
        info!(factory = %chain.factory, chain_id = chain.chain_id, "account addresses agree with the factory");
        Ok(())
    }

    /// The DID of `user_id` (computed in the HSM; nothing is stored).
    pub async fn did_of(&self, user_id: &str) -> Result<Did, Error> {
        validate_user_id(user_id)?;
        let pseudonym =
            self.keyring.pseudonym(&Did::pseudonym_input(user_id)).await.map_err(Error::keyring("pseudonym"))?;
        Ok(Did::from_pseudonym(&pseudonym))
    }

    /// Makes (or adopts) the owner key and completes the row held by `claim`, in a task of its own so that
    /// a cancelled caller does not leave the row pending. On failure the row is released.
    async fn finish(&self, user_id: &str, claim: String) -> Result<Finished, Error> {
        let this = self.clone();
        let user_id = user_id.to_owned();
        tokio::spawn(async move {
            let result = this.complete(&user_id, &claim).await;
            if result.is_err()
                && let Err(error) = this.map.release(&user_id, &claim).await
            {
                warn!(%error, "could not release a failed wallet creation; it is retried after the lease");
            }
            result
        })
        .await?
    }

    async fn complete(&self, user_id: &str, claim: &str) -> Result<Finished, Error> {
        let key = self.owner_key(user_id).await?;
        let owner = key.address().ok_or_else(|| Error::OwnerKeyWithoutPublicKey { key_id: key.id.clone() })?;
        let done = Completion {
            address: self.chain.account_address(owner),
            owner,
            owner_key_id: &key.id,
            owner_key_version: key.version,
            created_at: now_millis(),
        };
        if !self.map.complete(user_id, claim, &done).await? {
            return Ok(Finished::Lost);
        }
        let Some(Entry::Ready(wallet)) = self.map.by_user(user_id).await? else {
            return Ok(Finished::Lost);
        };
        metrics::counter!("custody_wallets_created_total").increment(1);
        info!(did = %wallet.did, address = %wallet.address, owner = %owner, key_id = %key.id, "wallet created");
        Ok(Finished::Created(wallet))
    }

    /// The user's active owner key, created if there is none.
    async fn owner_key(&self, user_id: &str) -> Result<KeyRecord, Error> {
        let active = || async {
            self.keyring.store().active(KeyClass::User, user_id).await.map_err(Error::keyring("find owner key"))
        };
        if let Some(key) = active().await? {
            info!(key_id = %key.id, "adopting the existing owner key");
            return Ok(key);
        }
        match self.keyring.create_user(user_id).await {
            Ok(key) => Ok(key),
            // Made meanwhile by a creation we took over: use it.
            Err(custody_signer::Error::KeyExists(what)) => active()
                .await?
                .ok_or(Error::Keyring { op: "create owner key", source: custody_signer::Error::KeyExists(what) }),
            Err(source) => Err(Error::Keyring { op: "create owner key", source }),
        }
    }
}

impl Wallet {
    /// The DID document on chain `chain_id`.
    pub fn document(&self, chain_id: u64) -> DidDocument {
        DidDocument::new(&self.did, chain_id, self.address)
    }

    /// The DID resolution result on chain `chain_id`.
    pub fn resolution(&self, chain_id: u64) -> DidResolution {
        DidResolution::new(self.document(chain_id), self.created_at, self.deactivated)
    }
}

/// A user id is 1 to [`MAX_USER_ID_CHARS`] characters, none of them a control character.
/// Refuses a user id that is empty, longer than [`MAX_USER_ID_CHARS`] or holds a control character.
pub fn validate_user_id(user_id: &str) -> Result<(), Error> {
    if user_id.is_empty() {
        return Err(Error::InvalidUserId("empty"));
    }
    if user_id.chars().count() > MAX_USER_ID_CHARS {
        return Err(Error::InvalidUserId("longer than 256 characters"));
    }
    if user_id.chars().any(char::is_control) {
        return Err(Error::InvalidUserId("contains a control character"));
    }
    Ok(())
}

fn new_claim() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn lease_millis() -> i64 {
    i64::try_from(CLAIM_LEASE.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn user_id_rules() {
        assert!(validate_user_id("u").is_ok());
        assert!(validate_user_id(&"é".repeat(256)).is_ok());
        assert!(validate_user_id("alice@example.com ünïcode").is_ok());
        for bad in [String::new(), "a".repeat(257), "a\nb".into(), "a\0".into(), "\u{7f}".into(), "\u{85}x".into()] {
            assert!(matches!(validate_user_id(&bad), Err(Error::InvalidUserId(_))), "{bad:?}");
        }
    }

    #[test]
    fn wallet_json_shape() {
        let wallet = Wallet {
            user_id: "u-1".into(),
            did: "did:peruri:aaaqeayeaudaocajbifqydiob4ibceqt".parse().unwrap(),
            address: address!("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"),
            owner: address!("0xfb6916095ca1df60bb79ce92ce3ea74c37c5d359"),
            custody: Custody::Custodial,
            deployed: false,
            deactivated: false,
            owner_key_id: "k".into(),
            owner_key_version: 1,
            created_at: 0,
        };
        assert_eq!(
            serde_json::to_value(&wallet).unwrap(),
            json!({
                "user_id": "u-1",
                "did": "did:peruri:aaaqeayeaudaocajbifqydiob4ibceqt",
                "address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
                "owner": "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
                "custody": "custodial",
                "deployed": false
            })
        );
        assert_eq!(serde_json::to_value(Custody::SelfCustody).unwrap(), json!("self"));
        assert!(!format!("{wallet:?}").contains("u-1"), "Debug leaves out the user id");
    }
}
