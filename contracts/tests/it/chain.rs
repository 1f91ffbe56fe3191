//! The local chain is configured like production.

use std::time::Duration;

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use custody_contracts::besu::{BLOCK_GAS_LIMIT, default_alloc};
use custody_contracts::test_utils::{LocalChain, LocalChainConfig, Node};

#[tokio::test]
async fn starts_like_production() {
    starts_like_production_on(Node::Hardhat).await;
}

#[tokio::test]
async fn anvil_starts_like_production() {
    starts_like_production_on(Node::Anvil { state: None }).await;
}

async fn starts_like_production_on(node: Node) {
    let chain =
        LocalChain::start_with(LocalChainConfig { node, ..Default::default() }).await.expect("local chain starts");
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

/// Anvil with a state file: a restart keeps the blocks, the receipts and the balances, and stopping it
/// writes the state (no interval dump has happened yet when it stops).
#[tokio::test]
async fn anvil_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("chain-state.json");
    let config = LocalChainConfig { node: Node::Anvil { state: Some(state.clone()) }, ..Default::default() };

    let chain = LocalChain::start_with(config.clone()).await.expect("local chain starts");
    assert!(!chain.resumed(), "no state file yet: a fresh chain");
    let to = Address::repeat_byte(0x42);
    let tx = TransactionRequest::default().with_to(to).with_value(U256::from(7));
    let receipt = chain.provider().send_transaction(tx).await.unwrap().get_receipt().await.unwrap();
    let block = chain.provider().get_block_by_number(receipt.block_number.unwrap().into()).await.unwrap().unwrap();
    chain.stop().expect("Anvil stops cleanly on SIGTERM");
    assert!(state.exists(), "the state is written on stop");
    assert!(!dir.path().join("chain-state.pid").exists(), "the pid file goes with the node");

    let chain = LocalChain::start_with(config).await.expect("local chain starts again");
    assert!(chain.resumed());
    let provider = chain.provider();
    let again = provider.get_transaction_receipt(receipt.transaction_hash).await.unwrap();
    assert_eq!(again.map(|r| r.block_hash), Some(receipt.block_hash), "the receipt is still there");
    let same = provider.get_block_by_number(block.header.number.into()).await.unwrap().unwrap();
    assert_eq!(same.header.hash, block.header.hash, "the same block at the same height");
    assert_eq!(provider.get_balance(to).await.unwrap(), U256::from(7));
    // The alloc is not loaded over a resumed chain's state, and the chain goes on from where it was.
    let tx = TransactionRequest::default().with_to(to).with_value(U256::from(1));
    let next = provider.send_transaction(tx).await.unwrap().get_receipt().await.unwrap();
    assert_eq!(next.block_number, Some(block.header.number + 1));
}

/// A node left running by a run that was killed (its `LocalChain` never dropped) is stopped by the next
/// start on the same state file, after it wrote its state.
#[tokio::test]
async fn anvil_left_running_is_stopped_by_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("chain-state.json");
    let config = LocalChainConfig { node: Node::Anvil { state: Some(state.clone()) }, ..Default::default() };
    let chain = LocalChain::start_with(config.clone()).await.expect("local chain starts");
    let old = chain.rpc_url().trim_start_matches("http://").to_owned();
    let to = Address::repeat_byte(0x43);
    let tx = TransactionRequest::default().with_to(to).with_value(U256::from(9));
    chain.provider().send_transaction(tx).await.unwrap().get_receipt().await.unwrap();
    std::mem::forget(chain);

    let chain = LocalChain::start_with(config).await.expect("local chain starts over the old one");
    assert!(std::net::TcpStream::connect(&old).is_err(), "the old node is gone");
    assert!(chain.resumed(), "from the state the old node wrote as it stopped");
    assert_eq!(chain.provider().get_balance(to).await.unwrap(), U256::from(9));
}
