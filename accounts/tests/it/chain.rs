//! The local account address equals the factory's `getAddress` on a real chain.

use alloy::primitives::{Address, U256};
use custody_accounts::{ChainContext, Error};
use custody_contracts::{
    DeployConfig, EntryPointVersion, bindings::peruri_account_factory_v07::PeruriAccountFactoryV07,
    test_utils::LocalChain,
};
use custody_db::test_utils::Engine;

use crate::setup::env_on;

#[tokio::test]
async fn local_addresses_match_the_factory() {
    let chain = LocalChain::start().await.expect("local chain starts (run `npm ci --prefix contracts` first)");
    let deployment =
        chain.deploy(&DeployConfig::single_operator(chain.dev_accounts()[0].address())).await.expect("deploys");
    let provider = chain.provider();
    let good = ChainContext::from_deployment(&deployment);
    assert_eq!(good, ChainContext::for_version(&deployment, EntryPointVersion::V07), "v0.7 by default");
    let env = env_on(Engine::Sqlite, good).await;

    for version in EntryPointVersion::ALL {
        let context = ChainContext::for_version(&deployment, version);
        let wallets = env.on(context).await;
        wallets.verify_address_on_chain(&provider).await.expect("addresses agree");

        let factory = PeruriAccountFactoryV07::new(context.factory, &provider);
        for user in ["u1", "u2"] {
            let (wallet, _) = wallets.create(&format!("{version}-{user}")).await.unwrap();
            let onchain = factory.getAddress(wallet.owner, U256::ZERO).call().await.unwrap();
            assert_eq!(wallet.address, onchain, "{version}: wallet address = factory.getAddress(owner, 0)");
        }
    }

    // A misconfigured context is caught.
    let wrong_chain = env.on(ChainContext { chain_id: good.chain_id + 1, ..good }).await;
    let result = wrong_chain.verify_address_on_chain(&provider).await;
    assert!(matches!(result, Err(Error::ChainIdMismatch { .. })), "{result:?}");
    for implementation in [Address::repeat_byte(0x22), deployment.contracts.peruri_account_v08] {
        let wallets = env.on(ChainContext { implementation, ..good }).await;
        let result = wallets.verify_address_on_chain(&provider).await;
        assert!(matches!(result, Err(Error::ImplementationMismatch { .. })), "{result:?}");
    }
    let no_code = env.on(ChainContext { factory: Address::repeat_byte(0x33), ..good }).await;
    let result = no_code.verify_address_on_chain(&provider).await;
    assert!(matches!(result, Err(Error::Contract { .. })), "a factory without code: {result:?}");
}
