//! Shared test set-up: a chain with everything deployed, UserOperation building and signing.

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::DynProvider;
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use custody_contracts::bindings::peruri_account_factory_v07::PeruriAccountFactoryV07;
use custody_contracts::test_utils::{self, LocalChain};
use custody_contracts::{
    DeployConfig, Deployment, EntryPointVersion, IEntryPoint, PackedUserOperation, UserOperation, account,
};

pub struct Env {
    pub chain: LocalChain,
    pub provider: DynProvider,
    pub deployment: Deployment,
    pub config: DeployConfig,
}

/// A chain with everything deployed; dev account 0 holds every role.
pub async fn env() -> Env {
    let chain = LocalChain::start().await.expect("local chain starts (run `npm ci --prefix contracts` first)");
    let config = DeployConfig::single_operator(chain.dev_accounts()[0].address());
    env_with(chain, config).await
}

pub async fn env_with(chain: LocalChain, config: DeployConfig) -> Env {
    let deployment = chain.deploy(&config).await.expect("deploys");
    let provider = chain.provider();
    Env { chain, provider, deployment, config }
}

impl Env {
    pub fn operator(&self) -> &PrivateKeySigner {
        &self.chain.dev_accounts()[0]
    }

    pub fn entry_point(&self, version: EntryPointVersion) -> IEntryPoint::IEntryPointInstance<DynProvider> {
        IEntryPoint::new(self.deployment.contracts.entry_point(version), self.provider.clone())
    }

    /// The counterfactual account of `owner` (salt 0), checked against the factory's `getAddress`.
    pub async fn account_address(&self, version: EntryPointVersion, owner: Address) -> Address {
        let c = &self.deployment.contracts;
        let offline =
            account::account_address(c.account_factory(version), c.account_implementation(version), owner, U256::ZERO);
        let factory = PeruriAccountFactoryV07::new(c.account_factory(version), self.provider.clone());
        let onchain = factory.getAddress(owner, U256::ZERO).call().await.expect("getAddress");
        assert_eq!(offline, onchain, "offline account address equals factory.getAddress");
        offline
    }

    /// An unsigned operation of `sender` calling `call_data`, deploying the account of `owner` first if
    /// `deploy_for` is set. Gas fees are zero (the chain's gas price).
    pub async fn op(
        &self,
        version: EntryPointVersion,
        sender: Address,
        deploy_for: Option<Address>,
        call_data: Bytes,
    ) -> UserOperation {
        let nonce = self.entry_point(version).getNonce(sender, alloy::primitives::aliases::U192::ZERO).call().await;
        test_utils::user_op(&self.deployment, version, sender, nonce.expect("getNonce"), deploy_for, call_data)
    }

    /// Sign `op` for `version` with `owner` and pack it.
    pub fn sign(
        &self,
        version: EntryPointVersion,
        op: &UserOperation,
        owner: &PrivateKeySigner,
    ) -> PackedUserOperation {
        self.chain.sign_user_op(version, op, owner)
    }

    /// Submit a bundle from the operator; `Err(reason)` carries the EntryPoint's FailedOp reason.
    pub async fn handle_ops(
        &self,
        version: EntryPointVersion,
        ops: Vec<PackedUserOperation>,
    ) -> Result<TransactionReceipt, String> {
        self.chain.handle_ops(version, ops, self.operator()).await
    }
}

pub use custody_contracts::test_utils::{random_address, user_op_event};

pub fn random_b256() -> B256 {
    B256::from(rand::random::<[u8; 32]>())
}
