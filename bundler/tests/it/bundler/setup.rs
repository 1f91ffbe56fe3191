//! Shared set-up: chain with everything deployed, HSM keys, and a bundler over a test database
//! validating with the revm simulator (Peruri's factories trusted by its rules and its staked paymasters held to
//! them, as in `custody serve`; the bundler's own reputation trusts nothing unless a test says so).

use std::sync::Arc;

use alloy::primitives::aliases::U192;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider};
use custody_bundler::sim::{SimConfig, Simulator};
use custody_bundler::validation::Validate;
use custody_bundler::{Bundler, BundlerConfig, BundlingMode};
use custody_contracts::test_utils::{self, LocalChain, LocalChainConfig};
use custody_contracts::userop::signing_digest;
use custody_contracts::{DeployConfig, Deployment, EntryPointVersion, IEntryPoint, UserOperation};
use custody_db::test_utils::{Engine, TestDb};
use custody_signer::test_utils::TestKeyring;
use custody_signer::{EthSigner, KeyClass};
use serde_json::{Value, json};

pub(crate) struct Env {
    pub(crate) chain: LocalChain,
    pub(crate) provider: DynProvider,
    pub(crate) deployment: Deployment,
    pub(crate) keys: TestKeyring,
    pub(crate) bundler_key: EthSigner,
    pub(crate) owner: EthSigner,
}

/// A chain with everything deployed, an HSM keyring (on `engine`) holding a funded bundler key and a
/// user owner key.
pub(crate) async fn env(engine: Engine) -> Env {
    env_with(engine, LocalChainConfig::default()).await
}

/// Base fee of the paid chain's first block: 1 gwei (EIP-1559 lowers it while blocks stay under target).
const PAID_BASE_FEE: u64 = 1_000_000_000;

/// [`env`] on a chain that charges fees (a non-zero base fee), unlike the production chain: the paid path
/// of the builder (fee estimates, bumps, cancels) and prefunds that cost something.
pub(crate) async fn paid_env(engine: Engine) -> Env {
    env_with(engine, LocalChainConfig { initial_base_fee: PAID_BASE_FEE, ..Default::default() }).await
}

/// [`env`] on a chain configured by `config` (e.g. 2 s blocks for the load generator).
pub(crate) async fn env_with(engine: Engine, config: LocalChainConfig) -> Env {
    let chain =
        LocalChain::start_with(config).await.expect("local chain starts (run `npm ci --prefix contracts` first)");
    let config = DeployConfig::single_operator(chain.dev_accounts()[0].address());
    let deployment = chain.deploy(&config).await.expect("deploys");
    let provider = chain.provider();
    let keys = TestKeyring::new(engine).await;
    keys.keyring.create_infra("bundler").await.expect("bundler key");
    keys.keyring.create_user("alice").await.expect("user key");
    let bundler_key = keys.keyring.signer(KeyClass::Infra, "bundler").await.expect("bundler signer");
    let owner = keys.keyring.signer(KeyClass::User, "alice").await.expect("owner signer");
    chain.set_balance(bundler_key.address(), U256::from(10u64.pow(18))).await.expect("fund bundler");
    Env { chain, provider, deployment, keys, bundler_key, owner }
}

impl Env {
    pub(crate) fn config(&self, mode: BundlingMode) -> BundlerConfig {
        BundlerConfig { debug_methods: true, bundling_mode: mode, poll_interval_ms: 100, ..Default::default() }
    }

    /// The revm simulator over the chain, Peruri's factories trusted by its rules (as in `custody serve`;
    /// the paymasters are staked and meet the rules as they are).
    pub(crate) fn simulator(&self) -> Simulator {
        let c = &self.deployment.contracts;
        let mut config = SimConfig::new(self.chain.chain_id());
        config.trusted.factories.extend(EntryPointVersion::ALL.map(|v| c.account_factory(v)));
        Simulator::new(self.provider.clone(), config)
    }

    /// [`Env::simulator`] as the bundler's validator.
    pub(crate) fn validator(&self) -> Arc<dyn Validate> {
        Arc::new(self.simulator())
    }

    /// A bundler over `db` (the keyring's database unless another is given) with `config`.
    pub(crate) async fn bundler_with(&self, db: &TestDb, config: BundlerConfig) -> Arc<Bundler> {
        let signers = vec![self.bundler_key.clone()];
        Bundler::new(config, db.pool().await, signers, self.provider.clone(), self.validator(), None)
            .await
            .expect("bundler starts")
    }

    /// A bundler over `db` (the keyring's database unless another is given).
    pub(crate) async fn bundler_on(&self, db: &TestDb, mode: BundlingMode) -> Arc<Bundler> {
        self.bundler_with(db, self.config(mode)).await
    }

    pub(crate) async fn bundler(&self, mode: BundlingMode) -> Arc<Bundler> {
        self.bundler_on(&self.keys.db, mode).await
    }

    /// The counterfactual Peruri account of `owner`.
    pub(crate) fn account(&self, version: EntryPointVersion, owner: Address) -> Address {
        test_utils::peruri_account(&self.deployment, version, owner)
    }

    pub(crate) async fn nonce(&self, version: EntryPointVersion, sender: Address, key: U192) -> U256 {
        IEntryPoint::new(version.address(), self.provider.clone()).getNonce(sender, key).call().await.expect("getNonce")
    }

    /// An unsigned operation of the Peruri account of `owner` calling `call_data`, with initCode if
    /// the account is not deployed yet. Zero fees.
    pub(crate) async fn peruri_op(
        &self,
        version: EntryPointVersion,
        owner: Address,
        nonce_key: u64,
        call_data: Bytes,
    ) -> UserOperation {
        let sender = self.account(version, owner);
        let deployed = !self.provider.get_code_at(sender).await.expect("code").is_empty();
        let nonce = self.nonce(version, sender, U192::from(nonce_key)).await;
        test_utils::user_op(&self.deployment, version, sender, nonce, (!deployed).then_some(owner), call_data)
    }

    /// [`Env::peruri_op`] priced at the node's current fee estimate (for a paid chain).
    pub(crate) async fn priced_op(&self, version: EntryPointVersion, call_data: Bytes) -> UserOperation {
        let op = self.peruri_op(version, self.owner.address(), 0, call_data).await;
        let fees = self.provider.estimate_eip1559_fees().await.expect("fee estimate");
        assert!(fees.max_fee_per_gas > 0, "the chain charges fees");
        UserOperation {
            max_fee_per_gas: U256::from(fees.max_fee_per_gas),
            max_priority_fee_per_gas: U256::from(fees.max_priority_fee_per_gas),
            ..op
        }
    }

    /// Signs `op` with `signer` (HSM) for `version`.
    pub(crate) async fn sign(
        &self,
        version: EntryPointVersion,
        mut op: UserOperation,
        signer: &EthSigner,
    ) -> UserOperation {
        op.signature = Bytes::new();
        let hash = op.hash(version, version.address(), self.chain.chain_id()).expect("hash");
        let signature = signer.sign_digest(&signing_digest(version, hash)).await.expect("sign");
        op.signature = Bytes::from(signature.as_bytes().to_vec());
        op
    }

    /// Sends `ops` directly through the EntryPoint from a dev account (not through the bundler).
    pub(crate) async fn handle_ops_directly(&self, version: EntryPointVersion, ops: Vec<UserOperation>) {
        let packed = ops.iter().map(|o| o.pack().expect("packs")).collect();
        self.chain.handle_ops(version, packed, &self.chain.dev_accounts()[2]).await.expect("handleOps succeeds");
    }
}

/// A bundler's builder tasks ([`Bundler::run`]) running in the background until [`Builder::stop`].
pub(crate) struct Builder {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), custody_bundler::BundlerError>>,
}

impl Builder {
    pub(crate) fn start(bundler: &Arc<Bundler>) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(bundler.clone().run(async move {
            let _ = stopped.await;
        }));
        Self { stop, task }
    }

    /// Stops the builders and waits for them to finish.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("joins").expect("stops");
    }
}

/// Calls one JSON-RPC method through the bundler's handler.
pub(crate) async fn call(bundler: &Bundler, method: &str, params: Value) -> Value {
    custody_bundler::rpc::handle(bundler, json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .await
        .expect("a response")
}

/// The `result` of a call, panicking with the error otherwise.
pub(crate) async fn ok(bundler: &Bundler, method: &str, params: Value) -> Value {
    let response = call(bundler, method, params).await;
    assert!(response.get("error").is_none(), "{method} failed: {response}");
    response["result"].clone()
}

/// The error code of a call that must fail.
pub(crate) async fn err(bundler: &Bundler, method: &str, params: Value) -> (i64, String) {
    let response = call(bundler, method, params).await;
    let error = &response["error"];
    assert!(error.is_object(), "{method} should fail: {response}");
    (error["code"].as_i64().expect("code"), error["message"].as_str().unwrap_or_default().to_owned())
}

/// `eth_sendUserOperation` of `op` for `version`: its hash.
pub(crate) async fn send(bundler: &Bundler, version: EntryPointVersion, op: &UserOperation) -> B256 {
    let result = ok(bundler, "eth_sendUserOperation", json!([op, version.address()])).await;
    serde_json::from_value(result).expect("hash")
}

/// Waits for the receipt of `hash` (the bundler runs in auto mode).
pub(crate) async fn wait_receipt(bundler: &Bundler, hash: B256) -> Value {
    for _ in 0..300 {
        let receipt = ok(bundler, "eth_getUserOperationReceipt", json!([hash])).await;
        if !receipt.is_null() {
            return receipt;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no receipt for {hash} within 30 s");
}
