//! The local chain is configured like production.

use std::time::Duration;

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use custody_contracts::besu::{BLOCK_GAS_LIMIT, default_alloc};
use custody_contracts::test_utils::{LocalChain, LocalChainConfig};

#[tokio::test]
async fn starts_like_production() {
    let chain = LocalChain::start().await.expect("local chain starts");
    let provider = chain.provider();
    assert_eq!(chain.chain_id(), 1337);
    assert_eq!(provider.get_chain_id().await.unwrap(), 1337);
    assert!(chain.rpc_url().starts_with("http://127.0.0.1:"));

    let block = provider.get_block_by_number(Default::default()).await.unwrap().expect("latest block");
    assert_eq!(block.header.gas_limit, BLOCK_GAS_LIMIT, "same block gas limit as the production genesis");
    assert_eq!(block.header.base_fee_per_gas, Some(0), "zero base fee");

    // The dev accounts are the node's own, funded.
    let accounts: Vec<Address> = provider.get_accounts().await.unwrap();
    for (signer, node_account) in chain.dev_accounts().iter().zip(&accounts) {
        assert_eq!(signer.address(), *node_account);
        assert!(provider.get_balance(signer.address()).await.unwrap() >= U256::from(10u128.pow(22)));
    }
    assert_eq!(chain.dev_accounts().len(), 10);

    // The production genesis alloc is loaded.
    for (address, account) in default_alloc() {
        assert_eq!(provider.get_code_at(address).await.unwrap(), account.code.unwrap_or_default());
        assert_eq!(
            Some(U256::from(provider.get_transaction_count(address).await.unwrap())),
            account.nonce.map(U256::from)
        );
    }

    // Gas price 0 is accepted: an account without any ether sends a transaction.
    let pauper = PrivateKeySigner::random();
    let pauper_provider = chain.provider_with(EthereumWallet::new(pauper.clone()));
    let tx = TransactionRequest::default()
        .with_to(Address::repeat_byte(0x42))
        .with_value(U256::ZERO)
        .with_max_fee_per_gas(0)
        .with_max_priority_fee_per_gas(0)
        .with_gas_limit(21_000);
    let receipt = pauper_provider.send_transaction(tx).await.unwrap().get_receipt().await.unwrap();
    assert!(receipt.status());
    assert_eq!(receipt.effective_gas_price, 0);
    assert_eq!(provider.get_balance(pauper.address()).await.unwrap(), U256::ZERO);
}

#[tokio::test]
async fn chain_id_and_interval_mining_from_config() {
    let config =
        LocalChainConfig { chain_id: 4242, block_time: Some(Duration::from_millis(500)), ..Default::default() };
    let chain = LocalChain::start_with(config).await.expect("local chain starts");
    let provider = chain.provider();
    assert_eq!(provider.get_chain_id().await.unwrap(), 4242);
    let first = provider.get_block_number().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let later = provider.get_block_number().await.unwrap();
    assert!(later >= first + 2, "interval mining produces blocks without transactions ({first} -> {later})");
}

#[tokio::test]
async fn node_is_killed_on_drop() {
    let chain = LocalChain::start().await.expect("local chain starts");
    let address = chain.rpc_url().trim_start_matches("http://").to_owned();
    assert!(std::net::TcpStream::connect(&address).is_ok());
    drop(chain);
    assert!(std::net::TcpStream::connect(&address).is_err(), "nothing listens after drop");
}

#[tokio::test]
async fn besu_genesis_alloc_is_what_the_local_chain_runs() {
    use custody_contracts::besu::{GenesisConfig, ValidatorKey, write_network};
    use custody_contracts::{DeployConfig, EntryPointVersion};

    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<ValidatorKey> = (0..3).map(|_| ValidatorKey::random()).collect();
    write_network(dir.path(), &GenesisConfig::new(keys.iter().map(ValidatorKey::address).collect()), &keys).unwrap();
    let genesis: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("genesis.json")).unwrap()).unwrap();

    let chain = LocalChain::start().await.expect("local chain starts");
    let provider = chain.provider();
    let block = provider.get_block_by_number(Default::default()).await.unwrap().unwrap();
    assert_eq!(genesis["gasLimit"], format!("{:#x}", block.header.gas_limit));
    assert_eq!(genesis["config"]["chainId"], chain.chain_id());
    for (address, account) in genesis["alloc"].as_object().unwrap() {
        let address: Address = address.parse().unwrap();
        let code = provider.get_code_at(address).await.unwrap();
        assert_eq!(code.to_string(), account["code"].as_str().unwrap(), "{address} code");
        let nonce = provider.get_transaction_count(address).await.unwrap();
        assert_eq!(format!("{nonce:#x}"), account["nonce"].as_str().unwrap(), "{address} nonce");
    }
    // And it is used: the EntryPoints deploy through it to their canonical addresses.
    let deployment = chain.deploy(&DeployConfig::single_operator(chain.dev_accounts()[0].address())).await.unwrap();
    assert_eq!(deployment.contracts.entry_point_v08, EntryPointVersion::V08.address());
}
