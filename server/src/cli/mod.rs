//! Operator commands.

pub(crate) mod audit;
pub(crate) mod backup;
pub(crate) mod enroll;
pub(crate) mod keys;
pub(crate) mod paymaster;

use custody_signer::{Backend, Hsm, KeyStore, Keyring, Kms, KmsConfig, Pkcs11Config};

use crate::config::{BackendChoice, Config};

/// Prints an error chain to stderr and gives the failure exit code.
#[expect(clippy::print_stderr, reason = "a command-line tool reports its failure")]
pub(crate) fn fail(e: &anyhow::Error) -> std::process::ExitCode {
    eprintln!("error: {e:#}");
    std::process::ExitCode::FAILURE
}

/// The audit actor of a command-line operator: `cli:<login name>`.
pub(crate) fn operator() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

/// Appends an operator's action to the audit trail; an error means it was not recorded.
pub(crate) async fn audit(
    audit: &crate::audit::Audit,
    action: &str,
    target: &str,
    outcome: &str,
    details: &serde_json::Value,
) -> anyhow::Result<()> {
    let actor = operator();
    let details = details.to_string();
    let entry = crate::audit::Entry { actor: &actor, action, target, request_id: "cli", outcome, details: &details };
    audit.append(&entry).await.map(drop).map_err(|e| anyhow::anyhow!("audit trail unavailable, nothing done: {e}"))
}

/// Connects to the configured backend over an existing (migrated) key store.
pub(crate) async fn keyring_on(config: &Config, store: KeyStore) -> anyhow::Result<Keyring> {
    let backend = match config.signer.backend {
        BackendChoice::Pkcs11 => {
            let p = &config.signer.pkcs11;
            let mut hsm = Pkcs11Config::new(&p.module, &p.token, config.pkcs11_pin()?);
            hsm.max_sessions = p.max_sessions;
            hsm.unwrapped_cache = p.unwrapped_cache;
            Backend::Pkcs11(Hsm::connect(hsm).await?)
        }
        BackendChoice::Kms => {
            let k = &config.signer.kms;
            let kms = KmsConfig {
                region: k.region.clone(),
                endpoint_url: k.endpoint_url.clone(),
                credentials: None,
                max_attempts: k.max_attempts,
            };
            Backend::Kms(Kms::connect(kms).await?)
        }
    };
    Ok(Keyring::open(backend, store).await?)
}
