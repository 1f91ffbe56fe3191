//! Deterministic deployment: canonical EntryPoints and the same addresses on every chain.

use alloy::primitives::address;
use alloy::providers::Provider;
use custody_contracts::bindings::peruri_account_factory_v07::PeruriAccountFactoryV07;
use custody_contracts::test_utils::{LocalChain, LocalChainConfig};
use custody_contracts::{DeployConfig, Deployment, EntryPointVersion, entry_point::IEntryPointV08};

#[tokio::test]
async fn entry_points_land_at_their_canonical_addresses() {
    let env = crate::setup::env().await;
    let p = &env.provider;
    let c = env.deployment.contracts;
    assert_eq!(c.entry_point_v07, address!("0x0000000071727De22E5E9d8BAf0edAc6f37da032"));
    assert_eq!(c.entry_point_v08, address!("0x4337084D9E255Ff0702461CF8895CE9E3b5Ff108"));
    for v in EntryPointVersion::ALL {
        assert!(!p.get_code_at(v.address()).await.unwrap().is_empty(), "{v} has code");
    }
    // v0.7's SenderCreator is its first CREATE (the canonical 0xEFC2...); our v0.7 factory trusts it.
    let v07_creator = address!("0xEFC2c1444eBCC4Db75e7613d20C6a62fF67A167C");
    assert!(!p.get_code_at(v07_creator).await.unwrap().is_empty());
    let f07 = PeruriAccountFactoryV07::new(c.peruri_account_factory_v07, p.clone());
    assert_eq!(f07.senderCreator().call().await.unwrap(), v07_creator);
    assert_eq!(f07.accountImplementation().call().await.unwrap(), c.peruri_account_v07);
    // v0.8 exposes its SenderCreator; our v0.8 factory uses it.
    let v08_creator = IEntryPointV08::new(c.entry_point_v08, p.clone()).senderCreator().call().await.unwrap();
    let f08 = PeruriAccountFactoryV07::new(c.peruri_account_factory_v08, p.clone());
    assert_eq!(f08.senderCreator().call().await.unwrap(), v08_creator);
    assert_eq!(f08.accountImplementation().call().await.unwrap(), c.peruri_account_v08);
    // Every contract has code.
    let json = serde_json::to_value(c).unwrap();
    for (name, address) in json.as_object().unwrap() {
        let address = address.as_str().unwrap().parse().unwrap();
        assert!(!p.get_code_at(address).await.unwrap().is_empty(), "{name} has code");
    }
    // Deploying again changes nothing.
    let again = env.chain.deploy(&env.config).await.unwrap();
    assert_eq!(again.contracts, c);
}

#[tokio::test]
async fn same_config_same_addresses_on_two_fresh_chains() {
    let (a, b) = tokio::join!(
        LocalChain::start(),
        LocalChain::start_with(LocalChainConfig { chain_id: 31337, ..Default::default() })
    );
    let (a, b) = (a.expect("chain a starts"), b.expect("chain b starts"));
    let config = DeployConfig::single_operator(a.dev_accounts()[1].address());
    let (da, db) = tokio::join!(a.deploy(&config), b.deploy(&config));
    let (da, db) = (da.unwrap(), db.unwrap());
    assert_eq!(da.contracts, db.contracts);
    assert_eq!(da.contracts, config.addresses(), "addresses are known offline");
    assert_eq!((da.chain_id, db.chain_id), (1337, 31337));
    assert!(da.block > 0 && da.block == a.provider().get_block_number().await.unwrap());

    // The deployment record round-trips through JSON.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deployment.json");
    da.write(&path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(json["chainId"], 1337);
    assert_eq!(json["contracts"]["EntryPointV08"], "0x4337084d9e255ff0702461cf8895ce9e3b5ff108");
    assert_eq!(Deployment::read(&path).unwrap(), da);

    // Another configuration gives other addresses for the configured contracts only.
    let other = DeployConfig::single_operator(a.dev_accounts()[2].address());
    let dother = a.deploy(&other).await.unwrap();
    assert_ne!(dother.contracts.peruri_token, da.contracts.peruri_token);
    assert_eq!(dother.contracts.peruri_account_factory_v08, da.contracts.peruri_account_factory_v08);
}
