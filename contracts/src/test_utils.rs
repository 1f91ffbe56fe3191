//! The local chain: a Hardhat node (EDR) or an Anvil node, both from `contracts/node_modules`, configured
//! like the production Besu chain — chain id from config (default 1337), zero base fee with gas price 0
//! accepted (a non-zero initial base fee on request, for tests of the paid path), the production block gas
//! limit, Cancun, and the production genesis alloc (the deterministic deployment proxy). Automine for
//! tests, interval mining (2 s) for the devnet.
//!
//! ```text
//! Node::Hardhat                  the test suite's node; killed on drop, nothing kept
//! Node::Anvil { state: None }    the same, on Anvil
//! Node::Anvil { state: Some(f) } loads f at start when it exists, writes it every 5 s and on stop
//!                                (SIGTERM on drop, waited for): a chain that survives restarts (the devnet)
//! ```
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use custody_contracts::{DeployConfig, test_utils::LocalChain};
//! let chain = LocalChain::start().await?;
//! let deployment = chain.deploy(&DeployConfig::single_operator(chain.dev_accounts()[0].address())).await?;
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, Bytes, U256, b256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use serde_json::Value;
use tracing::{debug, info, warn};

mod ops;

pub use ops::{peruri_account, random_address, user_op, user_op_event};

use crate::besu::{AllocAccount, BLOCK_GAS_LIMIT, DEFAULT_CHAIN_ID, default_alloc};
use crate::deploy::{DeployConfig, deploy};
use crate::deployment::Deployment;
use crate::error::{DeployError, LocalChainError};

/// How long to wait for the node to answer.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// How long a stopping Anvil node may take to write its state file before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How often an Anvil node with a state file writes it: a node killed without warning loses at most the
/// blocks of the last interval.
pub const STATE_INTERVAL: Duration = Duration::from_secs(5);

/// Lines of the node's output kept for error messages.
const OUTPUT_LINES: usize = 200;

/// Private keys of Hardhat's default dev accounts (mnemonic "test test ... junk"; Anvil's too), each funded
/// with 10,000 ETH. Publicly known: for local chains only.
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

/// The program that runs the local chain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Node {
    /// Hardhat (EDR), `node_modules/.bin/hardhat`: the test suite's node. Killed on drop; nothing is kept.
    #[default]
    Hardhat,
    /// Anvil, from the npm package `@foundry-rs/anvil` (`PERURI_ANVIL` overrides the binary). With a `state`
    /// file the chain survives restarts: the node loads the file at start when it exists, writes it every
    /// [`STATE_INTERVAL`] and when it stops (on drop it gets SIGTERM and is waited for).
    Anvil { state: Option<PathBuf> },
}

impl Node {
    /// The node's name, for messages.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Hardhat => "Hardhat",
            Self::Anvil { .. } => "Anvil",
        }
    }

    /// The state file, as an absolute path (the node is told it, and an earlier run's node is recognised
    /// by it).
    fn state_file(&self) -> Option<PathBuf> {
        let Self::Anvil { state: Some(state) } = self else { return None };
        Some(std::path::absolute(state).unwrap_or_else(|_| state.clone()))
    }

    /// What precedes the port in the line the node prints once it listens.
    const fn listening_marker(&self) -> &'static str {
        match self {
            // "Started HTTP and WebSocket JSON-RPC server at http://127.0.0.1:<port>/"
            Self::Hardhat => "JSON-RPC server at http://127.0.0.1:",
            // "Listening on 127.0.0.1:<port>"
            Self::Anvil { .. } => "Listening on 127.0.0.1:",
        }
    }

    /// The node's command line for `config`: on 127.0.0.1, port 0.
    fn command(&self, config: &LocalChainConfig) -> Result<Command, LocalChainError> {
        let dir = contracts_dir();
        let installed = |path: PathBuf| {
            if path.exists() { Ok(path) } else { Err(LocalChainError::MissingNodeModules { path }) }
        };
        match self {
            Self::Hardhat => {
                let hardhat = installed(dir.join("node_modules/.bin/hardhat"))?;
                let block_time_ms = config.block_time.map_or(0, |t| t.as_millis().max(1));
                let mut command = Command::new(std::env::var_os("PERURI_NODE").unwrap_or_else(|| "node".into()));
                command
                    .arg(hardhat)
                    .args(["--config", "hardhat.config.cjs", "node", "--hostname", "127.0.0.1", "--port", "0"])
                    .current_dir(dir)
                    .env("HARDHAT_DISABLE_TELEMETRY_PROMPT", "true")
                    .env("NO_COLOR", "1")
                    .env("PERURI_CHAIN_ID", config.chain_id.to_string())
                    .env("PERURI_BLOCK_TIME_MS", block_time_ms.to_string())
                    .env("PERURI_BLOCK_GAS_LIMIT", config.block_gas_limit.to_string())
                    .env("PERURI_INITIAL_BASE_FEE", config.initial_base_fee.to_string());
                Ok(command)
            }
            Self::Anvil { .. } => {
                let anvil = match std::env::var_os("PERURI_ANVIL") {
                    Some(path) => installed(path.into())?,
                    None => installed(dir.join(anvil_binary()))?,
                };
                let mut command = Command::new(anvil);
                command
                    .args(["--host", "127.0.0.1", "--port", "0", "--color", "never", "--hardfork", "cancun"])
                    .args(["--chain-id", &config.chain_id.to_string()])
                    .args(["--gas-limit", &config.block_gas_limit.to_string()])
                    .args(["--base-fee", &config.initial_base_fee.to_string()])
                    .args(["--gas-price", "0"]);
                if let Some(block_time) = config.block_time {
                    command.args(["--block-time", &block_time.as_secs_f64().to_string()]);
                }
                if let Some(state) = self.state_file() {
                    command.arg("--state").arg(state);
                    command.args(["--state-interval", &STATE_INTERVAL.as_secs().to_string()]);
                }
                Ok(command)
            }
        }
    }
}

/// The Anvil binary under `node_modules`: `@foundry-rs/anvil` installs it as the optional dependency for this
/// platform (its `bin.mjs` wrapper would put a Node process between us and the node's signals).
fn anvil_binary() -> String {
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("node_modules/@foundry-rs/anvil-{os}-{arch}/bin/anvil")
}

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
    /// The node (default Hardhat).
    pub node: Node,
}

impl Default for LocalChainConfig {
    fn default() -> Self {
        Self {
            chain_id: DEFAULT_CHAIN_ID,
            block_time: None,
            block_gas_limit: BLOCK_GAS_LIMIT,
            initial_base_fee: 0,
            node: Node::Hardhat,
        }
    }
}

/// A running node on a free loopback port, stopped on drop (see [`Node`]).
pub struct LocalChain {
    child: Child,
    url: String,
    config: LocalChainConfig,
    output: Arc<Output>,
    /// Loaded from an existing state file.
    resumed: bool,
    stopped: bool,
    dev_accounts: Vec<PrivateKeySigner>,
}

impl std::fmt::Debug for LocalChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalChain")
            .field("pid", &self.child.id())
            .field("url", &self.url)
            .field("config", &self.config)
            .field("resumed", &self.resumed)
            .finish_non_exhaustive()
    }
}

/// The `contracts/` directory: `PERURI_CONTRACTS_DIR`, else this crate's source directory.
pub fn contracts_dir() -> PathBuf {
    std::env::var_os("PERURI_CONTRACTS_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

impl LocalChain {
    /// Start a chain with the default configuration (Hardhat, chain id 1337, automine).
    pub async fn start() -> Result<Self, LocalChainError> {
        Self::start_with(LocalChainConfig::default()).await
    }

    /// Start a chain and wait until it answers; a fresh chain (not one loaded from its state file) gets the
    /// production genesis alloc.
    pub async fn start_with(config: LocalChainConfig) -> Result<Self, LocalChainError> {
        let chain = Self::spawn(config).await?;
        if !chain.resumed {
            chain.load_alloc(&default_alloc()).await?;
        }
        let node = chain.config.node.name();
        info!(url = %chain.url, chain_id = chain.config.chain_id, node, resumed = chain.resumed, "local chain started");
        Ok(chain)
    }

    /// Starts the node on port 0, so the kernel picks a free port as it binds, and learns the port from
    /// the node's own "listening" line. (Choosing a port first and passing it on races with other tests:
    /// a node that lost the race would be talked to through the winner's port.)
    async fn spawn(config: LocalChainConfig) -> Result<Self, LocalChainError> {
        let node = config.node.name();
        let spawn_error = |source| LocalChainError::Spawn { node, source };
        let mut command = config.node.command(&config)?;
        let state = config.node.state_file();
        if let Some(state) = &state {
            stop_stale_node(state).await;
        }
        let resumed = state.as_deref().is_some_and(Path::exists);
        // One pipe for stdout and stderr, read by a thread that keeps the last lines.
        let (reader, writer) = std::io::pipe().map_err(spawn_error)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(writer.try_clone().map_err(spawn_error)?)
            .stderr(writer)
            .process_group(0)
            .spawn()
            .map_err(spawn_error)?;
        // The command holds the pipe's write ends: drop them, so that the reader ends with the node.
        drop(command);
        let output = Output::follow(reader, config.node.listening_marker());
        if let Some(state) = &state {
            let _ = std::fs::write(pid_file(state), child.id().to_string());
        }
        let mut chain = Self {
            child,
            url: String::new(),
            config,
            output,
            resumed,
            stopped: false,
            dev_accounts: DEV_KEYS.iter().filter_map(|k| PrivateKeySigner::from_bytes(k).ok()).collect(),
        };
        chain.wait_ready().await?;
        Ok(chain)
    }

    /// Waits for the node's "listening" line, then for its chain id over JSON-RPC.
    async fn wait_ready(&mut self) -> Result<(), LocalChainError> {
        let node = self.config.node.name();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader take in the node's last words.
                tokio::time::sleep(Duration::from_millis(200)).await;
                return Err(LocalChainError::Exited { node, status: status.to_string(), log: self.output.text() });
            }
            if self.url.is_empty()
                && let Some(url) = self.output.url.get()
            {
                self.url.clone_from(url);
            }
            if !self.url.is_empty() {
                let chain_id = tokio::time::timeout(Duration::from_secs(2), self.provider().get_chain_id()).await;
                if let Ok(Ok(id)) = chain_id {
                    if id != self.config.chain_id {
                        return Err(LocalChainError::WrongChainId { node, expected: self.config.chain_id, actual: id });
                    }
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(LocalChainError::Timeout { node, log: self.output.text() });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the chain was loaded from its state file (an Anvil node with a state file that existed), rather
    /// than started fresh.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// Stops the node as on drop, and says whether it stopped cleanly: for Anvil with a state file, that the
    /// state was written.
    pub fn stop(mut self) -> Result<(), LocalChainError> {
        self.halt()
    }

    /// Stops the node, once. Hardhat's process group is killed. Anvil gets SIGTERM and is waited for while
    /// it writes its state, and killed after [`STOP_TIMEOUT`].
    fn halt(&mut self) -> Result<(), LocalChainError> {
        if std::mem::replace(&mut self.stopped, true) {
            return Ok(());
        }
        let node = self.config.node.name();
        let pid = self.child.id().to_string();
        let result = match self.config.node {
            Node::Hardhat => {
                // Hardhat may fork: kill the whole group.
                let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).stderr(Stdio::null()).status();
                let _ = self.child.kill();
                Ok(())
            }
            Node::Anvil { .. } => {
                let _ = Command::new("kill").args(["-TERM", &pid]).status();
                let deadline = Instant::now() + STOP_TIMEOUT;
                loop {
                    match self.child.try_wait() {
                        Ok(Some(status)) if status.success() => break Ok(()),
                        Ok(Some(status)) => {
                            let how = format!("it exited with {status}");
                            break Err(LocalChainError::Stop { node, how, log: self.output.text() });
                        }
                        Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                        _ => {
                            let _ = self.child.kill();
                            let how = format!("it was killed after {} s", STOP_TIMEOUT.as_secs());
                            break Err(LocalChainError::Stop { node, how, log: self.output.text() });
                        }
                    }
                }
            }
        };
        let _ = self.child.wait();
        if let Some(state) = self.config.node.state_file() {
            let _ = std::fs::remove_file(pid_file(&state));
        }
        result
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

    /// Install genesis accounts (code, balance, nonce, storage) with the `hardhat_set*` methods (Anvil has them
    /// too, as aliases of its `anvil_set*`).
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
        if let Err(e) = self.halt() {
            warn!(error = %e, "local chain");
        }
    }
}

/// The node's output (stdout and stderr, one pipe): the last [`OUTPUT_LINES`] lines, and the URL from its
/// "listening" line. A thread reads the pipe until the node and its children have closed it.
#[derive(Debug, Default)]
struct Output {
    lines: Mutex<VecDeque<String>>,
    url: OnceLock<String>,
}

impl Output {
    fn follow(pipe: std::io::PipeReader, listening_marker: &'static str) -> Arc<Self> {
        let output = Arc::new(Self::default());
        let shared = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut pipe = BufReader::new(pipe);
            let mut line = Vec::new();
            while pipe.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                line.clear();
                if shared.url.get().is_none()
                    && let Some(url) = listening_url(listening_marker, &text)
                {
                    let _ = shared.url.set(url);
                }
                let mut lines = shared.lines.lock().unwrap_or_else(PoisonError::into_inner);
                if lines.len() == OUTPUT_LINES {
                    lines.pop_front();
                }
                lines.push_back(text);
            }
        });
        output
    }

    /// The last lines, for an error message.
    fn text(&self) -> String {
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        lines.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
    }
}

/// The JSON-RPC URL in a line of the node's output, `marker` then the port it bound
/// ([`Node::listening_marker`]).
fn listening_url(marker: &str, line: &str) -> Option<String> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let port: u16 = rest[..digits].parse().ok()?;
    (port != 0).then(|| format!("http://127.0.0.1:{port}"))
}

/// Where the pid of the node that runs on `state` is kept while it runs.
fn pid_file(state: &Path) -> PathBuf {
    state.with_extension("pid")
}

/// Stops a node that an earlier run left running on `state` (that run was killed before it could stop
/// it): two nodes writing one state file would undo each other's blocks. The process is recognised by the
/// pid file and by its command line naming `state` (Linux `/proc`; elsewhere nothing is stopped).
async fn stop_stale_node(state: &Path) {
    let Some(pid) = std::fs::read_to_string(pid_file(state)).ok().and_then(|t| t.trim().parse::<u32>().ok()) else {
        return;
    };
    let runs_on_state = || {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        cmdline.split(|b| *b == 0).any(|arg| arg == state.as_os_str().as_encoded_bytes())
    };
    if !runs_on_state() {
        return;
    }
    warn!(pid, state = %state.display(), "stopping the chain node an earlier run left on this state file");
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let deadline = Instant::now() + STOP_TIMEOUT;
    while runs_on_state() {
        if Instant::now() > deadline {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::{Node, listening_url};

    #[test]
    fn reads_the_port_the_node_bound() {
        let hardhat = Node::Hardhat.listening_marker();
        let line = "Started HTTP and WebSocket JSON-RPC server at http://127.0.0.1:40123/";
        assert_eq!(listening_url(hardhat, line).as_deref(), Some("http://127.0.0.1:40123"));
        let line = "Started HTTP and WebSocket JSON-RPC server at http://127.0.0.1:0/";
        assert_eq!(listening_url(hardhat, line), None);
        assert_eq!(listening_url(hardhat, "Compiling..."), None);

        let anvil = Node::Anvil { state: None }.listening_marker();
        assert_eq!(listening_url(anvil, "Listening on 127.0.0.1:35393").as_deref(), Some("http://127.0.0.1:35393"));
        assert_eq!(listening_url(anvil, "Listening on 127.0.0.1:"), None);
        assert_eq!(listening_url(anvil, line), None);
    }
}
