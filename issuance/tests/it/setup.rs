//! A chain with the contracts deployed for HSM issuer and anchor keys, a keyring and the mirror.

use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use custody_accounts::{ChainContext, Wallets};
use custody_contracts::test_utils::LocalChain;
use custody_contracts::{DeployConfig, Deployment};
use custody_db::test_utils::{Engine, TestDb};
use custody_issuance::{
    AttendanceRule, Issuance, IssuanceContracts, NewActivity, PolicyConfig, TrainingRule, Worker, WorkerConfig,
};
use custody_signer::test_utils::TestKeyring;
use custody_signer::{EthSigner, KeyClass};
use serde_json::json;

/// Rules used by the tests: 10 PTKN per attendance, the month's badge at the 2nd.
pub fn rules() -> PolicyConfig {
    PolicyConfig {
        attendance: AttendanceRule { amount: 10, monthly_threshold: 2, monthly_badge_base: 0 },
        training: TrainingRule { badge_id: 7, bonus: 50 },
        milestones: [("first_year".to_owned(), 900)].into(),
    }
}

/// 10^18.
pub fn ptkn(whole: u64) -> U256 {
    U256::from(whole) * U256::from(10u64).pow(U256::from(18))
}

/// 2026-01-09T…Z.
pub const JAN_2026: i64 = 1_768_000_000;

pub fn activity(user: &str, kind: &str) -> NewActivity {
    NewActivity { user_id: user.to_owned(), kind: kind.to_owned(), payload: json!({}), occurred_at: JAN_2026 }
}

/// Just the mirror over a fresh database (no chain).
pub async fn intake(engine: Engine) -> (TestDb, Issuance) {
    let db = TestDb::new(engine).await;
    let issuance = Issuance::open(db.pool().await, rules()).await.expect("issuance opens");
    (db, issuance)
}

pub struct Env {
    pub chain: LocalChain,
    pub deployment: Deployment,
    pub keys: TestKeyring,
    pub issuance: Issuance,
    pub wallets: Wallets,
    pub issuer: EthSigner,
    pub anchorer: EthSigner,
    pub provider: DynProvider,
}

pub async fn env(engine: Engine) -> Env {
    let chain = LocalChain::start().await.expect("local chain starts");
    let keys = TestKeyring::new(engine).await;
    keys.keyring.create_infra("issuer").await.unwrap();
    keys.keyring.create_infra("anchor").await.unwrap();
    let issuer = keys.keyring.signer(KeyClass::Infra, "issuer").await.unwrap();
    let anchorer = keys.keyring.signer(KeyClass::Infra, "anchor").await.unwrap();
    let config = DeployConfig {
        issuer: issuer.address(),
        anchorer: anchorer.address(),
        ..DeployConfig::single_operator(chain.dev_accounts()[0].address())
    };
    let deployment = chain.deploy(&config).await.expect("deploys");
    for key in [issuer.address(), anchorer.address()] {
        chain.set_balance(key, ptkn(1000)).await.unwrap();
    }
    let pool = keys.db.pool().await;
    let wallets =
        Wallets::open(keys.keyring.clone(), pool.clone(), ChainContext::from_deployment(&deployment)).await.unwrap();
    let issuance = Issuance::open(pool, rules()).await.unwrap();
    let provider = ProviderBuilder::new().connect_http(chain.rpc_url().parse().unwrap()).erased();
    Env { chain, deployment, keys, issuance, wallets, issuer, anchorer, provider }
}

impl Env {
    pub fn contracts(&self) -> IssuanceContracts {
        IssuanceContracts::from(&self.deployment.contracts)
    }

    /// A fresh worker (as after a restart) against `provider`.
    pub fn worker_on(&self, provider: DynProvider) -> Worker {
        let config = WorkerConfig { interval: Duration::from_millis(50), ..WorkerConfig::default() };
        Worker::new(
            &self.issuance,
            self.wallets.clone(),
            self.issuer.clone(),
            self.anchorer.clone(),
            provider,
            self.contracts(),
            config,
        )
    }

    pub fn worker(&self) -> Worker {
        self.worker_on(self.provider.clone())
    }

    /// Ticks a fresh worker until `ids` are all confirmed.
    pub async fn settle(&self, ids: &[String]) {
        let worker = self.worker();
        for _ in 0..30 {
            worker.tick().await.expect("tick");
            let mut done = true;
            for id in ids {
                let view = self.issuance.activity(id).await.unwrap().unwrap();
                assert_ne!(view.status, "failed", "{view:?}");
                done &= view.status == "confirmed";
            }
            if done {
                return;
            }
        }
        panic!("activities not confirmed after 30 ticks");
    }

    /// The user's smart account.
    pub async fn account(&self, user: &str) -> Address {
        self.wallets.get(user).await.unwrap().expect("wallet exists").address
    }
}
