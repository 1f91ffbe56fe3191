//! Validation throughput: N validations of the same UserOperation (a Peruri account deployed by its
//! initCode, EntryPoint v0.7 and v0.8) with the ERC-7562 inspector and in bare revm (no inspector, no
//! rules), in the same run against the same local chain and warm state cache. Prints ops/s and the
//! ratio; asserts nothing.
//!
//! `cargo bench -p custody-bundler --bench validate` (`BENCH_N` sets N, default 2000).

use std::io::Write;
use std::time::Instant;

use alloy::primitives::{Bytes, U256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use custody_bundler::sim::{SimConfig, Simulator};
use custody_bundler::validation::Validate;
use custody_contracts::test_utils::LocalChain;
use custody_contracts::userop::signing_digest;
use custody_contracts::{DeployConfig, EntryPointVersion, UserOperation, account};

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n: usize = std::env::var("BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let chain = LocalChain::start().await.expect("local chain starts (npm ci --prefix contracts)");
    let deployment =
        chain.deploy(&DeployConfig::single_operator(chain.dev_accounts()[0].address())).await.expect("deploys");
    // The Peruri factories read SELFBALANCE (OpenZeppelin Clones), allowed to staked factories only
    // (ERC-7562 OP-080): trust them. The inspector still traces the factory; only its verdict is skipped.
    let mut config = SimConfig::new(chain.chain_id());
    let c = &deployment.contracts;
    config.trusted.factories.extend(EntryPointVersion::ALL.map(|v| c.account_factory(v)));
    let sim = Simulator::connect(chain.rpc_url(), config).expect("connects");
    let mut out = std::io::stdout().lock();
    writeln!(out, "validation bench: {n} validations per mode, local Hardhat chain").expect("stdout");
    for version in EntryPointVersion::ALL {
        let owner = PrivateKeySigner::random();
        let c = &deployment.contracts;
        let sender = account::account_address(
            c.account_factory(version),
            c.account_implementation(version),
            owner.address(),
            U256::ZERO,
        );
        let op = UserOperation {
            sender,
            factory: Some(c.account_factory(version)),
            factory_data: Some(account::factory_data(owner.address(), U256::ZERO)),
            call_data: account::execute(sender, U256::ZERO, Bytes::new()),
            call_gas_limit: U256::from(100_000),
            verification_gas_limit: U256::from(400_000),
            pre_verification_gas: U256::from(50_000),
            ..Default::default()
        };
        let mut op = op.pack().expect("packs");
        let hash = op.hash(version, version.address(), chain.chain_id());
        op.signature = owner.sign_hash_sync(&signing_digest(version, hash)).expect("signs").as_bytes().to_vec().into();

        // Warm the state cache (and check the op is valid) before timing.
        sim.validate(&op, version).await.expect("the bench op validates");
        sim.simulate_bare(&op, version).await.expect("bare simulation");

        let start = Instant::now();
        for _ in 0..n {
            sim.validate(&op, version).await.expect("validates");
        }
        let traced = start.elapsed();
        let start = Instant::now();
        for _ in 0..n {
            sim.simulate_bare(&op, version).await.expect("simulates");
        }
        let bare = start.elapsed();

        let rate = |d: std::time::Duration| n as f64 / d.as_secs_f64();
        writeln!(
            out,
            "{version}: with rules {:.0} ops/s ({:.0} µs/op), bare revm {:.0} ops/s ({:.0} µs/op), rules/bare time ratio {:.2}x",
            rate(traced),
            traced.as_micros() as f64 / n as f64,
            rate(bare),
            bare.as_micros() as f64 / n as f64,
            traced.as_secs_f64() / bare.as_secs_f64(),
        )
        .expect("stdout");
    }
}
