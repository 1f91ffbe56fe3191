//! Load generator: N UserOperations from M accounts through `eth_sendUserOperation` on a chain with
//! 2 s blocks; prints acceptance throughput and send → receipt latency percentiles, in seconds and
//! in blocks (the baseline measured in the same run is the chain's own block interval: no receipt
//! can come sooner than the next block); also each validation's time under that load, and one
//! operation's validation with the rules against bare revm (no inspector) after it. `--interval-ms 0`
//! is the strict one-bundle-per-block trigger.
//!
//! ```text
//! cargo bench -p custody-bundler --bench send [-- --ops 200 --accounts 200 --rate 100 --interval-ms 500]
//! ```
//!
//! Validation is the revm simulator with Peruri's factory and paymaster trusted, as in
//! `custody serve`. Owner keys are local (this measures the bundler); the bundler key is in SoftHSM2.

#![allow(clippy::unwrap_used, clippy::print_stdout, unreachable_pub, missing_debug_implementations)]

#[path = "../tests/it/bundler/setup.rs"]
#[allow(dead_code)]
mod setup;

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use custody_bundler::validation::Validate;
use custody_bundler::{Bundler, BundlingMode, EstimateGas, GasEstimate};
use custody_contracts::test_utils::LocalChainConfig;
use custody_contracts::userop::signing_digest;
use custody_contracts::{EntryPointVersion, UserOperation, account};
use custody_db::test_utils::Engine;

const VERSION: EntryPointVersion = EntryPointVersion::V08;
const BLOCK_TIME: Duration = Duration::from_secs(2);

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// An operation of `owner`'s account (deploying it if `deploy`), with the gas limits of `limits` (as a
/// client that asked `eth_estimateUserOperationGas` sets them) or generous defaults.
fn op_for(
    env: &setup::Env,
    owner: &PrivateKeySigner,
    key: u64,
    deploy: bool,
    limits: Option<&GasEstimate>,
) -> UserOperation {
    let sender = env.account(VERSION, owner.address());
    let mut op = UserOperation {
        sender,
        nonce: U256::from(key) << 64,
        factory: deploy.then(|| env.deployment.contracts.account_factory(VERSION)),
        factory_data: deploy.then(|| account::factory_data(owner.address(), U256::ZERO)),
        call_data: account::execute(Address::repeat_byte(0x11), U256::ZERO, Bytes::new()),
        call_gas_limit: U256::from(100_000),
        verification_gas_limit: U256::from(400_000),
        pre_verification_gas: U256::from(50_000),
        ..Default::default()
    };
    if let Some(limits) = limits {
        op.call_gas_limit = limits.call_gas_limit;
        op.verification_gas_limit = limits.verification_gas_limit;
        op.pre_verification_gas = limits.pre_verification_gas;
    }
    let hash = op.hash(VERSION, VERSION.address(), env.chain.chain_id()).unwrap();
    op.signature = Bytes::from(owner.sign_hash_sync(&signing_digest(VERSION, hash)).unwrap().as_bytes().to_vec());
    op
}

/// Sends `ops` at most `rate` per second while a poller waits for their receipts; returns the time
/// sending took, the sorted admission (eth_sendUserOperation) times and the sorted send → receipt times.
async fn run_load(
    bundler: &Arc<Bundler>,
    ops: Vec<UserOperation>,
    rate: usize,
) -> (Duration, Vec<Duration>, Vec<Duration>) {
    let (admitted, to_poll) = tokio::sync::mpsc::unbounded_channel();
    let poller = tokio::spawn(latencies(bundler.clone(), to_poll));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, op) in ops.into_iter().enumerate() {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let (bundler, admitted) = (bundler.clone(), admitted.clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let hash = bundler.send_user_operation(op, VERSION.address()).await.unwrap();
            let took = sent.elapsed();
            let _ = admitted.send((hash, sent));
            took
        }));
    }
    drop(admitted);
    let mut admission = Vec::new();
    for t in tasks {
        admission.push(t.await.unwrap());
    }
    let took = start.elapsed();
    admission.sort();
    let mut lat = poller.await.unwrap();
    lat.sort();
    (took, admission, lat)
}

/// Polls the receipts of admitted operations every 50 ms, 16 at a time (a sequential sweep of
/// hundreds of `eth_getUserOperationReceipt` would itself add latency; all at once would be a load of
/// its own), from their admission until the last one is mined; returns the latencies.
async fn latencies(
    bundler: Arc<Bundler>,
    mut admitted: tokio::sync::mpsc::UnboundedReceiver<(B256, Instant)>,
) -> Vec<Duration> {
    let mut out = Vec::new();
    let mut pending = Vec::new();
    let mut sending = true;
    let mut deadline = Instant::now() + Duration::from_secs(300);
    let permits = Arc::new(tokio::sync::Semaphore::new(16));
    while (sending || !pending.is_empty()) && Instant::now() < deadline {
        while sending {
            match admitted.try_recv() {
                Ok(op) => pending.push(op),
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                    sending = false;
                    deadline = Instant::now() + Duration::from_secs(300);
                }
            }
        }
        let mut polls = tokio::task::JoinSet::new();
        for (hash, sent) in pending {
            let bundler = bundler.clone();
            let permits = permits.clone();
            polls.spawn(async move {
                let _permit = permits.acquire_owned().await.unwrap();
                let receipt = bundler.user_operation_receipt(hash).await.unwrap();
                (hash, sent, receipt.map(|r| (r.success, sent.elapsed())))
            });
        }
        let mut still = Vec::new();
        while let Some(polled) = polls.join_next().await {
            match polled.unwrap() {
                (hash, _, Some((success, latency))) => {
                    assert!(success, "operation {hash} reverted");
                    out.push(latency);
                }
                (hash, sent, None) => still.push((hash, sent)),
            }
        }
        pending = still;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(pending.is_empty(), "{} operations without a receipt after 300 s", pending.len());
    out
}

/// The validator with each validation's time recorded (while `recording`).
struct Timed {
    inner: Arc<dyn Validate>,
    recording: std::sync::atomic::AtomicBool,
    times: std::sync::Mutex<Vec<Duration>>,
}

#[async_trait::async_trait]
impl Validate for Timed {
    async fn validate(
        &self,
        op: &custody_contracts::PackedUserOperation,
        entry_point: EntryPointVersion,
    ) -> Result<custody_bundler::validation::ValidatedOp, custody_bundler::validation::ValidationError> {
        let started = Instant::now();
        let result = self.inner.validate(op, entry_point).await;
        if self.recording.load(std::sync::atomic::Ordering::Relaxed) {
            self.times.lock().unwrap().push(started.elapsed());
        }
        result
    }

    async fn recheck(
        &self,
        ops: &[&custody_bundler::validation::ValidatedOp],
    ) -> Result<Vec<Option<custody_bundler::validation::ValidationError>>, custody_bundler::validation::ValidationError>
    {
        self.inner.recheck(ops).await
    }
}

/// Mean time of `runs` sequential runs of `f`.
async fn mean<F, Fut, T, E>(runs: u32, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Debug,
{
    let started = Instant::now();
    for _ in 0..runs {
        f().await.unwrap();
    }
    started.elapsed() / runs
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    // `RUST_LOG=custody_bundler=info` shows the builder's bundles.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    }
    let (n, m, rate) = (arg("--ops", 200), arg("--accounts", 200), arg("--rate", 100));
    let env =
        setup::env_with(Engine::Sqlite, LocalChainConfig { block_time: Some(BLOCK_TIME), ..Default::default() }).await;
    let mut config = env.config(BundlingMode::Auto);
    config.min_bundle_interval_ms = arg("--interval-ms", config.min_bundle_interval_ms as usize) as u64;
    // Peruri's factory and paymaster are trusted, as `custody serve` does (server/src/bundler.rs).
    let contracts = &env.deployment.contracts;
    config.trusted_entities.extend([contracts.account_factory(VERSION), contracts.peruri_paymaster_v08]);
    let simulator = Arc::new(env.simulator());
    let timed =
        Arc::new(Timed { inner: simulator.clone(), recording: false.into(), times: std::sync::Mutex::default() });
    let validator: Arc<dyn Validate> = timed.clone();
    let estimator: Arc<dyn EstimateGas> = simulator.clone();
    let probe = estimator.clone();
    let pool = env.keys.db.pool().await;
    let bundler =
        Bundler::new(config, pool, vec![env.bundler_key.clone()], env.provider.clone(), validator, Some(estimator))
            .await
            .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(bundler.clone().run(async move {
        let _ = stopped.await;
    }));

    let owners: Vec<PrivateKeySigner> = (0..m).map(|_| PrivateKeySigner::random()).collect();
    // Warm-up (not measured): deploy every account with its first operation, 100 at a time so the
    // (staked) factory stays within ERC-7562 reputation (opsSeen / 10 <= opsIncluded + 10).
    for chunk in owners.chunks(100) {
        let warm: Vec<UserOperation> = chunk.iter().map(|o| op_for(&env, o, 0, true, None)).collect();
        run_load(&bundler, warm, rate).await;
    }

    // The measured operations carry the bundler's own estimates, as a client's would.
    let limits = probe.estimate(&op_for(&env, &owners[0], 1, false, None), VERSION, None).await.unwrap();
    let ops: Vec<UserOperation> =
        (0..n).map(|i| op_for(&env, &owners[i % m], 1 + (i / m) as u64, false, Some(&limits))).collect();
    timed.recording.store(true, std::sync::atomic::Ordering::Relaxed);
    let (took, admission, lat) = run_load(&bundler, ops, rate).await;
    let _ = stop.send(());
    runner.await.unwrap().unwrap();
    let mut validation = std::mem::take(&mut *timed.times.lock().unwrap());
    validation.sort();

    // The same-run baseline: one unsent operation validated with the rules and in bare revm (no
    // inspector), sequentially, on the now quiet chain.
    let probe_op = op_for(&env, &owners[0], 1 << 20, false, Some(&limits));
    let packed = probe_op.pack().unwrap();
    let traced = mean(200, || simulator.validate(&packed, VERSION)).await;
    let bare = mean(200, || simulator.simulate_bare(&packed, VERSION)).await;

    let blocks = |d: Duration| d.as_secs_f64() / BLOCK_TIME.as_secs_f64();
    println!("bundler load: {n} operations from {m} accounts, offered at {rate}/s, {}s blocks", BLOCK_TIME.as_secs());
    println!(
        "  gas limits      verification {}, call {}, preVerification {} (the bundler's estimate)",
        limits.verification_gas_limit, limits.call_gas_limit, limits.pre_verification_gas
    );
    println!("  acceptance      {:>8.1} ops/s ({n} in {:.2}s)", n as f64 / took.as_secs_f64(), took.as_secs_f64());
    for (name, p) in [("p50", 0.50), ("p99", 0.99)] {
        println!("  admission     {name} {:>6.3}s", percentile(&admission, p).as_secs_f64());
    }
    for (name, p) in [("p50", 0.50), ("p99", 0.99)] {
        println!("  validation    {name} {:>6.1}ms (under load)", percentile(&validation, p).as_secs_f64() * 1e3);
    }
    println!(
        "  validation, one op, quiet chain: with rules {:.0}µs, bare revm {:.0}µs, ratio {:.2}x",
        traced.as_secs_f64() * 1e6,
        bare.as_secs_f64() * 1e6,
        traced.as_secs_f64() / bare.as_secs_f64()
    );
    for (name, p) in [("p50", 0.50), ("p90", 0.90), ("p99", 0.99)] {
        let d = percentile(&lat, p);
        println!(
            "  send->receipt {name} {:>6.2}s = {:.2} blocks (baseline: 1 block = {}s)",
            d.as_secs_f64(),
            blocks(d),
            BLOCK_TIME.as_secs()
        );
    }
}
