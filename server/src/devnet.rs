//! `custody devnet`: everything on one machine with no set-up.
//!
//! ```text
//! .devnet/softhsm   persistent SoftHSM2 token (KEK, pseudonym and infrastructure keys)
//! .devnet/custody.db the key store (SQLite)
//! local chain       Hardhat node, 2 s blocks, contracts deployed by the HSM admin key
//! the API          http://127.0.0.1:8080 (loopback only), tokens signed by .devnet/jwt-es256.pem
//! .devnet/devnet.json  api_url, rpc_url, chain_id, contracts, keys, tokens (0600: the tokens)
//! .devnet/custody.env  the environment for `custody` commands against it (0600: the PIN)
//! ```
//!
//! A second run reuses the token and the database; the chain starts fresh and the
//! contracts land at the same deterministic addresses.

use std::{path::PathBuf, time::Duration};

use alloy::network::EthereumWallet;
use anyhow::Context;
use custody_contracts::{
    DeployConfig,
    test_utils::{LocalChain, LocalChainConfig},
};
use custody_hsm_sim::SoftHsm;
use custody_signer::{Backend, Hsm, KeyClass, KeyStore, Keyring, Pkcs11Config};
use serde_json::json;
use tracing::info;

/// The infrastructure keys the devnet creates, by role.
const INFRA_KEYS: [&str; 5] = ["admin", "bundler", "paymaster", "issuer", "anchor"];

/// Options of `custody devnet`.
#[derive(Debug, clap::Args)]
pub(crate) struct DevnetArgs {
    /// State directory (token, database, devnet.json).
    #[arg(long, default_value = ".devnet")]
    dir: PathBuf,
    /// Chain id of the local chain.
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
        anyhow::bail!(
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
    let hsm = Hsm::connect(Pkcs11Config::new(softhsm.module(), softhsm.label(), softhsm.user_pin().clone())).await?;
    let keyring = Keyring::open(Backend::Pkcs11(hsm), KeyStore::connect(&db_url).await?).await?;
    let block_time = (args.block_time > 0).then(|| Duration::from_secs(args.block_time));
    let chain_config = LocalChainConfig { chain_id: args.chain_id, block_time, ..Default::default() };
    let (chain, deployment, keys) = provision(&keyring, chain_config).await?;

    let deployment_file = args.dir.join("deployment.json");
    std::fs::write(&deployment_file, serde_json::to_string_pretty(&deployment)?)?;

    // The API, in this process, over the same token, database and chain.
    let (jwt_private, jwt_public) = crate::devnet_auth::key_pair(&args.dir)?;
    let config = api_config(&softhsm, &db_url, Some(chain.rpc_url()), &deployment_file, jwt_public, args.listen);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {} (another devnet running? pass --listen)", args.listen))?;
    let api_url = format!("http://{}", listener.local_addr()?);
    let api = tokio::spawn(crate::serve::serve_on(listener, config));
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
        "rpc_url": chain.rpc_url(),
        "chain_id": chain.chain_id(),
        "block": deployment.block,
        "contracts": deployment.contracts,
        "keys": keys,
        "tokens": tokens,
        "demo_user": "demo-user",
        "database_url": db_url,
        "softhsm2_conf": softhsm.conf_path(),
    });
    let path = args.dir.join("devnet.json");
    crate::devnet_auth::write_private(&path, serde_json::to_string_pretty(&record)?.as_bytes())?;
    info!(rpc_url = chain.rpc_url(), %api_url, "devnet ready");

    println!("Peruri Custody devnet is running (Ctrl-C stops it).\n");
    println!("  api       {api_url}");
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

    crate::shutdown::signal().await;
    info!("stopping the devnet");
    // The API saw the same signal and drains on its own.
    match tokio::time::timeout(Duration::from_secs(15), api).await {
        Ok(Ok(result)) => result?,
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => tracing::warn!("the API did not stop within 15 s"),
    }
    drop(chain);
    Ok(())
}

/// The infrastructure keys (created on first use), a local chain with `chain_config` and the contracts
/// deployed by the HSM admin key, with the roles on the HSM keys. Returns the keys' addresses by name.
pub(crate) async fn provision(
    keyring: &Keyring,
    chain_config: LocalChainConfig,
) -> anyhow::Result<(LocalChain, custody_contracts::Deployment, serde_json::Map<String, serde_json::Value>)> {
    let mut keys = serde_json::Map::new();
    for name in INFRA_KEYS {
        let record = match keyring.store().active(KeyClass::Infra, name).await? {
            Some(record) => record,
            None => keyring.create_infra(name).await?,
        };
        keys.insert(name.to_owned(), json!(record.address()));
    }
    let chain = LocalChain::start_with(chain_config).await.context("starting the local chain")?;
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
    let deployment = custody_contracts::deploy::deploy(&provider, &deploy).await.context("deploying the contracts")?;
    Ok((chain, deployment, keys))
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
        },
        chain: ChainConfig {
            rpc_url: rpc_url.map(str::to_owned),
            deployment_file: Some(deployment_file.to_path_buf()),
        },
        issuance: IssuanceSection::default(),
        bundler: Some(custody_bundler::BundlerConfig { debug_methods: true, ..Default::default() }),
    }
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
