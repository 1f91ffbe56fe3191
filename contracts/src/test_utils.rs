//! The local chain: a Hardhat node (EDR, from `contracts/node_modules`) configured like the production
//! Besu chain — chain id from config (default 1337), zero base fee with gas price 0 accepted (a non-zero
//! initial base fee on request, for tests of the paid path), the production block gas limit, Cancun, and
//! the production genesis alloc (the deterministic deployment proxy). Automine for tests, interval mining
//! (2 s) for the devnet. The node is killed on drop.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use custody_contracts::{DeployConfig, test_utils::LocalChain};
//! let chain = LocalChain::start().await?;
//! let deployment = chain.deploy(&DeployConfig::single_operator(chain.dev_accounts()[0].address())).await?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, Bytes, U256, b256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use serde_json::Value;
use tracing::{debug, info};

use crate::besu::{AllocAccount, BLOCK_GAS_LIMIT, DEFAULT_CHAIN_ID, default_alloc};
use crate::deploy::{DeployConfig, deploy};
use crate::deployment::Deployment;
use crate::error::{DeployError, LocalChainError};

/// How long to wait for the node to answer.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Private keys of Hardhat's default dev accounts (mnemonic "test test ... junk"), each funded with
/// 10,000 ETH. Publicly known: for local chains only.
const DEV_KEYS: [alloy::primitives::B256; 10] = [
    b256!("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"),
    b256!("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"),
    b256!("0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"),
    b256!("0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"),
    b256!("0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a"),
    b256!("0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba"),
    b256!("0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e"),
    b256!("0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356"),
    b256!("0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97"),
    b256!("0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6"),
];

/// How the local chain runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalChainConfig {
    /// Chain id (default 1337).
    pub chain_id: u64,
    /// `None`: a block per transaction (tests); `Some(t)`: a block every `t` (the devnet uses 2 s).
    pub block_time: Option<Duration>,
    /// Block gas limit (default: the production genesis').
    pub block_gas_limit: u64,
    /// Base fee of the first block in wei (default 0, as on the production chain); non-zero for tests of
    /// the paid path. Later blocks follow EIP-1559 from it.
    pub initial_base_fee: u64,
}

impl Default for LocalChainConfig {
    fn default() -> Self {
        Self { chain_id: DEFAULT_CHAIN_ID, block_time: None, block_gas_limit: BLOCK_GAS_LIMIT, initial_base_fee: 0 }
    }
}

/// A running Hardhat node on a free loopback port; killed (with its process group) on drop.
pub struct LocalChain {
    child: Child,
    url: String,
    config: LocalChainConfig,
    log: PathBuf,
    dev_accounts: Vec<PrivateKeySigner>,
}

impl std::fmt::Debug for LocalChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalChain")
            .field("pid", &self.child.id())
            .field("url", &self.url)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The `contracts/` directory: `PERURI_CONTRACTS_DIR`, else this crate's source directory.
pub fn contracts_dir() -> PathBuf {
    std::env::var_os("PERURI_CONTRACTS_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

impl LocalChain {
    /// Start a chain with the default configuration (chain id 1337, automine).
    pub async fn start() -> Result<Self, LocalChainError> {
        Self::start_with(LocalChainConfig::default()).await
    }

    /// Start a chain, wait until it answers, and load the production genesis alloc.
    pub async fn start_with(config: LocalChainConfig) -> Result<Self, LocalChainError> {
        let dir = contracts_dir();
        let hardhat = dir.join("node_modules/.bin/hardhat");
        if !hardhat.exists() {
            return Err(LocalChainError::MissingNodeModules { dir });
        }
        let chain = Self::spawn(&dir, &hardhat, &config).await?;
        chain.load_alloc(&default_alloc()).await?;
        info!(url = %chain.url, chain_id = config.chain_id, "local chain started");
        Ok(chain)
    }

    /// Starts the node on port 0, so the kernel picks a free port as it binds, and learns the port from
    /// the node's own "server at" line. (Choosing a port first and passing it on races with other tests:
    /// a node that lost the race would be talked to through the winner's port.)
    async fn spawn(dir: &Path, hardhat: &Path, config: &LocalChainConfig) -> Result<Self, LocalChainError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let log = std::env::temp_dir().join(format!(
            "peruri-hardhat-{}-{}.log",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let log_file = std::fs::File::create(&log).map_err(|source| LocalChainError::Spawn { source })?;
        let log_err = log_file.try_clone().map_err(|source| LocalChainError::Spawn { source })?;
        let node = std::env::var_os("PERURI_NODE").unwrap_or_else(|| "node".into());
        let block_time_ms = config.block_time.map_or(0, |t| t.as_millis().max(1));
        let child = Command::new(node)
            .arg(hardhat)
            .args(["--config", "hardhat.config.cjs", "node", "--hostname", "127.0.0.1", "--port", "0"])
            .current_dir(dir)
            .env("HARDHAT_DISABLE_TELEMETRY_PROMPT", "true")
            .env("NO_COLOR", "1")
            .env("PERURI_CHAIN_ID", config.chain_id.to_string())
            .env("PERURI_BLOCK_TIME_MS", block_time_ms.to_string())
            .env("PERURI_BLOCK_GAS_LIMIT", config.block_gas_limit.to_string())
            .env("PERURI_INITIAL_BASE_FEE", config.initial_base_fee.to_string())
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .map_err(|source| LocalChainError::Spawn { source })?;
        let mut chain = Self {
            child,
            url: String::new(),
            config: config.clone(),
            log,
            dev_accounts: DEV_KEYS.iter().filter_map(|k| PrivateKeySigner::from_bytes(k).ok()).collect(),
        };
        chain.wait_ready().await?;
        Ok(chain)
    }

    /// Waits for the node's "server at" line, then for its chain id over JSON-RPC.
    async fn wait_ready(&mut self) -> Result<(), LocalChainError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(LocalChainError::Exited { status: status.to_string(), log: self.log_tail() });
            }
            if self.url.is_empty()
                && let Some(url) = std::fs::read_to_string(&self.log).ok().as_deref().and_then(server_url)
            {
                self.url = url;
            }
            if !self.url.is_empty() {
                let chain_id = tokio::time::timeout(Duration::from_secs(2), self.provider().get_chain_id()).await;
                if let Ok(Ok(id)) = chain_id {
                    if id != self.config.chain_id {
                        return Err(LocalChainError::WrongChainId { expected: self.config.chain_id, actual: id });
                    }
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(LocalChainError::Timeout { log: self.log_tail() });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The node's last lines of output.
    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(4000)));
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// HTTP JSON-RPC URL (`http://127.0.0.1:<port>`).
    pub fn rpc_url(&self) -> &str {
        &self.url
    }

    /// Chain id.
    pub fn chain_id(&self) -> u64 {
        self.config.chain_id
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &LocalChainConfig {
        &self.config
    }

    /// Funded dev accounts (10,000 ETH each; their keys are public).
    pub fn dev_accounts(&self) -> &[PrivateKeySigner] {
        &self.dev_accounts
    }

    /// A provider that signs with every dev account (dev account 0 by default).
    pub fn provider(&self) -> DynProvider {
        let mut accounts = self.dev_accounts.iter().cloned();
        let mut wallet = EthereumWallet::new(accounts.next().unwrap_or_else(PrivateKeySigner::random));
        for signer in accounts {
            wallet.register_signer(signer);
        }
        self.provider_with(wallet)
    }

    /// A provider that signs with `wallet`.
    pub fn provider_with(&self, wallet: EthereumWallet) -> DynProvider {
        // The URL is ours and well formed; fall back to a dead address rather than panic.
        let url = self.url.parse().unwrap_or_else(|_| "http://127.0.0.1:1".parse().expect("static URL parses"));
        // Simple nonce management (ask the node each time): a transaction that fails gas estimation must not
        // leave a gap in a cached nonce sequence.
        ProviderBuilder::default()
            .with_gas_estimation()
            .with_simple_nonce_management()
            .fetch_chain_id()
            .wallet(wallet)
            .connect_http(url)
            .erased()
    }

    /// Install genesis accounts (code, balance, nonce, storage) with Hardhat's `hardhat_set*` methods.
    pub async fn load_alloc(&self, alloc: &BTreeMap<Address, AllocAccount>) -> Result<(), LocalChainError> {
        for (address, account) in alloc {
            self.set_balance(*address, account.balance).await?;
            if let Some(code) = &account.code {
                self.set_code(*address, code.clone()).await?;
            }
            if let Some(nonce) = account.nonce {
                self.rpc("hardhat_setNonce", (address, nonce)).await?;
            }
            for (slot, value) in &account.storage {
                self.rpc("hardhat_setStorageAt", (address, slot, value)).await?;
            }
            debug!(%address, "alloc account loaded");
        }
        Ok(())
    }

    /// Set an account's balance.
    pub async fn set_balance(&self, address: Address, balance: U256) -> Result<(), LocalChainError> {
        self.rpc("hardhat_setBalance", (address, balance)).await.map(drop)
    }

    /// Set an account's code.
    pub async fn set_code(&self, address: Address, code: Bytes) -> Result<(), LocalChainError> {
        self.rpc("hardhat_setCode", (address, code)).await.map(drop)
    }

    /// Packs `op` and signs its userOpHash on this chain for `version` with a local `owner` key
    /// (EIP-191 for v0.7, the EIP-712 digest for v0.8).
    pub fn sign_user_op(
        &self,
        version: crate::EntryPointVersion,
        op: &crate::UserOperation,
        owner: &PrivateKeySigner,
    ) -> crate::PackedUserOperation {
        use alloy::signers::SignerSync;
        let mut packed = op.pack().expect("a test operation packs");
        let hash = packed.hash(version, version.address(), self.chain_id());
        let signature = owner.sign_hash_sync(&crate::userop::signing_digest(version, hash)).expect("a local key signs");
        packed.signature = Bytes::from(signature.as_bytes().to_vec());
        packed
    }

    /// Mine one block now.
    pub async fn mine(&self) -> Result<(), LocalChainError> {
        self.rpc("evm_mine", Vec::<u64>::new()).await.map(drop)
    }

    /// Set the timestamp of the next block.
    pub async fn set_next_block_timestamp(&self, timestamp: u64) -> Result<(), LocalChainError> {
        self.rpc("evm_setNextBlockTimestamp", (timestamp,)).await.map(drop)
    }

    /// Deploy the EntryPoints and our contracts with dev account 0.
    pub async fn deploy(&self, config: &DeployConfig) -> Result<Deployment, DeployError> {
        deploy(&self.provider(), config).await
    }

    async fn rpc<P>(&self, method: &'static str, params: P) -> Result<Value, LocalChainError>
    where
        P: serde::Serialize + Clone + std::fmt::Debug + Send + Sync + Unpin,
    {
        self.provider()
            .raw_request(method.into(), params)
            .await
            .map_err(|source| LocalChainError::Rpc { method, source })
    }
}

impl Drop for LocalChain {
    fn drop(&mut self) {
        // The node runs in its own process group (hardhat may fork): kill the whole group.
        let pid = self.child.id();
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).stderr(Stdio::null()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The JSON-RPC URL from Hardhat's "Started HTTP and WebSocket JSON-RPC server at http://127.0.0.1:<port>/".
fn server_url(log: &str) -> Option<String> {
    let rest = &log[log.find("JSON-RPC server at http://127.0.0.1:")? + "JSON-RPC server at ".len()..];
    let port_start = "http://127.0.0.1:".len();
    let digits = rest[port_start..].bytes().take_while(u8::is_ascii_digit).count();
    let port: u16 = rest[port_start..port_start + digits].parse().ok()?;
    (port != 0).then(|| format!("http://127.0.0.1:{port}"))
}

#[cfg(test)]
mod tests {
    use super::server_url;

    #[test]
    fn reads_the_port_the_node_bound() {
        let log = "Started HTTP and WebSocket JSON-RPC server at http://127.0.0.1:40123/\n\nAccounts\n";
        assert_eq!(server_url(log).as_deref(), Some("http://127.0.0.1:40123"));
        assert_eq!(server_url("Started HTTP and WebSocket JSON-RPC server at http://127.0.0.1:0/"), None);
        assert_eq!(server_url("Compiling...\n"), None);
    }
}
