//! A real `custody serve` process on a fresh SoftHSM token and database, with
//! token minting for the test keys.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use custody_db::test_utils::{Engine, TestDb};
use custody_signer::test_utils::SoftHsm;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

pub const ISSUER: &str = "https://app.peruri.test";
pub const AUDIENCE: &str = "peruri-custody";

pub fn key_path(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

pub struct Service {
    pub url: String,
    pub hsm: SoftHsm,
    pub db: TestDb,
    pub config: std::path::PathBuf,
    /// The running `custody serve`, once launched.
    child: Option<Child>,
    pub http: reqwest::Client,
    tls: bool,
}

impl Service {
    pub async fn start(engine: Engine) -> Self {
        Self::start_with(engine, "").await
    }

    /// Starts with `extra` TOML appended to the configuration (e.g. `[server.tls]`).
    pub async fn start_with(engine: Engine, extra: &str) -> Self {
        let mut service = Self::prepare(engine, extra).await;
        service.launch(&[]).await;
        service
    }

    /// Starts with `keys` (TOML `key = value` lines) added to the `[server]` table.
    pub async fn start_with_server(engine: Engine, keys: &str) -> Self {
        let mut service = Self::prepare(engine, "").await;
        let text = std::fs::read_to_string(&service.config).unwrap();
        std::fs::write(&service.config, text.replacen("drain_secs = 5\n", &format!("drain_secs = 5\n{keys}\n"), 1))
            .unwrap();
        service.launch(&[]).await;
        service
    }

    /// A fresh token, database, configuration (`extra` TOML appended) and deployment record
    /// (the deterministic addresses of a single-operator deployment); nothing runs until [`Self::launch`].
    pub async fn prepare(engine: Engine, extra: &str) -> Self {
        let hsm = SoftHsm::fresh("api").unwrap();
        let db = TestDb::new(engine).await;
        let config = hsm.dir().join("custody.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[server]
# Port 0: the service picks a free port and logs it (see `Self::wait_ready`); a port picked here
# could be taken by another test's service before this one binds it.
listen = "127.0.0.1:0"
body_limit_bytes = 16384
request_timeout_secs = 10
drain_secs = 5

[auth]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"

[[auth.keys]]
kid = "es"
algorithms = ["ES256"]
public_key_file = "{es}"

[[auth.keys]]
kid = "rs"
algorithms = ["RS256"]
public_key_file = "{rs}"

[[auth.keys]]
kid = "ed"
algorithms = ["EdDSA"]
public_key_file = "{ed}"

{extra}
"#,
                es = key_path("es256-public.pem"),
                rs = key_path("rs256-public.pem"),
                ed = key_path("ed25519-public.pem"),
            ),
        )
        .unwrap();
        // The deterministic addresses of a deployment, as a deployment record.
        let contracts =
            custody_contracts::DeployConfig::single_operator(alloy_primitives::Address::repeat_byte(1)).addresses();
        let deployment = custody_contracts::Deployment { chain_id: 1337, block: 0, contracts };
        std::fs::write(hsm.dir().join("deployment.json"), serde_json::to_string(&deployment).unwrap()).unwrap();
        let tls = extra.contains("[server.tls]");
        Self { url: String::new(), hsm, db, config, child: None, http: reqwest::Client::new(), tls }
    }

    /// The deployment record the service reads (write a real deployment's here before launching).
    pub fn deployment_file(&self) -> std::path::PathBuf {
        self.hsm.dir().join("deployment.json")
    }

    /// Starts `custody serve` with `env` added to its environment and waits until it answers. The log
    /// (`custody.log`) is appended to across launches.
    pub async fn launch(&mut self, env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "custody serve is already running");
        let log_path = self.hsm.dir().join("custody.log");
        let logged_before = std::fs::metadata(&log_path).map_or(0, |m| m.len());
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path);
        let child = self
            .command()
            .args(["--config"])
            .arg(&self.config)
            .arg("serve")
            .env("CUSTODY_LOG_JSON", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log.unwrap())
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready(&log_path, logged_before).await;
    }

    /// Kills the process with SIGKILL (no shutdown of any kind) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap(); // SIGKILL on Unix
            child.wait().unwrap();
        }
    }

    /// Kills the process (SIGKILL) if it runs, then launches it again with `env`.
    pub async fn restart(&mut self, env: &[(&str, &str)]) {
        self.kill();
        self.launch(env).await;
    }

    /// Waits for this launch's "custody API listening" line in the log (after `logged_before` bytes),
    /// takes the URL from its address, then (plain HTTP) waits for `/healthz`.
    async fn wait_ready(&mut self, log_path: &std::path::Path, logged_before: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut addr = None;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().expect("launched").try_wait().unwrap() {
                panic!("custody serve exited: {status}");
            }
            if addr.is_none() {
                addr = listening_addr(log_path, logged_before);
                if let Some(addr) = &addr {
                    self.url = format!("{}://{addr}", if self.tls { "https" } else { "http" });
                }
            }
            // With TLS, listening is enough (a handshake needs the test's own certificates).
            if addr.is_some() && (self.tls || self.http.get(format!("{}/healthz", self.url)).send().await.is_ok()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("custody serve did not answer within 30 s");
    }

    /// Runs `custody serve` with `env` added to its environment, where it must refuse to start; its
    /// standard error.
    pub fn refused(&self, env: &[(&str, &str)]) -> String {
        let child = self
            .command()
            .args(["--config"])
            .arg(&self.config)
            .arg("serve")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        refusal(child, &format!("custody serve ({env:?})"))
    }

    /// Runs a `custody` subcommand against the same token and database.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.command().args(args).output().unwrap()
    }

    /// The `custody` binary pointed at this token, database and deployment record.
    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_custody"));
        command
            .env("SOFTHSM2_CONF", self.hsm.conf_path())
            .env("CUSTODY_PKCS11_MODULE", self.hsm.module())
            .env("CUSTODY_PKCS11_TOKEN", self.hsm.label())
            .env("CUSTODY_PKCS11_PIN", self.hsm.user_pin().expose_secret())
            .env("CUSTODY_DATABASE_URL", &self.db.url)
            .env("CUSTODY_DEPLOYMENT_FILE", self.deployment_file());
        command
    }

    pub async fn post(&self, path: &str, token: &str, key: Option<&str>, body: &Value) -> (u16, Value) {
        self.send(self.http.post(format!("{}{path}", self.url)), token, key, body).await
    }

    pub async fn put(&self, path: &str, token: &str, key: Option<&str>, body: &Value) -> (u16, Value) {
        self.send(self.http.put(format!("{}{path}", self.url)), token, key, body).await
    }

    /// `req` with `token`, `key` as its Idempotency-Key and `body`; the status and JSON answer.
    async fn send(&self, req: reqwest::RequestBuilder, token: &str, key: Option<&str>, body: &Value) -> (u16, Value) {
        let mut req = req.bearer_auth(token).json(body);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(format!("{}{path}", self.url));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Sends SIGTERM, waits for a clean exit, and returns the service's log.
    pub fn stop(mut self) -> String {
        let pid = self.child.as_ref().expect("launched").id();
        Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.as_mut().expect("launched").try_wait().unwrap() {
                assert!(status.success(), "clean exit on SIGTERM: {status}\n{}", self.log());
                return self.log();
            }
            assert!(Instant::now() < deadline, "no exit within 20 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Service {
    /// The service's log so far (JSON lines on stderr).
    /// Waits up to `timeout` for the process to exit on its own; its status, or `None` if it still runs.
    pub fn exit_within(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.as_mut().expect("launched").try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.hsm.dir().join("custody.log")).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- custody serve log ---\n{}", self.log());
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Standard claims for `sub` with `roles`, valid for ten minutes.
pub fn claims(sub: &str, roles: &[&str]) -> Value {
    json!({"sub": sub, "roles": roles, "iss": ISSUER, "aud": AUDIENCE, "iat": now(), "nbf": now() - 5, "exp": now() + 600})
}

/// A token signed by test key `kid` ("es", "rs" or "ed").
pub fn token_with(kid: &str, claims: &Value) -> String {
    let (alg, key) = match kid {
        "es" => (Algorithm::ES256, EncodingKey::from_ec_pem(&std::fs::read(key_path("es256-private.pem")).unwrap())),
        "rs" => (Algorithm::RS256, EncodingKey::from_rsa_pem(&std::fs::read(key_path("rs256-private.pem")).unwrap())),
        _ => (Algorithm::EdDSA, EncodingKey::from_ed_pem(&std::fs::read(key_path("ed25519-private.pem")).unwrap())),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    encode(&header, claims, &key.unwrap()).unwrap()
}

/// An ES256 token for `sub` with `roles`.
pub fn token(sub: &str, roles: &[&str]) -> String {
    token_with("es", &claims(sub, roles))
}

/// The address in the first "custody API listening" line of the JSON log after `offset` bytes.
fn listening_addr(log_path: &std::path::Path, offset: u64) -> Option<String> {
    let log = std::fs::read(log_path).ok()?;
    let fresh = String::from_utf8_lossy(log.get(usize::try_from(offset).ok()?..)?).into_owned();
    fresh.lines().filter_map(|line| serde_json::from_str::<Value>(line).ok()).find_map(|entry| {
        let fields = entry.get("fields")?;
        let listening = fields.get("message")?.as_str()?.starts_with("custody API listening");
        listening.then(|| fields.get("addr")?.as_str().map(str::to_owned)).flatten()
    })
}

/// Waits for `child` (`what`, stderr piped), which must refuse to start: exit with an error within 120 s.
/// Its standard error.
pub fn refusal(mut child: Child, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{what} did not refuse to start within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().expect("piped"), &mut err).unwrap();
    assert!(!status.success(), "{what} must refuse to start: {status}\n{err}");
    err
}
