//! Typed configuration: defaults, then a TOML file, then `CUSTODY_*` environment.
//! Validated once at start-up; an error refuses to start.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use secrecy::SecretString;
use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    #[serde(default)]
    pub(crate) database: DatabaseConfig,
    #[serde(default)]
    pub(crate) signer: SignerConfig,
    #[serde(default)]
    pub(crate) server: ServerConfig,
    #[serde(default)]
    pub(crate) auth: AuthConfig,
    #[serde(default)]
    pub(crate) chain: ChainConfig,
    #[serde(default)]
    pub(crate) issuance: IssuanceSection,
    /// `[bundler]`: the ERC-4337 bundler at `POST /rpc` (needs `[chain]`); off when absent.
    #[serde(default)]
    pub(crate) bundler: Option<custody_bundler::BundlerConfig>,
    /// `[audit]`: checkpoints of the audit trail on-chain.
    #[serde(default)]
    pub(crate) audit: AuditSection,
    /// `[paymaster]`: ERC-7677 sponsorship at `POST /paymaster` (needs `[chain]` and the key `key`);
    /// off when absent.
    #[serde(default)]
    pub(crate) paymaster: Option<custody_paymaster::PaymasterConfig>,
}

/// `[audit]`: the trail's head anchored in PLOG from the `anchor` key (needs `[chain]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AuditSection {
    /// Seconds between checkpoints (a new one only when the trail grew); 0 turns them off.
    pub(crate) checkpoint_secs: u64,
}

impl Default for AuditSection {
    fn default() -> Self {
        Self { checkpoint_secs: 300 }
    }
}

/// `[issuance]`: the activity mirror's policy rules and worker.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct IssuanceSection {
    /// `[issuance.policy]`: amounts (whole PTKN), thresholds and badge ids.
    pub(crate) policy: custody_issuance::PolicyConfig,
    /// Run the mirror worker and the indexer (they need `[chain]` rpc_url and deployment_file and the
    /// infrastructure keys `issuer` and `anchor`).
    pub(crate) worker: bool,
    /// Most activities per merkle batch.
    pub(crate) batch_size: usize,
    /// Milliseconds between merkle batches (a full batch is followed at once by the next).
    pub(crate) batch_interval_ms: u64,
    /// Most recipients per batchMint transaction.
    pub(crate) max_mints_per_tx: usize,
    /// `[issuance.rabbitmq]`: also take activities from this queue; off when absent.
    pub(crate) rabbitmq: Option<custody_issuance::RabbitMqConfig>,
    /// The most whole PTKN one `/mintToken` or `/v1/tokens/burn` request may move.
    pub(crate) max_amount: u64,
}

impl Default for IssuanceSection {
    fn default() -> Self {
        let worker = custody_issuance::WorkerConfig::default();
        Self {
            policy: custody_issuance::PolicyConfig::default(),
            worker: true,
            batch_size: worker.batch_size,
            batch_interval_ms: u64::try_from(worker.interval.as_millis()).unwrap_or(500),
            max_mints_per_tx: worker.max_mints_per_tx,
            rabbitmq: None,
            max_amount: 1_000_000_000,
        }
    }
}

/// The HTTP listener and its limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ServerConfig {
    pub(crate) listen: std::net::SocketAddr,
    pub(crate) body_limit_bytes: usize,
    pub(crate) request_timeout_secs: u64,
    /// Seconds a graceful shutdown waits for requests in flight.
    pub(crate) drain_secs: u64,
    /// Seconds a client has to send a request's headers (then its connection is closed).
    pub(crate) header_read_timeout_secs: u64,
    /// Most connections open at once; more wait in the listen backlog.
    pub(crate) max_connections: usize,
    /// HTTPS, and optionally mutual TLS; plain HTTP when absent.
    pub(crate) tls: Option<TlsConfig>,
    pub(crate) rate_limit: RateLimitConfig,
}

/// `[server.tls]`: the server's certificate and, for mutual TLS, the client CA.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub(crate) cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub(crate) key_file: PathBuf,
    /// PEM CA certificates that issue client certificates; enables mutual TLS.
    pub(crate) client_ca_file: Option<PathBuf>,
    /// With a client CA: refuse clients without a certificate (`required`, the
    /// default) or let them through to JWT auth (`optional`).
    #[serde(default)]
    pub(crate) client_cert: ClientCert,
}

/// Whether a client certificate is mandatory.
#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ClientCert {
    #[default]
    Required,
    Optional,
}

/// `[server.rate_limit]`: a token bucket per client IP address.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RateLimitConfig {
    /// Sustained requests per second per client; 0 turns the limit off.
    pub(crate) per_second: u32,
    /// Requests a client may send at once above the sustained rate.
    pub(crate) burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self { per_second: 1000, burst: 2000 }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 64 * 1024,
            request_timeout_secs: 10,
            drain_secs: 10,
            header_read_timeout_secs: 10,
            max_connections: 1024,
            tls: None,
            rate_limit: RateLimitConfig::default(),
        }
    }
}

/// JWT verification.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthConfig {
    pub(crate) issuer: String,
    pub(crate) audience: String,
    #[serde(default)]
    pub(crate) keys: Vec<JwtKeyConfig>,
    /// The longest token lifetime accepted (`exp` − `iat`), in seconds; 24 h by default.
    #[serde(default = "default_max_token_lifetime")]
    pub(crate) max_token_lifetime_secs: u64,
}

fn default_max_token_lifetime() -> u64 {
    86_400
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            audience: String::new(),
            keys: Vec::new(),
            max_token_lifetime_secs: default_max_token_lifetime(),
        }
    }
}

/// One verification key with its algorithm allow-list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JwtKeyConfig {
    pub(crate) kid: Option<String>,
    /// Allowed algorithms: ES256, RS256, EdDSA (one family per key).
    pub(crate) algorithms: Vec<String>,
    /// The public key as PEM text, or …
    pub(crate) public_key_pem: Option<String>,
    /// … a file holding it.
    pub(crate) public_key_file: Option<PathBuf>,
}

/// The chain the service reads and writes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChainConfig {
    pub(crate) rpc_url: Option<String>,
    /// The deployment record (JSON: chainId, block, contracts) wallets are computed against.
    pub(crate) deployment_file: Option<PathBuf>,
}

/// Where the service keeps its state.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DatabaseConfig {
    /// `sqlite://path` (the embedded default) or `postgres://…`.
    pub(crate) url: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: "sqlite://custody.db".into() }
    }
}

/// Which backend holds the keys.
#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum BackendChoice {
    #[default]
    Pkcs11,
    Kms,
}

/// The signing core.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignerConfig {
    #[serde(default)]
    pub(crate) backend: BackendChoice,
    #[serde(default)]
    pub(crate) pkcs11: Pkcs11Section,
    #[serde(default)]
    pub(crate) kms: KmsSection,
}

/// A PKCS#11 token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Pkcs11Section {
    pub(crate) module: PathBuf,
    pub(crate) token: String,
    /// The user PIN itself (prefer `pin_env`).
    pub(crate) pin: Option<SecretString>,
    /// The name of an environment variable that holds the PIN.
    pub(crate) pin_env: Option<String>,
    pub(crate) max_sessions: usize,
    pub(crate) unwrapped_cache: usize,
}

impl Default for Pkcs11Section {
    fn default() -> Self {
        Self {
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            token: "custody".into(),
            pin: None,
            pin_env: None,
            max_sessions: 8,
            unwrapped_cache: 10_000,
        }
    }
}

/// AWS KMS.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KmsSection {
    pub(crate) region: Option<String>,
    pub(crate) endpoint_url: Option<String>,
    pub(crate) max_attempts: u32,
}

impl Default for KmsSection {
    fn default() -> Self {
        Self { region: None, endpoint_url: None, max_attempts: 5 }
    }
}

impl Config {
    /// Loads `path` (when given) over the defaults, then applies the environment.
    pub(crate) fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => Self::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        config.validate()?;
        Ok(config)
    }

    fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        if let Some(url) = var("CUSTODY_DATABASE_URL") {
            self.database.url = url;
        }
        if let Some(backend) = var("CUSTODY_SIGNER_BACKEND") {
            self.signer.backend = match backend.as_str() {
                "pkcs11" => BackendChoice::Pkcs11,
                "kms" => BackendChoice::Kms,
                other => bail!("CUSTODY_SIGNER_BACKEND must be pkcs11 or kms, not {other:?}"),
            };
        }
        let p = &mut self.signer.pkcs11;
        if let Some(module) = var("CUSTODY_PKCS11_MODULE") {
            p.module = module.into();
        }
        if let Some(token) = var("CUSTODY_PKCS11_TOKEN") {
            p.token = token;
        }
        if let Some(pin) = var("CUSTODY_PKCS11_PIN") {
            p.pin = Some(pin.into());
        }
        let k = &mut self.signer.kms;
        if let Some(region) = var("CUSTODY_KMS_REGION") {
            k.region = Some(region);
        }
        if let Some(url) = var("CUSTODY_KMS_ENDPOINT_URL") {
            k.endpoint_url = Some(url);
        }
        if let Some(listen) = var("CUSTODY_LISTEN") {
            self.server.listen =
                listen.parse().with_context(|| format!("CUSTODY_LISTEN={listen:?} is not host:port"))?;
        }
        if let Some(rate) = var("CUSTODY_RATE_LIMIT_PER_SECOND") {
            self.server.rate_limit.per_second =
                rate.parse().with_context(|| format!("CUSTODY_RATE_LIMIT_PER_SECOND={rate:?} is not a number"))?;
        }
        if let Some(url) = var("CUSTODY_CHAIN_RPC_URL") {
            self.chain.rpc_url = Some(url);
        }
        if let Some(path) = var("CUSTODY_DEPLOYMENT_FILE") {
            self.chain.deployment_file = Some(path.into());
        }
        Ok(())
    }

    fn validate(&self) -> anyhow::Result<()> {
        let url = &self.database.url;
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            bail!("database.url must start with sqlite: or postgres://");
        }
        if self.signer.backend == BackendChoice::Pkcs11 {
            let p = &self.signer.pkcs11;
            if p.pin.is_none() && p.pin_env.is_none() {
                bail!("signer.pkcs11: set pin_env (or CUSTODY_PKCS11_PIN) to the token's user PIN");
            }
            if p.max_sessions == 0 || p.unwrapped_cache == 0 {
                bail!("signer.pkcs11: max_sessions and unwrapped_cache must be at least 1");
            }
        }
        let r = &self.server.rate_limit;
        if r.per_second > 0 && r.burst == 0 {
            bail!("server.rate_limit: burst must be at least 1 when per_second is set");
        }
        if let Some(tls) = &self.server.tls {
            // Read the files now, so a typo fails at start-up, not at the first client.
            crate::tls::server_config(tls).context("server.tls")?;
        }
        Ok(())
    }

    /// The PKCS#11 user PIN, from `pin` or the variable `pin_env` names.
    pub(crate) fn pkcs11_pin(&self) -> anyhow::Result<SecretString> {
        let p = &self.signer.pkcs11;
        if let Some(pin) = &p.pin {
            return Ok(pin.clone());
        }
        let name = p.pin_env.as_deref().context("no PKCS#11 PIN configured")?;
        std::env::var(name)
            .map(SecretString::from)
            .with_context(|| format!("environment variable {name} (the PIN) is not set"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment() {
        let mut config: Config = toml::from_str(
            r#"
            [database]
            url = "postgres://db/custody"
            [signer.pkcs11]
            module = "/opt/hsm.so"
            token = "prod"
            pin_env = "HSM_PIN"
            max_sessions = 4
            unwrapped_cache = 100
            "#,
        )
        .expect("parses");
        assert_eq!(config.signer.pkcs11.token, "prod");
        config.apply_env(|name| (name == "CUSTODY_PKCS11_TOKEN").then(|| "from-env".to_owned())).expect("env applies");
        assert_eq!(config.signer.pkcs11.token, "from-env");
        assert_eq!(config.database.url, "postgres://db/custody");
        config.validate().expect("valid");
    }

    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../../README.md");
        let start = readme.find("```toml\n").expect("a TOML example in README.md") + "```toml\n".len();
        let end = start + readme[start..].find("```").expect("closed");
        let config: Config = toml::from_str(&readme[start..end]).expect("the README's configuration parses");
        assert_eq!(config.server.rate_limit.burst, 2000);
        assert!(config.bundler.is_some_and(|b| !b.debug_methods));
        assert_eq!(config.issuance.policy.milestones.get("first-wallet"), Some(&1000));
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        assert!(toml::from_str::<Config>("[database]\nurl = \"sqlite://x\"\nuser = \"x\"").is_err());
        let mut config = Config::default();
        assert!(config.validate().is_err(), "a PKCS#11 backend without a PIN must not start");
        config.signer.pkcs11.pin = Some("1234".to_owned().into());
        config.database.url = "mysql://x".into();
        assert!(config.validate().is_err());
        assert!(config.apply_env(|n| (n == "CUSTODY_SIGNER_BACKEND").then(|| "vault".into())).is_err());
    }
}
