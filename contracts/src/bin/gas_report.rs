//! Gas report: measures, in one run on a fresh local chain, the gas of Peruri's UserOperations and
//! issuance calls, side by side with eth-infinitism's SimpleAccount (from the npm artifacts), and prints
//! a markdown table.
//!
//! ```text
//! cargo run -p custody-contracts --features test-utils --bin gas-report
//! ```
#![allow(clippy::print_stdout)]

use alloy::network::ReceiptResponse;
use alloy::primitives::{Address, B256, Bytes, U256, aliases::U192};
use alloy::providers::DynProvider;
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use anyhow::{Context, Result, ensure};
use custody_contracts::bindings::peruri_badge::PeruriBadge;
use custody_contracts::bindings::peruri_log::PeruriLog;
use custody_contracts::bindings::peruri_token::PeruriToken;
use custody_contracts::bindings::{simple_account_factory_v07, simple_account_factory_v08, simple_account_v07};
use custody_contracts::sponsorship::Sponsorship;
use custody_contracts::test_utils::{LocalChain, random_address};
use custody_contracts::userop::signing_digest;
use custody_contracts::{
    DeployConfig, Deployment, EntryPointVersion, IEntryPoint, PackedUserOperation, UserOperation, account,
};

struct Bench {
    chain: LocalChain,
    provider: DynProvider,
    deployment: Deployment,
    operator: PrivateKeySigner,
}

impl Bench {
    /// Gas used by a bundle of one operation.
    async fn handle_op(&self, version: EntryPointVersion, op: PackedUserOperation) -> Result<u64> {
        let entry_point = IEntryPoint::new(version.address(), self.provider.clone());
        let receipt = entry_point
            .handleOps(vec![op], self.operator.address())
            .send()
            .await
            .context("handleOps")?
            .get_receipt()
            .await?;
        ensure!(receipt.status(), "handleOps reverted");
        let event = receipt
            .inner
            .logs()
            .iter()
            .find_map(|log| log.log_decode::<IEntryPoint::UserOperationEvent>().ok())
            .context("UserOperationEvent")?;
        ensure!(event.inner.success, "the operation's call failed");
        Ok(receipt.gas_used())
    }

    async fn op(
        &self,
        version: EntryPointVersion,
        sender: Address,
        init: Option<(Address, Bytes)>,
        call_data: Bytes,
    ) -> Result<UserOperation> {
        let nonce =
            IEntryPoint::new(version.address(), self.provider.clone()).getNonce(sender, U192::ZERO).call().await?;
        Ok(UserOperation {
            sender,
            nonce,
            factory: init.as_ref().map(|(f, _)| *f),
            factory_data: init.map(|(_, d)| d),
            call_data,
            call_gas_limit: U256::from(100_000),
            verification_gas_limit: U256::from(300_000),
            pre_verification_gas: U256::from(50_000),
            ..Default::default()
        })
    }

    fn sign(
        &self,
        version: EntryPointVersion,
        op: &UserOperation,
        owner: &PrivateKeySigner,
    ) -> Result<PackedUserOperation> {
        let mut packed = op.pack()?;
        let hash = packed.hash(version, version.address(), self.chain.chain_id());
        packed.signature = owner.sign_hash_sync(&signing_digest(version, hash))?.as_bytes().to_vec().into();
        Ok(packed)
    }

    /// Gas of the account's first operation (deploying it with `init`) and of a plain one after it.
    async fn first_and_plain(
        &self,
        version: EntryPointVersion,
        owner: &PrivateKeySigner,
        sender: Address,
        init: Option<(Address, Bytes)>,
        call: impl Fn() -> Bytes,
    ) -> Result<[u64; 2]> {
        let op = self.op(version, sender, init, call()).await?;
        let first = self.handle_op(version, self.sign(version, &op, owner)?).await?;
        let op = self.op(version, sender, None, call()).await?;
        let plain = self.handle_op(version, self.sign(version, &op, owner)?).await?;
        Ok([first, plain])
    }

    fn sponsor(&self, version: EntryPointVersion, op: &UserOperation) -> Result<UserOperation> {
        let s = Sponsorship {
            paymaster: self.deployment.contracts.paymaster(version),
            verification_gas_limit: 60_000,
            post_op_gas_limit: 0,
            // Every sponsorship ends (PeruriPaymaster refuses validUntil = 0).
            valid_until: custody_contracts::sponsorship::MAX_U48,
            valid_after: 0,
        };
        let mut op = op.clone();
        op.paymaster = Some(s.paymaster);
        op.paymaster_verification_gas_limit = Some(U256::from(s.verification_gas_limit));
        op.paymaster_post_op_gas_limit = Some(U256::ZERO);
        op.paymaster_data = Some(Bytes::new());
        let digest = s.signing_digest(&op.pack()?, self.chain.chain_id());
        let signature = self.operator.sign_hash_sync(&digest)?.as_bytes();
        op.paymaster_data = Some(s.paymaster_and_data(&signature).slice(52..));
        Ok(op)
    }

    /// Peruri: (first op with deployment, plain call, sponsored call, sponsored first op).
    async fn peruri(&self, version: EntryPointVersion) -> Result<[u64; 4]> {
        let c = &self.deployment.contracts;
        let call = || account::execute(random_address(), U256::ZERO, Bytes::new());
        let (owner, sender, init) = fresh_account(c, version);
        let [first, plain] = self.first_and_plain(version, &owner, sender, init, call).await?;
        let op = self.sponsor(version, &self.op(version, sender, None, call()).await?)?;
        let sponsored = self.handle_op(version, self.sign(version, &op, &owner)?).await?;

        let (owner, sender, init) = fresh_account(c, version);
        let op = self.sponsor(version, &self.op(version, sender, init, call()).await?)?;
        let sponsored_first = self.handle_op(version, self.sign(version, &op, &owner)?).await?;
        Ok([first, plain, sponsored, sponsored_first])
    }

    /// SimpleAccount from the npm artifacts: (first op with deployment, plain call).
    async fn simple_account(&self, version: EntryPointVersion) -> Result<[u64; 2]> {
        let ep = version.address();
        let factory = match version {
            EntryPointVersion::V07 => {
                *simple_account_factory_v07::SimpleAccountFactory::deploy(self.provider.clone(), ep).await?.address()
            }
            EntryPointVersion::V08 => {
                *simple_account_factory_v08::SimpleAccountFactory::deploy(self.provider.clone(), ep).await?.address()
            }
        };
        let f = simple_account_factory_v07::SimpleAccountFactory::new(factory, self.provider.clone());
        let owner = PrivateKeySigner::random();
        let sender = f.getAddress(owner.address(), U256::ZERO).call().await?;
        let create = simple_account_factory_v07::SimpleAccountFactory::createAccountCall {
            owner: owner.address(),
            salt: U256::ZERO,
        };
        let call = || -> Bytes {
            simple_account_v07::SimpleAccount::executeCall {
                dest: random_address(),
                value: U256::ZERO,
                func: Bytes::new(),
            }
            .abi_encode()
            .into()
        };
        let init = Some((factory, Bytes::from(create.abi_encode())));
        let [first, plain] = self.first_and_plain(version, &owner, sender, init, call).await?;
        Ok([first, plain])
    }

    async fn ptkn_batch(&self, n: usize) -> Result<u64> {
        let token = PeruriToken::new(self.deployment.contracts.peruri_token, self.provider.clone());
        let to: Vec<Address> = (0..n).map(|_| random_address()).collect();
        let amounts = vec![U256::from(10u64.pow(18)); n];
        let batch = B256::from(rand::random::<[u8; 32]>());
        let receipt = token.batchMint(batch, to, amounts).send().await?.get_receipt().await?;
        ensure!(receipt.status(), "PTKN batchMint reverted");
        Ok(receipt.gas_used())
    }

    async fn pbadge_batch(&self, n: usize) -> Result<u64> {
        let badge = PeruriBadge::new(self.deployment.contracts.peruri_badge, self.provider.clone());
        let to: Vec<Address> = (0..n).map(|_| random_address()).collect();
        let ids = vec![U256::from(202_601); n];
        let batch = B256::from(rand::random::<[u8; 32]>());
        let receipt = badge.batchMint(batch, to, ids).send().await?.get_receipt().await?;
        ensure!(receipt.status(), "PBADGE batchMint reverted");
        Ok(receipt.gas_used())
    }

    async fn plog_anchor(&self) -> Result<u64> {
        let log = PeruriLog::new(self.deployment.contracts.peruri_log, self.provider.clone());
        let receipt = log
            .anchor(
                B256::from(rand::random::<[u8; 32]>()),
                B256::from(rand::random::<[u8; 32]>()),
                100,
                "https://peruri.invalid/batches/000001.json".to_owned(),
            )
            .send()
            .await?
            .get_receipt()
            .await?;
        ensure!(receipt.status(), "PLOG anchor reverted");
        Ok(receipt.gas_used())
    }
}

fn ratio(a: u64, b: u64) -> String {
    format!("{:.2}", a as f64 / b as f64)
}

#[tokio::main]
async fn main() -> Result<()> {
    let chain = LocalChain::start().await?;
    let provider = chain.provider();
    let operator = chain.dev_accounts()[0].clone();
    let deployment = chain.deploy(&DeployConfig::single_operator(operator.address())).await?;
    let bench = Bench { chain, provider, deployment, operator };

    println!("| operation | EntryPoint | Peruri (gas) | SimpleAccount (gas) | Peruri / SimpleAccount |");
    println!("|---|---|---:|---:|---:|");
    let mut first_ops = Vec::new();
    for version in EntryPointVersion::ALL {
        let [first, plain, sponsored, sponsored_first] = bench.peruri(version).await?;
        let [simple_first, simple_plain] = bench.simple_account(version).await?;
        first_ops.push(first);
        println!(
            "| first UserOp, deploys the account | {version} | {first} | {simple_first} | {} |",
            ratio(first, simple_first)
        );
        println!("| plain call UserOp | {version} | {plain} | {simple_plain} | {} |", ratio(plain, simple_plain));
        println!(
            "| paymaster-sponsored call UserOp | {version} | {sponsored} | – | {} (vs. Peruri unsponsored) |",
            ratio(sponsored, plain)
        );
        println!(
            "| paymaster-sponsored first UserOp | {version} | {sponsored_first} | – | {} (vs. Peruri unsponsored) |",
            ratio(sponsored_first, first)
        );
    }
    println!();
    println!("| issuance | recipients | total gas | gas per recipient |");
    println!("|---|---:|---:|---:|");
    let mut ptkn_100 = 0;
    for n in [1usize, 10, 100] {
        let gas = bench.ptkn_batch(n).await?;
        if n == 100 {
            ptkn_100 = gas / 100;
        }
        println!("| PTKN batchMint | {n} | {gas} | {} |", gas / n as u64);
    }
    for n in [1usize, 10, 100] {
        let gas = bench.pbadge_batch(n).await?;
        println!("| PBADGE batchMint | {n} | {gas} | {} |", gas / n as u64);
    }
    let anchor = bench.plog_anchor().await?;
    println!("| PLOG anchor (one batch root) | – | {anchor} | – |");
    println!();
    let worst_first = first_ops.iter().copied().max().unwrap_or_default();
    println!(
        "Targets: first UserOp with deployment ≤ 200,000 gas: {} (worst {worst_first}); PTKN ≤ 40,000 gas per recipient in batches of 100: {} ({ptkn_100}).",
        if worst_first <= 200_000 { "met" } else { "NOT met" },
        if ptkn_100 <= 40_000 { "met" } else { "NOT met" },
    );
    Ok(())
}

/// A new owner, its counterfactual Peruri account and the initCode parts that deploy it.
fn fresh_account(
    c: &custody_contracts::Contracts,
    version: EntryPointVersion,
) -> (PrivateKeySigner, Address, Option<(Address, Bytes)>) {
    let owner = PrivateKeySigner::random();
    let sender = account::account_address(
        c.account_factory(version),
        c.account_implementation(version),
        owner.address(),
        U256::ZERO,
    );
    let init = Some((c.account_factory(version), account::factory_data(owner.address(), U256::ZERO)));
    (owner, sender, init)
}
