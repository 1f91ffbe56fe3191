//! `custody serve`: the API over the configured keyring, database and chain.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, bail};
use custody_signer::{KeyStore, connect_pool};
use jsonwebtoken::{Algorithm, DecodingKey};
use metrics_exporter_prometheus::PrometheusBuilder;
use tracing::info;

use crate::{
    api::{
        self, AppState, Limits,
        auth::{Auth, VerifierKey},
    },
    audit::Audit,
    config::{Config, JwtKeyConfig},
};

/// Builds the shared state: database (migrated), keyring, audit trail, token verifier.
pub(crate) async fn state(config: &Config) -> anyhow::Result<AppState> {
    let pool = connect_pool(&config.database.url).await?;
    crate::db::migrate(&pool).await?;
    let keyring = crate::cli::keyring_on(config, KeyStore::from_pool(pool.clone())).await?;
    let metrics = PrometheusBuilder::new().install_recorder().ok();
    let wallets = match &config.chain.deployment_file {
        Some(path) => Some(wallets(config, path, &keyring, &pool).await?),
        None => None,
    };
    Ok(AppState {
        wallets,
        keyring,
        audit: Audit::new(pool.clone()),
        pool,
        auth: auth(config)?,
        metrics,
        rpc_url: config.chain.rpc_url.clone(),
    })
}

async fn wallets(
    config: &Config,
    path: &std::path::Path,
    keyring: &custody_signer::Keyring,
    pool: &sqlx::AnyPool,
) -> anyhow::Result<custody_accounts::Wallets> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let deployment: custody_contracts::Deployment =
        serde_json::from_str(&text).with_context(|| format!("parsing the deployment record {}", path.display()))?;
    let chain = custody_accounts::ChainContext::from_deployment(&deployment);
    let wallets = custody_accounts::Wallets::open(keyring.clone(), pool.clone(), chain).await?;
    if let Some(url) = &config.chain.rpc_url {
        use alloy::providers::ProviderBuilder;
        let provider = ProviderBuilder::new().connect_http(url.parse().context("chain.rpc_url")?);
        wallets.verify_address_on_chain(&provider).await.context("checking account addresses against the factory")?;
    }
    Ok(wallets)
}

fn auth(config: &Config) -> anyhow::Result<Auth> {
    let a = &config.auth;
    if a.issuer.is_empty() || a.audience.is_empty() || a.keys.is_empty() {
        bail!("[auth] needs issuer, audience and at least one key");
    }
    let keys = a.keys.iter().map(verifier_key).collect::<anyhow::Result<_>>()?;
    Ok(Auth { keys, issuer: a.issuer.clone(), audience: a.audience.clone() })
}

fn verifier_key(k: &JwtKeyConfig) -> anyhow::Result<VerifierKey> {
    let pem = match (&k.public_key_pem, &k.public_key_file) {
        (Some(pem), None) => pem.clone(),
        (None, Some(path)) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        _ => bail!("[[auth.keys]] needs exactly one of public_key_pem and public_key_file"),
    };
    let algorithms: Vec<Algorithm> = k
        .algorithms
        .iter()
        .map(|a| match a.as_str() {
            "ES256" => Ok(Algorithm::ES256),
            "RS256" => Ok(Algorithm::RS256),
            "EdDSA" => Ok(Algorithm::EdDSA),
            other => bail!("algorithm {other:?} is not accepted (ES256, RS256, EdDSA)"),
        })
        .collect::<anyhow::Result<_>>()?;
    let Some(first) = algorithms.first() else { bail!("[[auth.keys]] needs at least one algorithm") };
    let key = match first {
        Algorithm::ES256 => DecodingKey::from_ec_pem(pem.as_bytes()),
        Algorithm::RS256 => DecodingKey::from_rsa_pem(pem.as_bytes()),
        _ => DecodingKey::from_ed_pem(pem.as_bytes()),
    }
    .context("parsing a JWT public key")?;
    if algorithms.iter().any(|a| a.family() != first.family()) {
        bail!("[[auth.keys]] algorithms must be of one family");
    }
    Ok(VerifierKey { kid: k.kid.clone(), key, algorithms })
}

/// Serves until SIGINT or SIGTERM, then drains for up to `drain_secs`.
pub(crate) async fn run(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("listening on {}", config.server.listen))?;
    serve_on(listener, config).await
}

/// Serves on a bound listener until SIGINT or SIGTERM.
pub(crate) async fn serve_on(listener: tokio::net::TcpListener, config: Config) -> anyhow::Result<()> {
    let state = Arc::new(state(&config).await?);
    let limits = Limits {
        body_bytes: config.server.body_limit_bytes,
        timeout: Duration::from_secs(config.server.request_timeout_secs),
    };
    let app = api::router(state, limits);
    info!(addr = %listener.local_addr()?, "custody API listening");
    let drain = Duration::from_secs(config.server.drain_secs);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async {
        crate::shutdown::signal().await;
        info!("shutting down; draining requests");
        let _ = stop_tx.send(());
    });
    tokio::select! {
        result = server => result.context("serving")?,
        () = async { let _ = stop_rx.await; tokio::time::sleep(drain).await } => {
            tracing::warn!("drain window over; exiting with requests in flight");
        }
    }
    Ok(())
}
