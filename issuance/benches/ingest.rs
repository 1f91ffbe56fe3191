//! Ingest rate and latency of `POST /activity/track` on a real `custody serve` (fresh SoftHSM token and
//! database, no chain), at a fixed concurrency, against a raw database insert baseline measured in the
//! same run on the same database.
//!
//! ```text
//! cargo build --release -p custody-server
//! CUSTODY_BIN=$CARGO_TARGET_DIR/release/custody cargo bench -p custody-issuance --bench ingest -- [sqlite|postgres] [N]
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    unreachable_pub,
    missing_debug_implementations
)]

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use custody_db::test_utils::{Engine, TestDb};
use custody_signer::test_utils::SoftHsm;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::ExposeSecret;
use serde_json::json;

const CONCURRENCY: usize = 32;
const ISSUER: &str = "https://app.peruri.test";
const AUDIENCE: &str = "peruri-custody";

fn key_path(name: &str) -> String {
    format!("{}/../server/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn app_token() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = json!({"sub": "bench", "roles": ["app"], "iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now - 5, "exp": now + 3600});
    let key = EncodingKey::from_ec_pem(&std::fs::read(key_path("es256-private.pem")).unwrap()).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("es".to_owned());
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// `custody serve` on `hsm` and `db`; killed on drop.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn serve(hsm: &SoftHsm, db: &TestDb) -> (Serve, String) {
    let bin = std::env::var("CUSTODY_BIN").expect("CUSTODY_BIN: the path of a (release) `custody` binary");
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = hsm.dir().join("custody.toml");
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n# One client sends everything: no per-client limit.\n[server.rate_limit]\nper_second = 0\n\n[auth]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\n\
         [[auth.keys]]\nkid = \"es\"\nalgorithms = [\"ES256\"]\npublic_key_file = \"{}\"\n",
        key_path("es256-public.pem")
    );
    std::fs::write(&config, toml).unwrap();
    let child = Command::new(bin)
        .args(["--config"])
        .arg(&config)
        .arg("serve")
        .env("SOFTHSM2_CONF", hsm.conf_path())
        .env("CUSTODY_PKCS11_MODULE", hsm.module())
        .env("CUSTODY_PKCS11_TOKEN", hsm.label())
        .env("CUSTODY_PKCS11_PIN", hsm.user_pin().expose_secret())
        .env("CUSTODY_DATABASE_URL", &db.url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let serve = Serve(child);
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..600 {
        if http.get(format!("{url}/healthz")).send().await.is_ok() {
            return (serve, url);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("custody serve did not answer within 30 s");
}

/// Runs `n` operations over [`CONCURRENCY`] tasks; `(ops per second, p50 ms, p99 ms)`.
async fn drive<F, Fut>(n: usize, op: F) -> (f64, f64, f64)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for i in (t..n).step_by(CONCURRENCY) {
                    let began = Instant::now();
                    op(i).await;
                    latencies.push(began.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(n);
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64() * 1e3;
    (n as f64 / elapsed, at(0.50), at(0.99))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let engine = if args.iter().any(|a| a == "postgres") { Engine::Postgres } else { Engine::Sqlite };
    let n: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(5_000);
    let hsm = SoftHsm::fresh("bench").unwrap();
    let db = TestDb::new(engine).await;
    let (_serve, url) = serve(&hsm, &db).await;

    // Baseline: one INSERT per activity-sized row into a scratch table of the same database.
    let pool = db.pool().await;
    sqlx::query("CREATE TABLE bench_raw (id TEXT PRIMARY KEY, body TEXT NOT NULL)").execute(&pool).await.unwrap();
    let body = json!({"user_id": "user", "type": "attendance", "payload": {"site": "HQ"}, "occurred_at": "2026-01-05T08:00:00Z"});
    let text = body.to_string();
    let raw = drive(n, move |i| {
        let (pool, text) = (pool.clone(), text.clone());
        async move {
            sqlx::query("INSERT INTO bench_raw (id, body) VALUES ($1, $2)")
                .bind(format!("raw-{i}"))
                .bind(text)
                .execute(&pool)
                .await
                .unwrap();
        }
    })
    .await;

    let http = reqwest::Client::new();
    let token = app_token();
    let track = format!("{url}/activity/track");
    let api = drive(n, move |i| {
        let req = http
            .post(&track)
            .bearer_auth(&token)
            .header("Idempotency-Key", format!("bench-{i}"))
            .json(&json!({"user_id": format!("user-{}", i % 1000), "type": "attendance", "payload": {"site": "HQ"}, "occurred_at": "2026-01-05T08:00:00Z"}));
        async move {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 202);
        }
    })
    .await;

    let engine = if matches!(engine, Engine::Postgres) { "postgres" } else { "sqlite" };
    println!("ingest {engine}: n={n} concurrency={CONCURRENCY}");
    println!("  raw INSERT           {:>8.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms", raw.0, raw.1, raw.2);
    println!("  POST /activity/track {:>8.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms", api.0, api.1, api.2);
}
