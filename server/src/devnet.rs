//! `custody devnet`: everything on one machine with no set-up.
//!
//! ```text
//! .devnet/softhsm           persistent SoftHSM2 token (KEK, pseudonym and infrastructure keys)
//! .devnet/custody.db        the key store and the service's database (SQLite)
//! .devnet/chain-state.json  the local chain (Anvil, 2 s blocks): loaded at start, written every 5 s and on stop
//! .devnet/deployment.json   the contracts, deployed by the HSM admin key when the chain is new
//! the API                   http://127.0.0.1:8080 (loopback only), tokens signed by .devnet/jwt-es256.pem
//! .devnet/devnet.json       api_url, rpc_url, chain_id, contracts, keys, tokens (0600: the tokens)
//! .devnet/custody.env       the environment for `custody` commands against it (0600: the PIN)
//! ```
//!
//! A restart keeps everything: the token, the database, and the chain with every block, receipt and
//! balance (Ctrl-C or SIGTERM: the node writes its state as it stops; after a crash, the last 5 s of
//! blocks may be lost). The deployment is found on the chain, not repeated. What is kept must agree: when
//! the chain state is gone but the directory holds a database or a deployment record of an earlier chain,
//! the devnet refuses to start and says how to start over (delete the directory), rather than show
//! confirmations of transactions the new chain never saw; the service's own check
//! ([`crate::chain_identity`]) refuses any other chain. The state file grows by about 1.7 KB a block, some
//! 70 MB a day at 2 s blocks (`--block-time 0` mines only blocks with transactions).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use alloy::{network::EthereumWallet, providers::Provider};
use anyhow::{Context, bail};
use custody_contracts::{
    DeployConfig, Deployment,
    test_utils::{LocalChain, LocalChainConfig, Node},
};
use custody_db::connect_pool;
use custody_hsm_sim::SoftHsm;
use custody_signer::{Backend, Hsm, KeyClass, KeyStore, Keyring, Pkcs11Config};
use serde_json::json;
use tracing::{info, warn};

/// The infrastructure keys the devnet creates, by role.
const INFRA_KEYS: [&str; 5] = ["admin", "bundler", "paymaster", "issuer", "anchor"];

/// The chain's state file in the devnet directory.
const CHAIN_STATE: &str = "chain-state.json";

/// Options of `custody devnet`.
#[derive(Debug, clap::Args)]
pub(crate) struct DevnetArgs {
    /// State directory (token, database, chain state, devnet.json).
    #[arg(long, default_value = ".devnet")]
    dir: PathBuf,
    /// Chain id of the local chain (when it is new; a kept chain keeps its own).
    #[arg(long, default_value_t = 1337)]
    chain_id: u64,
    /// Seconds between blocks (0: a block per transaction).
    #[arg(long, default_value_t = 2)]
    block_time: u64,
    /// Where the API listens: a loopback address (port 0: any free port, see devnet.json's api_url).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
}

/// Provisions (or reuses) the devnet token and points this process at it.
/// Runs before the async runtime starts: SoftHSM reads its configuration from
/// the environment.
pub(crate) fn prepare(args: &DevnetArgs) -> anyhow::Result<SoftHsm> {
    if !args.listen.ip().is_loopback() {
        bail!(
            "--listen {} is not a loopback address: the devnet's API has its debug methods on and its tokens in \
             devnet.json, for this machine only (e.g. --listen 127.0.0.1:8081)",
            args.listen
        );
    }
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    let hsm = SoftHsm::persistent(&args.dir.join("softhsm"), "custody-devnet")?;
    hsm.activate();
    Ok(hsm)
}

/// Runs the devnet until SIGINT or SIGTERM.
#[expect(clippy::print_stdout, reason = "the devnet prints how to use it")]
pub(crate) async fn run(args: DevnetArgs, softhsm: SoftHsm) -> anyhow::Result<()> {
    let db_url = format!("sqlite://{}", args.dir.join("custody.db").display());
    let pool = connect_pool(&db_url).await?;
    crate::db::migrate(&pool).await?;
    let hsm = Hsm::connect(Pkcs11Config::new(softhsm.module(), softhsm.label(), softhsm.user_pin().clone())).await?;
    let keyring = Keyring::open(Backend::Pkcs11(hsm), KeyStore::from_pool(pool.clone())).await?;
    let keys = infra_keys(&keyring).await?;

    let state = args.dir.join(CHAIN_STATE);
    let deployment_file = args.dir.join("deployment.json");
    let kept = kept_deployment(&args, &state, &deployment_file, &pool).await?;
    let block_time = (args.block_time > 0).then(|| Duration::from_secs(args.block_time));
    let node = Node::Anvil { state: Some(state.clone()) };
    let chain_config = LocalChainConfig { chain_id: args.chain_id, block_time, node, ..Default::default() };
    let chain = LocalChain::start_with(chain_config).await.with_context(|| {
        format!(
            "starting the local chain on {} (damaged? restore it, or start over: rm -rf {})",
            state.display(),
            args.dir.display()
        )
    })?;
    let deployment = match (kept, chain.resumed()) {
        (Some(deployment), true) => {
            deployment_on_chain(&chain, &deployment, &args.dir).await?;
            info!(block = deployment.block, "the chain and its deployment are kept");
            deployment
        }
        (None, false) => {
            let deployment = deploy(&keyring, &chain, &keys).await?;
            deployment.write(&deployment_file)?;
            deployment
        }
        _ => {
            bail!("{} appeared or vanished while the devnet started: is another devnet running on it?", state.display())
        }
    };

    // The API, in this process, over the same token, database and chain.
    let (jwt_private, jwt_public) = crate::devnet_auth::key_pair(&args.dir)?;
    let config = crate::config::Config {
        paymaster: Some(paymaster_config()),
        ..api_config(&softhsm, &db_url, Some(chain.rpc_url()), &deployment_file, jwt_public, args.listen)
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {} (another devnet running? pass --listen)", args.listen))?;
    let api_url = format!("http://{}", listener.local_addr()?);
    let mut api = tokio::spawn(crate::serve::serve_on(listener, config));
    let mut tokens = serde_json::Map::new();
    for (name, sub, role) in [
        ("app", "app-backend", "app"),
        ("officer", "officer-1", "officer"),
        ("officer2", "officer-2", "officer"),
        ("auditor", "auditor-1", "auditor"),
        ("user", "demo-user", "user"),
    ] {
        tokens.insert(name.to_owned(), json!(crate::devnet_auth::token(&jwt_private, sub, &[role])?));
    }

    let record = json!({
        "api_url": api_url,
        "bundler_rpc_url": format!("{api_url}/rpc"),
        "paymaster_rpc_url": format!("{api_url}/paymaster?apikey={}", tokens["app"].as_str().unwrap_or_default()),
        "rpc_url": chain.rpc_url(),
        "chain_id": chain.chain_id(),
        "block": deployment.block,
        "contracts": deployment.contracts,
        "keys": keys,
        "tokens": tokens,
        "demo_user": "demo-user",
        "database_url": db_url,
        "softhsm2_conf": softhsm.conf_path(),
        "chain_state": state,
    });
    let path = args.dir.join("devnet.json");
    crate::devnet_auth::write_private(&path, serde_json::to_string_pretty(&record)?.as_bytes())?;
    info!(rpc_url = chain.rpc_url(), %api_url, "devnet ready");

    println!("Peruri Custody devnet is running (Ctrl-C stops it; a restart keeps the chain and the database).\n");
    println!("  api       {api_url}");
    println!("  paymaster {api_url}/paymaster (ERC-7677; devnet.json's paymaster_rpc_url carries the app token)");
    println!("  chain     {} (chain id {}, {}s blocks)", chain.rpc_url(), chain.chain_id(), args.block_time);
    println!("  state     {} (tokens for app, officer, officer2, auditor, user)", path.display());
    for (name, address) in &keys {
        println!("  key       {name:<10} {}", address.as_str().unwrap_or_default());
    }
    let env_file = args.dir.join("custody.env");
    write_env(&env_file, &softhsm, &db_url)?;
    println!("\nTry, in another shell:");
    println!("  APP=$(python3 -c 'import json;print(json.load(open(\"{}\"))[\"tokens\"][\"app\"])')", path.display());
    println!(
        "  curl -s -X POST {api_url}/v1/wallets -H \"Authorization: Bearer $APP\" -H 'Idempotency-Key: demo-1' \\\n       -H 'Content-Type: application/json' -d '{{\"user_id\":\"demo-user\"}}'"
    );
    println!("  curl -s {api_url}/v1/wallets/demo-user -H \"Authorization: Bearer $APP\"");
    println!("  curl -s {api_url}/readyz");
    println!(
        "  curl -s -X POST {api_url}/rpc -H 'Content-Type: application/json' \\\n       -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_supportedEntryPoints\",\"params\":[]}}'"
    );
    println!("  source {}   # then: custody keys list", env_file.display());

    let served = tokio::select! {
        () = crate::shutdown::signal() => {
            info!("stopping the devnet");
            // The API saw the same signal and drains on its own.
            match tokio::time::timeout(Duration::from_secs(15), api).await {
                Ok(joined) => joined.context("the API task"),
                Err(_) => {
                    warn!("the API did not stop within 15 s");
                    Ok(Ok(()))
                }
            }
        }
        // The API stopped by itself: it failed to start, or failed.
        joined = &mut api => joined.context("the API task"),
    };
    // The chain stops last, after the API's last transactions: it writes its state as it stops.
    match tokio::task::spawn_blocking(move || chain.stop()).await? {
        Ok(()) => info!(state = %state.display(), "the chain's state is saved"),
        Err(e) => warn!(error = %e, "the chain did not stop cleanly; its state file may miss the last blocks"),
    }
    served?
}

/// The deployment record to keep, when the chain state is kept too; `None` when both are new. Refuses,
/// saying how to start over, when only one of them is there, or when there is no chain state but the
/// database was used with a chain (it would disagree with a new one).
async fn kept_deployment(
    args: &DevnetArgs,
    state: &Path,
    deployment_file: &Path,
    pool: &sqlx::AnyPool,
) -> anyhow::Result<Option<Deployment>> {
    let dir = args.dir.display();
    let deployment = if deployment_file.exists() { Some(Deployment::read(deployment_file)?) } else { None };
    let recorded = crate::chain_identity::recorded(pool).await?;
    match (state.exists(), deployment) {
        (true, Some(deployment)) if deployment.chain_id != args.chain_id => bail!(
            "the chain in {} has chain id {}, not {} (--chain-id): run with --chain-id {}, or start over: rm -rf {dir}",
            state.display(),
            deployment.chain_id,
            args.chain_id,
            deployment.chain_id
        ),
        (true, Some(deployment)) => Ok(Some(deployment)),
        (true, None) => bail!(
            "{} holds a chain, but its deployment record {} is gone: restore it, or start over: rm -rf {dir}",
            state.display(),
            deployment_file.display()
        ),
        (false, deployment) => {
            let earlier = |r: crate::chain_identity::ChainIdentity| {
                format!(
                    "a database of an earlier chain (chain id {}, deployment block {} {})",
                    r.chain_id, r.block, r.block_hash
                )
            };
            let what = match (deployment, recorded) {
                (None, None) => return Ok(None),
                (Some(_), None) => "a deployment record of an earlier chain".to_owned(),
                (None, Some(r)) => earlier(r),
                (Some(_), Some(r)) => format!("a deployment record and {}", earlier(r)),
            };
            bail!(
                "there is no chain state {state}, but {dir} holds {what}: a new chain would not have its \
                 transactions. Restore {state}, or start over with a new token, database and chain: stop the \
                 devnet and rm -rf {dir}",
                state = state.display(),
            )
        }
    }
}

/// Checks that a kept chain has the kept deployment: its chain id, and code at every address.
async fn deployment_on_chain(chain: &LocalChain, deployment: &Deployment, dir: &Path) -> anyhow::Result<()> {
    let provider = chain.provider();
    let contracts = serde_json::to_value(deployment.contracts)?;
    for (name, address) in contracts.as_object().into_iter().flatten() {
        let address = serde_json::from_value(address.clone())?;
        if provider.get_code_at(address).await?.is_empty() {
            bail!(
                "the kept chain has no code at {name} {address} of the deployment record: the state and the record \
                 are of different chains; start over: rm -rf {}",
                dir.display()
            );
        }
    }
    Ok(())
}

/// The infrastructure keys (created on first use), their addresses by name.
async fn infra_keys(keyring: &Keyring) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let mut keys = serde_json::Map::new();
    for name in INFRA_KEYS {
        let record = match keyring.store().active(KeyClass::Infra, name).await? {
            Some(record) => record,
            None => keyring.create_infra(name).await?,
        };
        keys.insert(name.to_owned(), json!(record.address()));
    }
    Ok(keys)
}

/// The infrastructure keys (created on first use), a new local chain with `chain_config` and the contracts
/// deployed by the HSM admin key, with the roles on the HSM keys. Returns the keys' addresses by name.
pub(crate) async fn provision(
    keyring: &Keyring,
    chain_config: LocalChainConfig,
) -> anyhow::Result<(LocalChain, Deployment, serde_json::Map<String, serde_json::Value>)> {
    let keys = infra_keys(keyring).await?;
    let chain = LocalChain::start_with(chain_config).await.context("starting the local chain")?;
    let deployment = deploy(keyring, &chain, &keys).await?;
    Ok((chain, deployment, keys))
}

/// Funds the infrastructure `keys` on a new `chain` and deploys the contracts with the HSM admin key, with
/// the roles on the HSM keys.
async fn deploy(
    keyring: &Keyring,
    chain: &LocalChain,
    keys: &serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<Deployment> {
    // Gas price is 0 on the production chain; fund the keys anyway, since
    // wallets' fee estimates on a dev node may ask for a wei.
    for address in keys.values().filter_map(|a| a.as_str()?.parse().ok()) {
        chain.set_balance(address, alloy::primitives::U256::from(10u128.pow(21))).await?;
    }
    let role = |name: &'static str| keyring.signer(KeyClass::Infra, name);
    let admin = role("admin").await?;
    let deploy = DeployConfig {
        admin: admin.address(),
        issuer: role("issuer").await?.address(),
        anchorer: role("anchor").await?.address(),
        paymaster_signers: vec![role("paymaster").await?.address()],
        ..DeployConfig::single_operator(admin.address())
    };
    // The HSM admin key sends the deployment transactions (gas price 0).
    let provider = chain.provider_with(EthereumWallet::from(admin));
    custody_contracts::deploy::deploy(&provider, &deploy).await.context("deploying the contracts")
}

/// The API configuration of the devnet (and of `custody bench`): this token, database and
/// deployment, tokens from the devnet issuer.
pub(crate) fn api_config(
    softhsm: &SoftHsm,
    db_url: &str,
    rpc_url: Option<&str>,
    deployment_file: &std::path::Path,
    jwt_public: String,
    listen: std::net::SocketAddr,
) -> crate::config::Config {
    use crate::config::*;
    Config {
        database: DatabaseConfig { url: db_url.to_owned() },
        signer: SignerConfig {
            backend: BackendChoice::Pkcs11,
            pkcs11: Pkcs11Section {
                module: softhsm.module().to_path_buf(),
                token: softhsm.label().to_owned(),
                pin: Some(softhsm.user_pin().clone()),
                ..Default::default()
            },
            kms: KmsSection::default(),
        },
        server: ServerConfig { listen, ..Default::default() },
        auth: AuthConfig {
            issuer: crate::devnet_auth::ISSUER.to_owned(),
            audience: crate::devnet_auth::AUDIENCE.to_owned(),
            keys: vec![JwtKeyConfig {
                kid: Some("devnet".into()),
                algorithms: vec!["ES256".into()],
                public_key_pem: Some(jwt_public),
                public_key_file: None,
            }],
            // The devnet's ready-made tokens last 30 days.
            max_token_lifetime_secs: 31 * 86_400,
        },
        chain: ChainConfig {
            rpc_url: rpc_url.map(str::to_owned),
            deployment_file: Some(deployment_file.to_path_buf()),
        },
        issuance: IssuanceSection::default(),
        bundler: Some(custody_bundler::BundlerConfig { debug_methods: true, ..Default::default() }),
        paymaster: None,
        audit: AuditSection { checkpoint_secs: 5 },
    }
}

/// The devnet's paymaster: the `paymaster` key, one policy `devnet` sponsoring any call of any account,
/// at most 1,000 operations per sender and day and 10^12 gas in all per month.
pub(crate) fn paymaster_config() -> custody_paymaster::PaymasterConfig {
    use custody_paymaster::{Limit, PaymasterConfig, PolicyConfig, Reset, Scope};
    let daily = Limit { scope: Scope::Sender, max_gas: None, max_ops: Some(1_000), reset: Reset::Daily };
    let monthly =
        Limit { scope: Scope::Global, max_gas: Some(1_000_000_000_000), max_ops: None, reset: Reset::Monthly };
    let policy = PolicyConfig { id: "devnet".to_owned(), limits: vec![daily, monthly], ..Default::default() };
    PaymasterConfig { default_policy: policy.id.clone(), policies: vec![policy], ..Default::default() }
}

/// Writes the environment that points `custody` at the devnet (0600: it holds the devnet PIN).
fn write_env(path: &std::path::Path, softhsm: &SoftHsm, db_url: &str) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    let text = format!(
        "export SOFTHSM2_CONF={}\nexport CUSTODY_PKCS11_MODULE={}\nexport CUSTODY_PKCS11_TOKEN={}\n\
         export CUSTODY_PKCS11_PIN={}\nexport CUSTODY_DATABASE_URL={db_url}\n",
        softhsm.conf_path().display(),
        softhsm.module().display(),
        softhsm.label(),
        softhsm.user_pin().expose_secret(),
    );
    crate::devnet_auth::write_private(path, text.as_bytes())
}
