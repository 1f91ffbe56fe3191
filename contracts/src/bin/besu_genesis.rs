//! Generate a Besu QBFT (or, with `--consensus ibft2`, IBFT 2.0) network: `genesis.json` (2 s blocks, zero
//! base fee, Cancun, the production block gas limit, the deterministic deployment proxy pre-installed)
//! and, unless validator addresses are given, throw-away validator keys `validator-<i>/{key,key.pub}`.
//! See docs/besu.md.
//!
//! ```text
//! cargo run -p custody-contracts --bin besu-genesis -- --out .besu
//! ```
#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use alloy::primitives::{Address, U256};
use anyhow::{Result, bail};
use clap::Parser;
use custody_contracts::besu::{
    BLOCK_GAS_LIMIT, BLOCK_PERIOD_SECONDS, Consensus, DEFAULT_CHAIN_ID, DEFAULT_VALIDATORS, GenesisConfig,
    ValidatorKey, faulty_tolerated, write_network,
};

#[derive(Debug, Parser)]
#[command(about = "Generate a Besu QBFT or IBFT 2.0 genesis (and validator keys) for Peruri Custody")]
struct Args {
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// The consensus protocol: qbft (new networks) or ibft2 (existing ones).
    #[arg(long, value_enum, default_value_t = ConsensusArg::Qbft)]
    consensus: ConsensusArg,
    /// Number of validator keys to generate (ignored with --validator-address); 4 tolerate one fault.
    #[arg(long, default_value_t = DEFAULT_VALIDATORS)]
    validators: usize,
    /// Existing validator addresses (repeat); no keys are generated.
    #[arg(long = "validator-address")]
    validator_addresses: Vec<Address>,
    /// Chain id.
    #[arg(long, default_value_t = DEFAULT_CHAIN_ID)]
    chain_id: u64,
    /// Block period in seconds.
    #[arg(long, default_value_t = BLOCK_PERIOD_SECONDS)]
    block_period: u64,
    /// Block gas limit.
    #[arg(long, default_value_t = BLOCK_GAS_LIMIT)]
    gas_limit: u64,
    /// Accounts to fund with 1,000,000 ETH in the genesis (e.g. for paymaster stakes; repeat).
    #[arg(long)]
    fund: Vec<Address>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ConsensusArg {
    Qbft,
    Ibft2,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let keys: Vec<ValidatorKey> = if args.validator_addresses.is_empty() {
        if args.validators == 0 {
            bail!("at least one validator is needed");
        }
        (0..args.validators).map(|_| ValidatorKey::random()).collect()
    } else {
        Vec::new()
    };
    let validators = if keys.is_empty() {
        args.validator_addresses.clone()
    } else {
        keys.iter().map(ValidatorKey::address).collect()
    };
    let mut genesis = GenesisConfig::new(validators.clone());
    genesis.consensus = match args.consensus {
        ConsensusArg::Qbft => Consensus::Qbft,
        ConsensusArg::Ibft2 => Consensus::Ibft2,
    };
    genesis.chain_id = args.chain_id;
    genesis.block_period_seconds = args.block_period;
    genesis.block_gas_limit = args.gas_limit;
    for address in args.fund {
        genesis.alloc.entry(address).or_default().balance =
            U256::from(1_000_000u64) * U256::from(10u64).pow(U256::from(18));
    }
    write_network(&args.out, &genesis, &keys)?;
    println!("wrote {} ({:?})", args.out.join("genesis.json").display(), genesis.consensus);
    let tolerated = faulty_tolerated(validators.len());
    println!("{} validators tolerate {tolerated} faulty validator(s) (n ≥ 3f + 1)", validators.len());
    if tolerated == 0 {
        println!("warning: a network that tolerates no faulty validator stops when any one is down; use 4 or more");
    }
    for (i, address) in validators.iter().enumerate() {
        match keys.get(i) {
            Some(key) => println!("validator-{i}: {address} enode://{}@<host>:<p2p-port>", key.enode_id()),
            None => println!("validator-{i}: {address}"),
        }
    }
    Ok(())
}
