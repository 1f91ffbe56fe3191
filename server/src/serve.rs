//! `custody serve`: the API over the configured keyring, database and chain.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, bail};
use custody_db::connect_pool;
use custody_signer::KeyStore;
use jsonwebtoken::{Algorithm, DecodingKey};
use metrics_exporter_prometheus::PrometheusBuilder;
use tracing::info;

use crate::{
    api::{
        self, AppState, Limits,
        auth::{Auth, VerifierKey},
        rate_limit::RateLimiter,
    },
    audit::Audit,
    config::{Config, JwtKeyConfig},
    connections::{self, ConnectionLimits},
    tasks::Tasks,
    tls::TlsListener,
};

/// Builds the shared state: database (migrated), keyring, audit trail, token verifier; the bundler's
/// builders start among `tasks`.
pub(crate) async fn state(config: &Config, tasks: &mut Tasks) -> anyhow::Result<AppState> {
    let pool = connect_pool(&config.database.url).await?;
    crate::db::migrate(&pool).await?;
    crate::chain_identity::check(&pool, &config.chain).await?;
    let audit = Audit::new(pool.clone());
    // Every transaction this process signs is audited before it is broadcast (set before the bundler's
    // builders start).
    custody_sender::set_journal(Arc::new(audit.clone()));
    let keyring = crate::cli::keyring_on(config, KeyStore::from_pool(pool.clone())).await?;
    let metrics = PrometheusBuilder::new().install_recorder().ok();
    let wallets = match &config.chain.deployment_file {
        Some(path) => Some(wallets(config, path, &keyring, &pool).await?),
        None => None,
    };
    let issuance = custody_issuance::Issuance::open(pool.clone(), config.issuance.policy.clone()).await?;
    let bundler = match (&config.bundler, &config.chain.rpc_url, &config.chain.deployment_file) {
        (None, ..) => None,
        (Some(bundler), Some(url), Some(path)) => {
            Some(crate::bundler::start(bundler, &deployment_record(path)?, url, &keyring, &pool, tasks).await?)
        }
        (Some(_), ..) => bail!("[bundler] needs [chain] rpc_url and deployment_file"),
    };
    let paymaster = match (&config.paymaster, &config.chain.deployment_file) {
        (None, _) => None,
        (Some(section), Some(path)) => {
            let budget = custody_paymaster::Budget::open(pool.clone(), &section.policies).await?;
            let signer = keyring
                .signer(custody_signer::KeyClass::Infra, &section.key)
                .await
                .with_context(|| format!("[paymaster] key {:?}", section.key))?;
            let paymaster =
                custody_paymaster::Paymaster::new(section.clone(), signer, &deployment_record(path)?, budget)?;
            // pm_sponsorUserOperation estimates gas with the bundler's estimator, when it runs here.
            Some(Arc::new(match &bundler {
                Some(bundler) => paymaster.with_estimator(Arc::new(crate::bundler::Estimator(bundler.clone()))),
                None => paymaster,
            }))
        }
        (Some(_), None) => bail!("[paymaster] needs [chain] deployment_file"),
    };
    Ok(AppState {
        deployment: config.chain.deployment_file.as_deref().map(deployment_record).transpose()?,
        bundler,
        paymaster,
        issuance,
        wallets,
        keyring,
        audit,
        pool,
        auth: auth(config)?,
        metrics,
        chain: config.chain.rpc_url.as_deref().map(provider).transpose()?,
        max_amount: config.issuance.max_amount,
        tasks: tasks.board(),
    })
}

/// One HTTP provider for `[chain] rpc_url`, shared by every part that reads the chain.
pub(crate) fn provider(url: &str) -> anyhow::Result<alloy::providers::DynProvider> {
    use alloy::providers::{Provider, ProviderBuilder};
    Ok(ProviderBuilder::new().connect_http(url.parse().context("chain.rpc_url")?).erased())
}

/// Starts the `[issuance.rabbitmq]` consumer when configured, and the mirror worker and the indexer when
/// `[issuance] worker` is on and a chain, a deployment and the infrastructure keys `issuer` and `anchor` are
/// there (intake runs anyway); each a supervised task.
async fn spawn_issuance(config: &Config, state: &AppState, tasks: &mut Tasks) -> anyhow::Result<()> {
    let section = &config.issuance;
    if let Some(rabbitmq) = &section.rabbitmq {
        let consumer = custody_issuance::ActivityConsumer::new(&state.issuance, rabbitmq.clone())
            .with_recorder(Arc::new(state.audit.clone()));
        tasks.spawn("activity-consumer", consumer.run(tasks.stopping()));
    }
    let (true, Some(provider), Some(path), Some(wallets)) =
        (section.worker, &state.chain, &config.chain.deployment_file, &state.wallets)
    else {
        return Ok(());
    };
    let deployment = deployment_record(path)?;
    let key = |name| state.keyring.signer(custody_signer::KeyClass::Infra, name);
    let (Ok(issuer), Ok(anchorer)) = (key("issuer").await, key("anchor").await) else {
        tracing::warn!("no active `issuer` and `anchor` keys: the mirror worker is not started");
        return Ok(());
    };
    let contracts = custody_issuance::IssuanceContracts::from(&deployment.contracts);
    let interval = Duration::from_millis(section.batch_interval_ms.max(10));
    let worker_config = custody_issuance::WorkerConfig {
        batch_size: section.batch_size,
        interval,
        max_mints_per_tx: section.max_mints_per_tx,
        ..Default::default()
    };
    let worker = custody_issuance::Worker::new(
        &state.issuance,
        wallets.clone(),
        issuer,
        anchorer,
        provider.clone(),
        contracts,
        worker_config,
    );
    let indexer = custody_issuance::Indexer::new(&state.issuance, provider.clone(), contracts);
    let stopping = tasks.stopping();
    tasks.spawn("issuance-worker", async move { worker.run(stopping).await });
    let stopping = tasks.stopping();
    tasks.spawn("issuance-indexer", async move { indexer.run(interval, stopping).await });
    Ok(())
}

/// The paymaster's settler (receipts settle sponsorships, expired ones are released), when `[paymaster]`
/// and a chain are configured.
fn spawn_paymaster_settler(state: &AppState, tasks: &mut Tasks) {
    if let (Some(paymaster), Some(chain)) = (&state.paymaster, &state.chain) {
        let settler = custody_paymaster::Settler::new(paymaster, chain.clone());
        let stopping = tasks.stopping();
        tasks.spawn("paymaster-settler", settler.run(Duration::from_secs(1), stopping));
    }
}

/// The audit checkpointer (the trail's head anchored in PLOG), when `[audit] checkpoint_secs` is not 0
/// and a chain, a deployment and the `anchor` key are there.
async fn spawn_audit_checkpoints(config: &Config, state: &AppState, tasks: &mut Tasks) -> anyhow::Result<()> {
    let (secs, Some(chain), Some(path)) = (config.audit.checkpoint_secs, &state.chain, &config.chain.deployment_file)
    else {
        return Ok(());
    };
    if secs == 0 {
        return Ok(());
    }
    let Ok(key) = state.keyring.signer(custody_signer::KeyClass::Infra, "anchor").await else {
        tracing::warn!("no active `anchor` key: audit checkpoints are not anchored");
        return Ok(());
    };
    let log = deployment_record(path)?.contracts.peruri_log;
    let checkpointer = crate::audit_checkpoint::Checkpointer::new(state.pool.clone(), chain.clone(), key, log);
    let stopping = tasks.stopping();
    let sensitive = state.audit.sensitive();
    tasks.spawn("audit-checkpoints", checkpointer.run(Duration::from_secs(secs), sensitive, stopping));
    Ok(())
}

/// Approved dual-control operations the last run did not finish run again (each resumes where it stopped).
async fn resume_approved(state: &AppState) -> anyhow::Result<()> {
    for approval in crate::approvals::unfinished(&state.pool).await? {
        tracing::warn!(approval = %approval.id, action = %approval.action, "resuming an approved operation");
        tokio::spawn(crate::approvals::execute(crate::approvals::Executor::of(state), approval));
    }
    Ok(())
}

pub(crate) fn deployment_record(path: &std::path::Path) -> anyhow::Result<custody_contracts::Deployment> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing the deployment record {}", path.display()))
}

/// `custody reindex`: rebuilds `token_balance_cache` and `badge_index` from the chain's events from block 0.
pub(crate) async fn reindex(config: &Config) -> anyhow::Result<()> {
    let url = config.chain.rpc_url.as_deref().context("reindex needs [chain] rpc_url")?;
    let path = config.chain.deployment_file.as_deref().context("reindex needs [chain] deployment_file")?;
    let contracts = custody_issuance::IssuanceContracts::from(&deployment_record(path)?.contracts);
    let pool = connect_pool(&config.database.url).await?;
    let issuance = custody_issuance::Issuance::open(pool, config.issuance.policy.clone()).await?;
    let indexer = custody_issuance::Indexer::new(&issuance, provider(url)?, contracts);
    indexer.reset().await?;
    let mut blocks = 0;
    loop {
        match indexer.step().await? {
            0 => break,
            n => blocks += n,
        }
    }
    info!(blocks, "caches rebuilt from block 0");
    Ok(())
}

/// The wallet service over `keyring` and `pool` for the deployment record at `path`
/// (addresses checked against the factory once when a chain RPC URL is configured).
pub(crate) async fn wallets(
    config: &Config,
    path: &std::path::Path,
    keyring: &custody_signer::Keyring,
    pool: &sqlx::AnyPool,
) -> anyhow::Result<custody_accounts::Wallets> {
    let chain = custody_accounts::ChainContext::from_deployment(&deployment_record(path)?);
    let wallets = custody_accounts::Wallets::open(keyring.clone(), pool.clone(), chain).await?;
    if let Some(url) = &config.chain.rpc_url {
        wallets
            .verify_address_on_chain(&provider(url)?)
            .await
            .context("checking account addresses against the factory")?;
    }
    Ok(wallets)
}

fn auth(config: &Config) -> anyhow::Result<Auth> {
    let a = &config.auth;
    if a.issuer.is_empty() || a.audience.is_empty() || a.keys.is_empty() {
        bail!("[auth] needs issuer, audience and at least one key");
    }
    let keys = a.keys.iter().map(verifier_key).collect::<anyhow::Result<_>>()?;
    Ok(Auth::new(keys, a.issuer.clone(), a.audience.clone(), a.max_token_lifetime_secs))
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

/// Serves on a bound listener until SIGINT or SIGTERM, or until a critical task ends unexpectedly (then
/// the API drains and this returns an error, for a non-zero exit).
pub(crate) async fn serve_on(listener: tokio::net::TcpListener, config: Config) -> anyhow::Result<()> {
    let mut tasks = Tasks::default();
    let state = Arc::new(state(&config, &mut tasks).await?);
    spawn_issuance(&config, &state, &mut tasks).await?;
    spawn_paymaster_settler(&state, &mut tasks);
    if let Some(follower) = crate::owner_rotation::Follower::of(&state) {
        tasks.spawn("owner-rotations", follower.run(Duration::from_secs(1), tasks.stopping()));
    }
    spawn_audit_checkpoints(&config, &state, &mut tasks).await?;
    resume_approved(&state).await?;
    let limits = Limits {
        body_bytes: config.server.body_limit_bytes,
        timeout: Duration::from_secs(config.server.request_timeout_secs),
        rate: RateLimiter::new(config.server.rate_limit),
    };
    let app = api::router(state, limits);
    let connections = ConnectionLimits {
        max_connections: config.server.max_connections,
        header_read_timeout: Duration::from_secs(config.server.header_read_timeout_secs.max(1)),
    };
    let drain = Duration::from_secs(config.server.drain_secs);
    let stop_api = Arc::new(tokio::sync::Notify::new());
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = {
        let stop_api = stop_api.clone();
        async move {
            tokio::select! {
                () = crate::shutdown::signal() => info!("shutting down; draining requests"),
                () = stop_api.notified() => info!("stopping the API; draining requests"),
            }
            let _ = stopped_tx.send(());
        }
    };
    let server: std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> = match &config.server.tls {
        None => {
            info!(addr = %listener.local_addr()?, "custody API listening (HTTP)");
            Box::pin(connections::serve(listener, app, connections, shutdown))
        }
        Some(tls) => {
            let listener = TlsListener::new(listener, crate::tls::server_config(tls)?)?;
            let mutual = tls.client_ca_file.is_some();
            info!(addr = %axum::serve::Listener::local_addr(&listener)?, mutual, "custody API listening (HTTPS)");
            Box::pin(connections::serve(listener, app, connections, shutdown))
        }
    };
    tokio::pin!(server);
    let drain_over = async {
        let _ = stopped_rx.await;
        tokio::time::sleep(drain).await;
    };
    tokio::pin!(drain_over);
    let mut failed = None;
    loop {
        tokio::select! {
            result = &mut server => {
                result.context("serving")?;
                break;
            }
            () = &mut drain_over => {
                tracing::warn!("drain window over; exiting with requests in flight");
                break;
            }
            name = tasks.ended(), if failed.is_none() => {
                failed = Some(name);
                stop_api.notify_one();
            }
        }
    }
    tasks.join(drain).await;
    match failed {
        Some(name) => bail!("the critical task {name} ended unexpectedly (see the log); restart the service"),
        None => Ok(()),
    }
}
