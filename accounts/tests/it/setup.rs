//! A wallets service on a fresh token and database.

use alloy::primitives::{Address, address};
use custody_accounts::{ChainContext, Wallets};
use custody_contracts::EntryPointVersion;
use custody_db::test_utils::Engine;
use custody_signer::{KeyClass, KeyRecord, test_utils::TestKeyring};
use sqlx::{AnyPool, Row};

/// A chain context for tests that do not touch a chain.
pub const CHAIN: ChainContext = ChainContext {
    chain_id: 1337,
    entry_point: EntryPointVersion::V07,
    factory: address!("0x1111111111111111111111111111111111111111"),
    implementation: address!("0x2222222222222222222222222222222222222222"),
};

pub struct Env {
    pub wallets: Wallets,
    pub pool: AnyPool,
    pub ring: TestKeyring,
}

pub async fn env(engine: Engine) -> Env {
    env_on(engine, CHAIN).await
}

/// One per test: a process initialises PKCS#11 (and so reads its SoftHSM token) once.
pub async fn env_on(engine: Engine, chain: ChainContext) -> Env {
    let ring = TestKeyring::new(engine).await;
    let pool = ring.db.pool().await;
    let wallets = Wallets::open(ring.keyring.clone(), pool.clone(), chain).await.expect("wallets open");
    Env { wallets, pool, ring }
}

impl Env {
    /// Another service on the same keyring and database, for accounts on `chain`.
    pub async fn on(&self, chain: ChainContext) -> Wallets {
        Wallets::open(self.ring.keyring.clone(), self.pool.clone(), chain).await.expect("wallets open")
    }

    pub async fn user_keys(&self) -> Vec<KeyRecord> {
        self.ring.keyring.list(Some(KeyClass::User)).await.expect("list user keys")
    }

    pub async fn rows(&self) -> i64 {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM identity_map").fetch_one(&self.pool).await.expect("count");
        row.try_get("n").expect("count column")
    }
}

/// The account address of `owner` per the test chain context.
pub fn account_of(owner: Address) -> Address {
    CHAIN.account_address(owner)
}
