//! The chain identity (issue 12): a database used with one chain refuses to start against another, saying
//! what differs, and still starts against its own.

use alloy::primitives::{Address, B256};
use alloy::providers::Provider;
use custody_contracts::{
    DeployConfig,
    test_utils::{LocalChain, LocalChainConfig},
};
use custody_db::test_utils::Engine;

use crate::service::Service;

/// The hash of block `number` of `chain`.
async fn hash_of(chain: &LocalChain, number: u64) -> B256 {
    chain.provider().get_block_by_number(number.into()).await.unwrap().expect("the block exists").header.hash
}

#[tokio::test]
async fn a_database_used_with_one_chain_refuses_another() {
    // The deployment `Service` records (single operator 0x0101…), so the start-up checks pass.
    let config = DeployConfig::single_operator(Address::repeat_byte(1));
    let chain = LocalChain::start().await.expect("local chain starts");
    let deployment = chain.deploy(&config).await.expect("deploys");
    let mut s = Service::prepare(Engine::Sqlite, &format!("[chain]\nrpc_url = \"{}\"\n", chain.rpc_url())).await;
    deployment.write(&s.deployment_file()).unwrap();
    s.launch(&[]).await;
    s.restart(&[]).await;
    s.kill();
    let block = deployment.block;
    let recorded = hash_of(&chain, block).await;

    // The same chain id and the same deployment, on a chain with another history (a reset chain).
    let reset = LocalChain::start().await.expect("local chain starts");
    reset.mine().await.unwrap();
    reset.deploy(&config).await.expect("deploys");
    let other = hash_of(&reset, block).await;
    assert_ne!(other, recorded);
    let url = reset.rpc_url();
    let err = s.refused(&[("CUSTODY_CHAIN_RPC_URL", url)]);
    let expected = format!(
        "block {block} of the chain at {url} is {other}, the deployment block recorded is {recorded} \
         (a different or reset chain)"
    );
    assert!(err.contains(&expected), "{err}");

    // Another chain id.
    let foreign = LocalChain::start_with(LocalChainConfig { chain_id: 1338, ..Default::default() }).await.unwrap();
    let url = foreign.rpc_url();
    let err = s.refused(&[("CUSTODY_CHAIN_RPC_URL", url)]);
    assert!(
        err.contains(&format!("the chain at {url} has chain id 1338, this database was used with chain id 1337")),
        "{err}"
    );

    // A new chain that has not reached the deployment block.
    let new = LocalChain::start().await.expect("local chain starts");
    let url = new.rpc_url();
    let err = s.refused(&[("CUSTODY_CHAIN_RPC_URL", url)]);
    assert!(err.contains(&format!("the chain at {url} has no block {block} (its latest is 0)")), "{err}");

    // Its own chain is still accepted.
    s.launch(&[]).await;
    s.stop();
}
