//! Shared set-up: a deployed local chain, a simulator over it, UserOperation building and signing.

use alloy::primitives::aliases::U192;
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::DynProvider;
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use custody_bundler::sim::{SimConfig, Simulator};
use custody_contracts::test_utils::{self, LocalChain};
use custody_contracts::{DeployConfig, Deployment, EntryPointVersion, IEntryPoint, PackedUserOperation, UserOperation};

use crate::rule_contracts;

pub(crate) struct Env {
    pub(crate) chain: LocalChain,
    pub(crate) provider: DynProvider,
    pub(crate) deployment: Deployment,
}

pub(crate) async fn env() -> Env {
    let chain = LocalChain::start().await.expect("local chain starts (run `npm ci --prefix contracts` first)");
    let config = DeployConfig::single_operator(chain.dev_accounts()[0].address());
    let deployment = chain.deploy(&config).await.expect("deploys");
    let provider = chain.provider();
    Env { chain, provider, deployment }
}

pub(crate) use custody_contracts::test_utils::{random_address, user_op_event};

impl Env {
    pub(crate) fn config(&self) -> SimConfig {
        SimConfig::new(self.chain.chain_id())
    }

    pub(crate) fn simulator(&self) -> Simulator {
        self.simulator_with(self.config())
    }

    pub(crate) fn simulator_with(&self, config: SimConfig) -> Simulator {
        Simulator::connect(self.chain.rpc_url(), config).expect("simulator connects")
    }

    pub(crate) fn entry_point(&self, version: EntryPointVersion) -> IEntryPoint::IEntryPointInstance<DynProvider> {
        IEntryPoint::new(version.address(), self.provider.clone())
    }

    /// Installs a rule-test contract at a fresh address.
    pub(crate) async fn install(&self, name: &str) -> Address {
        rule_contracts::install(&self.chain, name).await
    }

    /// Installs a rule-test contract at a fresh address and stakes it on `version`'s EntryPoint with the
    /// simulator's minimums (exactly: the least that counts as staked).
    pub(crate) async fn install_staked(&self, version: EntryPointVersion, name: &str) -> Address {
        let address = self.install(name).await;
        let config = self.config();
        rule_contracts::stake(&self.chain, version, address, config.min_stake, config.min_unstake_delay).await;
        address
    }

    /// The counterfactual Peruri account of `owner` (salt 0).
    pub(crate) fn account_address(&self, version: EntryPointVersion, owner: Address) -> Address {
        test_utils::peruri_account(&self.deployment, version, owner)
    }

    /// An unsigned zero-fee operation of `sender` calling `call_data`, deploying the Peruri account of
    /// `owner` first if `deploy_for` is set.
    pub(crate) async fn op(
        &self,
        version: EntryPointVersion,
        sender: Address,
        deploy_for: Option<Address>,
        call_data: Bytes,
    ) -> UserOperation {
        let nonce = self.entry_point(version).getNonce(sender, U192::ZERO).call().await.expect("getNonce");
        test_utils::user_op(&self.deployment, version, sender, nonce, deploy_for, call_data)
    }

    /// Packs `op` and signs it for `version` with `owner`.
    pub(crate) fn sign(
        &self,
        version: EntryPointVersion,
        op: &UserOperation,
        owner: &PrivateKeySigner,
    ) -> PackedUserOperation {
        self.chain.sign_user_op(version, op, owner)
    }

    /// An operation of a rule-test account: no initCode, `helper` abi-encoded as the signature.
    pub(crate) fn rule_op(&self, sender: Address, helper: Address) -> PackedUserOperation {
        let op = UserOperation {
            sender,
            call_gas_limit: U256::from(100_000),
            verification_gas_limit: U256::from(400_000),
            pre_verification_gas: U256::from(50_000),
            signature: Bytes::from(alloy::sol_types::SolValue::abi_encode(&helper)),
            ..Default::default()
        };
        op.pack().expect("packs")
    }

    /// Sends a bundle of `ops` from dev account 0 and returns the receipt.
    pub(crate) async fn handle_ops(
        &self,
        version: EntryPointVersion,
        ops: Vec<PackedUserOperation>,
    ) -> TransactionReceipt {
        self.chain.handle_ops(version, ops, &self.chain.dev_accounts()[0]).await.expect("handleOps succeeds")
    }
}
