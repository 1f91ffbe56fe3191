//! Real parts for tests: a fresh SoftHSM2 token, a keyring on it over a fresh database
//! ([`custody_db::test_utils::TestDb`]), and a local KMS (the moto server). Each is removed on drop.
//!
//! A missing part is a failure with a message that says what to install, never a
//! silent skip.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use custody_db::test_utils::{Engine, TestDb};
pub use custody_hsm_sim::SoftHsm;
use secrecy::SecretString;

use crate::{Backend, Hsm, KeyStore, Keyring, Kms, KmsConfig, Pkcs11Config};

/// A fresh SoftHSM2 token, activated for this process, and a logged-in [`Hsm`] on it.
#[derive(Debug)]
pub struct TestHsm {
    /// The token (its directory is removed on drop).
    pub softhsm: SoftHsm,
    /// The connection.
    pub hsm: Hsm,
}

impl TestHsm {
    /// Provisions a token and connects. Panics with the install hint when SoftHSM2 is missing.
    pub async fn new() -> Self {
        let softhsm = SoftHsm::fresh("custody-test").unwrap_or_else(|e| panic!("SoftHSM2 token: {e}"));
        softhsm.activate();
        let hsm = Hsm::connect(Self::config_for(&softhsm)).await.unwrap_or_else(|e| panic!("connect to SoftHSM2: {e}"));
        Self { softhsm, hsm }
    }

    /// The PKCS#11 configuration of a token.
    pub fn config_for(softhsm: &SoftHsm) -> Pkcs11Config {
        Pkcs11Config::new(softhsm.module(), softhsm.label(), softhsm.user_pin().clone())
    }
}

/// A keyring on a fresh token and a fresh database.
#[derive(Debug)]
pub struct TestKeyring {
    /// The keyring.
    pub keyring: Keyring,
    /// The token.
    pub hsm: TestHsm,
    /// The database.
    pub db: TestDb,
}

impl TestKeyring {
    /// A PKCS#11 keyring on `engine`.
    pub async fn new(engine: Engine) -> Self {
        let hsm = TestHsm::new().await;
        let db = TestDb::new(engine).await;
        let keyring =
            Keyring::open(Backend::Pkcs11(hsm.hsm.clone()), KeyStore::connect(&db.url).await.expect("key store"))
                .await
                .expect("keyring");
        Self { keyring, hsm, db }
    }
}

/// A local KMS: the moto server on a free loopback port, killed on drop.
#[derive(Debug)]
pub struct MotoKms {
    /// Its endpoint URL.
    pub url: String,
    child: Child,
    _script: tempfile::NamedTempFile,
    log: tempfile::NamedTempFile,
}

const MOTO_LAUNCHER: &str = include_str!("moto_kms.py");

impl MotoKms {
    /// Starts moto with `MessageType=DIGEST` implemented as AWS KMS does.
    pub fn start() -> Self {
        Self::spawn(true)
    }

    /// Starts stock moto, which signs `SHA-256(digest)` instead of the digest:
    /// a backend that returns the wrong signature.
    pub fn start_stock() -> Self {
        Self::spawn(false)
    }

    /// Starts moto on port 0, so the kernel picks a free port as it binds, and learns the port from the
    /// server's own "Running on" line (a port chosen beforehand could be taken by another test's server).
    fn spawn(digest: bool) -> Self {
        let script = tempfile::Builder::new().suffix(".py").tempfile().expect("temp file");
        std::fs::write(script.path(), MOTO_LAUNCHER).expect("write moto launcher");
        let log = tempfile::NamedTempFile::new().expect("temp file");
        let child = Command::new("python3")
            .arg(script.path())
            .args(["-H", "127.0.0.1", "-p", "0"])
            .env("PERURI_MOTO_STOCK", if digest { "0" } else { "1" })
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("moto log"))
            .spawn()
            .unwrap_or_else(|e| panic!("python3 is required to run the moto KMS server: {e}"));
        let mut moto = Self { url: String::new(), child, _script: script, log };
        moto.wait_ready();
        moto
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the moto server exited ({status}); install it with `pip install 'moto[server]'` (scripts/bootstrap.sh does)"
                );
            }
            let output = std::fs::read_to_string(self.log.path()).unwrap_or_default();
            if let Some(url) = running_on(&output) {
                self.url = url;
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the moto server did not start within 30 s");
    }

    /// A client configuration for this server.
    pub fn config(&self) -> KmsConfig {
        KmsConfig {
            region: Some("us-east-1".into()),
            endpoint_url: Some(self.url.clone()),
            credentials: Some(("testing".into(), SecretString::from("testing"))),
            max_attempts: 3,
        }
    }

    /// A connected client.
    pub async fn client(&self) -> Kms {
        Kms::connect(self.config()).await.expect("KMS client")
    }
}

impl Drop for MotoKms {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The URL from werkzeug's " * Running on http://127.0.0.1:<port>" line.
fn running_on(output: &str) -> Option<String> {
    let line = output.lines().find_map(|l| l.trim().strip_prefix("* Running on "))?;
    let port: u16 = line.trim().strip_prefix("http://127.0.0.1:")?.trim_end_matches('/').parse().ok()?;
    (port != 0).then(|| format!("http://127.0.0.1:{port}"))
}

#[cfg(test)]
mod tests {
    use super::running_on;

    #[test]
    fn reads_the_port_werkzeug_bound() {
        let output =
            "WARNING: This is a development server.\n * Running on http://127.0.0.1:44385\nPress CTRL+C to quit\n";
        assert_eq!(running_on(output).as_deref(), Some("http://127.0.0.1:44385"));
        assert_eq!(running_on(" * Running on http://127.0.0.1:0\n"), None);
        assert_eq!(running_on("starting\n"), None);
    }
}
