//! Operator commands.

pub(crate) mod audit;
pub(crate) mod enroll;
pub(crate) mod keys;

use custody_signer::{Backend, Hsm, KeyStore, Keyring, Kms, KmsConfig, Pkcs11Config};

use crate::config::{BackendChoice, Config};

/// Prints an error chain to stderr and gives the failure exit code.
#[expect(clippy::print_stderr, reason = "a command-line tool reports its failure")]
pub(crate) fn fail(e: &anyhow::Error) -> std::process::ExitCode {
    eprintln!("error: {e:#}");
    std::process::ExitCode::FAILURE
}

/// Connects to the configured backend and key store.
pub(crate) async fn keyring(config: &Config) -> anyhow::Result<Keyring> {
    keyring_on(config, KeyStore::connect(&config.database.url).await?).await
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
