//! `custody devnet`: everything on one machine with no set-up.
//!
//! ```text
//! .devnet/softhsm   persistent SoftHSM2 token (KEK, pseudonym and infrastructure keys)
//! .devnet/custody.db the key store (SQLite)
//! local chain       Hardhat node, 2 s blocks, contracts deployed by the HSM admin key
//! .devnet/devnet.json  rpc_url, chain_id, contracts, keys
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
}

/// Provisions (or reuses) the devnet token and points this process at it.
/// Runs before the async runtime starts: SoftHSM reads its configuration from
/// the environment.
pub(crate) fn prepare(args: &DevnetArgs) -> anyhow::Result<SoftHsm> {
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
    let mut keys = serde_json::Map::new();
    for name in INFRA_KEYS {
        let record = match keyring.store().active(KeyClass::Infra, name).await? {
            Some(record) => record,
            None => keyring.create_infra(name).await?,
        };
        keys.insert(name.to_owned(), json!(record.address()));
    }

    let block_time = (args.block_time > 0).then(|| Duration::from_secs(args.block_time));
    let chain = LocalChain::start_with(LocalChainConfig { chain_id: args.chain_id, block_time, ..Default::default() })
        .await
        .context("starting the local chain")?;
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

    let record = json!({
        "rpc_url": chain.rpc_url(),
        "chain_id": chain.chain_id(),
        "block": deployment.block,
        "contracts": deployment.contracts,
        "keys": keys,
        "database_url": db_url,
        "softhsm2_conf": softhsm.conf_path(),
    });
    let path = args.dir.join("devnet.json");
    std::fs::write(&path, serde_json::to_string_pretty(&record)?)
        .with_context(|| format!("writing {}", path.display()))?;
    info!(rpc_url = chain.rpc_url(), "devnet ready");

    println!("Peruri Custody devnet is running (Ctrl-C stops it).\n");
    println!("  chain     {} (chain id {}, {}s blocks)", chain.rpc_url(), chain.chain_id(), args.block_time);
    println!("  state     {}", path.display());
    for (name, address) in &keys {
        println!("  key       {name:<10} {}", address.as_str().unwrap_or_default());
    }
    let env_file = args.dir.join("custody.env");
    write_env(&env_file, &softhsm, &db_url)?;
    println!("\nTry, in another shell:");
    println!("  source {}", env_file.display());
    println!("  custody keys create-user --user alice");
    println!("  custody keys sign --user alice --digest 0x$(printf %064x 1)");
    println!("  custody keys list");

    crate::shutdown::signal().await;
    info!("stopping the devnet");
    drop(chain);
    Ok(())
}

/// Writes the environment that points `custody` at the devnet (0600: it holds the devnet PIN).
fn write_env(path: &std::path::Path, softhsm: &SoftHsm, db_url: &str) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let text = format!(
        "export SOFTHSM2_CONF={}\nexport CUSTODY_PKCS11_MODULE={}\nexport CUSTODY_PKCS11_TOKEN={}\n\
         export CUSTODY_PKCS11_PIN={}\nexport CUSTODY_DATABASE_URL={db_url}\n",
        softhsm.conf_path().display(),
        softhsm.module().display(),
        softhsm.label(),
        softhsm.user_pin().expose_secret(),
    );
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}
