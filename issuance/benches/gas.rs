//! Gas per issued PTKN, amortised over a batch: N users each earn one attendance's PTKN; the mirror
//! anchors the batch and mints in as few transactions as it may. The baseline measured in the same run
//! is one plain `PTKN.mint` per user by the same issuer key (what issuing without batches costs).
//!
//! ```text
//! cargo bench -p custody-issuance --bench gas [-- 200]
//! ```

#![allow(clippy::unwrap_used, clippy::print_stdout, unreachable_pub, missing_debug_implementations)]

#[path = "../tests/it/setup.rs"]
#[allow(dead_code)]
mod setup;

use alloy::network::EthereumWallet;
use alloy::primitives::Address;
use custody_contracts::bindings::peruri_token::PeruriToken;
use custody_db::test_utils::Engine;

#[tokio::main]
async fn main() {
    let users: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(200);
    let env = setup::env(Engine::Sqlite).await;
    let mut ids = Vec::new();
    for i in 0..users {
        ids.push(
            env.issuance
                .track("bench", &format!("k{i}"), setup::activity(&format!("u{i}"), "attendance"))
                .await
                .unwrap()
                .id,
        );
    }
    env.settle(&ids).await;
    let totals = env.issuance.totals().await.unwrap();
    let (batched, txs) = (totals.gas_used, totals.mined_calls);

    // Baseline: one mint per user from the issuer key (HSM-signed through alloy's wallet filler).
    let provider = env.chain.provider_with(EthereumWallet::from(env.issuer.clone()));
    let token = PeruriToken::new(env.deployment.contracts.peruri_token, provider);
    let mut single = 0u64;
    for _ in 0..users.min(50) {
        let to = Address::from(rand::random::<[u8; 20]>());
        let receipt = token.mint(to, setup::ptkn(10)).send().await.unwrap().get_receipt().await.unwrap();
        single += receipt.gas_used;
    }
    let single = single as f64 / users.min(50) as f64;
    let per_item = batched as f64 / users as f64;
    println!("issued PTKN items:            {users}");
    println!("transactions (anchor + mint): {txs}");
    println!("gas per issued PTKN, batched: {per_item:.0} (target <= 40000, anchor included)");
    println!("gas per PTKN, one mint each:  {single:.0} (baseline)");
    println!("ratio batched / baseline:     {:.2}", per_item / single);
}
