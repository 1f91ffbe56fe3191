//! Real parts for tests: a fresh SoftHSM2 token, a fresh SQLite or PostgreSQL
//! database, and a local KMS (the moto server). Each is removed on drop.
//!
//! A missing part is a failure with a message that says what to install, never a
//! silent skip.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub use custody_hsm_sim::SoftHsm;
use rand::RngCore;
use secrecy::SecretString;
use sqlx::AnyPool;

use crate::{Backend, Hsm, KeyStore, Keyring, Kms, KmsConfig, Pkcs11Config, connect_pool};

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

/// Which database engine a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// An SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on the local PostgreSQL server.
    Postgres,
}

/// A fresh, empty database, removed on drop.
#[derive(Debug)]
pub struct TestDb {
    /// Its URL.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_drop: Option<(String, String)>,
}

/// The PostgreSQL server tests use: `CUSTODY_TEST_POSTGRES`, else the local one.
pub fn postgres_admin_url() -> String {
    std::env::var("CUSTODY_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl TestDb {
    /// A fresh database on `engine`. Panics with a clear message when PostgreSQL is unreachable.
    pub async fn new(engine: Engine) -> Self {
        match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}", dir.path().join("custody.db").display());
                Self { url, _dir: Some(dir), pg_drop: None }
            }
            Engine::Postgres => {
                let admin = postgres_admin_url();
                let name = format!("custody_test_{}", random_hex(8));
                let pool = connect_pool(&admin)
                    .await
                    .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is required for this test: {e}"));
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&pool).await.expect("create database");
                pool.close().await;
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
                Self { url: format!("{base}/{name}"), _dir: None, pg_drop: Some((admin, name)) }
            }
        }
    }

    /// A pool on the database.
    pub async fn pool(&self) -> AnyPool {
        connect_pool(&self.url).await.expect("connect to test database")
    }

    /// A migrated key store on the database.
    pub async fn key_store(&self) -> KeyStore {
        KeyStore::connect(&self.url).await.expect("key store")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg_drop.take() else { return };
        // Drop runs inside or outside a runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                if let Ok(pool) = connect_pool(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&pool).await;
                }
            });
        })
        .join();
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
        let keyring = Keyring::open(Backend::Pkcs11(hsm.hsm.clone()), db.key_store().await).await.expect("keyring");
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

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
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
