//! Signatures of custodial wallets, checked on-chain: ERC-6492 while the account is counterfactual (the
//! verifier deploys it through the factory, then asks ERC-1271), ERC-1271 once deployed.

use alloy::primitives::{B256, Bytes, eip191_hash_message};
use alloy::providers::Provider;
use alloy::sol_types::SolValue;
use custody_contracts::bindings::peruri_account_v08::PeruriAccountV08;
use custody_contracts::{DeployConfig, account::ERC6492_MAGIC, test_utils::LocalChain};
use custody_db::test_utils::Engine;
use serde_json::json;

use crate::service::{Service, token};

const MAGIC_1271: [u8; 4] = [0x16, 0x26, 0xba, 0x7e];

/// What viem's public client (`verifyMessage` / `verifyHash`: ERC-6492, then ERC-1271) says of a signature.
fn viem_verifies(rpc_url: &str, address: &str, kind: &str, value: &str, signature: &str) -> bool {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../contracts/test-tools/verify-signature.mjs");
    let out = std::process::Command::new("node").args([script, rpc_url, address, kind, value, signature]).output();
    let out = out.expect("node runs (scripts/bootstrap.sh installs it and viem)");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(out.status.success(), "viem failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout == "true"
}

#[tokio::test]
async fn a_wallet_signs_and_the_account_accepts_it_before_and_after_deployment() {
    let chain = LocalChain::start().await.expect("local chain starts");
    let mut s = Service::prepare(Engine::Sqlite, &format!("[chain]\nrpc_url = \"{}\"\n", chain.rpc_url())).await;
    let config = DeployConfig::single_operator(chain.dev_accounts()[0].address());
    chain.deploy(&config).await.expect("deploys").write(&s.deployment_file()).unwrap();
    s.launch(&[]).await;
    let app = token("backend", &["app"]);
    let (status, wallet) = s.post("/v1/wallets", &app, Some("w"), &json!({"user_id": "signer"})).await;
    assert_eq!(status, 201, "{wallet}");
    let address: alloy::primitives::Address = wallet["address"].as_str().unwrap().parse().unwrap();
    let provider = chain.provider();
    assert!(provider.get_code_at(address).await.unwrap().is_empty(), "counterfactual");

    // Counterfactual: an ERC-6492 signature; deploying through its factory call makes ERC-1271 accept it.
    let (status, signed) = s.post("/v1/wallets/signer/signatures", &app, None, &json!({"message": "hello"})).await;
    assert_eq!(status, 200, "{signed}");
    assert_eq!(signed["erc6492"], true);
    let hash: B256 = signed["hash"].as_str().unwrap().parse().unwrap();
    assert_eq!(hash, eip191_hash_message("hello"), "EIP-191 of the message");
    let sig_text = signed["signature"].as_str().unwrap();
    let address_text = wallet["address"].as_str().unwrap();
    assert!(viem_verifies(chain.rpc_url(), address_text, "message", "hello", sig_text), "viem, counterfactual");
    assert!(!viem_verifies(chain.rpc_url(), address_text, "message", "other", sig_text), "viem, another message");
    let wrapped: Bytes = sig_text.parse().unwrap();
    assert!(wrapped.ends_with(ERC6492_MAGIC.as_slice()), "the ERC-6492 suffix");
    let body = &wrapped[..wrapped.len() - 32];
    let (factory, calldata, inner) =
        <(alloy::primitives::Address, Bytes, Bytes)>::abi_decode_params(body).expect("ERC-6492 envelope");
    let deploy = alloy::rpc::types::TransactionRequest::default().to(factory).input(calldata.into());
    let verifier = chain.provider_with(alloy::network::EthereumWallet::from(chain.dev_accounts()[1].clone()));
    let receipt = verifier.send_transaction(deploy).await.unwrap().get_receipt().await.unwrap();
    assert!(receipt.status(), "anyone may deploy the account through its factory (ERC-6492 verifiers do)");
    let account = PeruriAccountV08::new(address, provider.clone());
    assert_eq!(account.isValidSignature(hash, inner.clone()).call().await.unwrap().0, MAGIC_1271);
    let other = B256::repeat_byte(7);
    assert_ne!(account.isValidSignature(other, inner).call().await.unwrap().0, MAGIC_1271, "for its hash only");

    // Deployed: a plain 65-byte signature ERC-1271 accepts; the user signs for themselves too.
    let digest = format!("0x{}", "ab".repeat(32));
    let user = token("signer", &["user"]);
    let (status, own) = s.post("/wallet/signatures", &user, None, &json!({"hash": digest})).await;
    assert_eq!((status, &own["erc6492"]), (200, &json!(false)), "{own}");
    assert!(viem_verifies(chain.rpc_url(), address_text, "hash", &digest, own["signature"].as_str().unwrap()), "viem");
    let sig: Bytes = own["signature"].as_str().unwrap().parse().unwrap();
    assert_eq!(sig.len(), 65);
    let digest: B256 = digest.parse().unwrap();
    assert_eq!(account.isValidSignature(digest, sig).call().await.unwrap().0, MAGIC_1271);

    // EIP-712 typed data, as a dApp asks (viem's verifyTypedData hashes it independently).
    let typed = json!({
        "domain": {"name": "Peruri Demo", "version": "1", "chainId": 1337, "verifyingContract": "0x000000000000000000000000000000000000dEaD"},
        "types": {"Greeting": [{"name": "text", "type": "string"}, {"name": "count", "type": "uint256"}]},
        "primaryType": "Greeting",
        "message": {"text": "hello", "count": 3},
    });
    let (status, signed) = s.post("/v1/wallets/signer/signatures", &app, None, &json!({"typedData": typed})).await;
    assert_eq!(status, 200, "{signed}");
    let sig = signed["signature"].as_str().unwrap();
    assert!(viem_verifies(chain.rpc_url(), address_text, "typedData", &typed.to_string(), sig), "viem, typed data");
    let bad = json!({"typedData": {"types": {}, "primaryType": "Nope", "domain": {}, "message": {}}});
    let (status, answer) = s.post("/v1/wallets/signer/signatures", &app, None, &bad).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (422, Some("invalid_typed_data")), "{answer}");

    // Refusals: bad input, no wallet, wrong role; every signature is audited.
    for body in [json!({}), json!({"message": "a", "hash": format!("0x{}", "00".repeat(32))}), json!({"hash": "0x12"})]
    {
        let (status, answer) = s.post("/v1/wallets/signer/signatures", &app, None, &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    let not_json = s.http.post(format!("{}/v1/wallets/signer/signatures", s.url)).bearer_auth(&app).body("hello");
    assert_eq!(not_json.send().await.unwrap().status(), 415);
    assert_eq!(s.post("/v1/wallets/nobody/signatures", &app, None, &json!({"message": "x"})).await.0, 404);
    assert_eq!(s.post("/v1/wallets/signer/signatures", &user, None, &json!({"message": "x"})).await.0, 403);
    let (_, page) = s.get("/v1/admin/audit?action=wallet.sign", Some(&token("a", &["auditor"]))).await;
    let outcomes: Vec<_> = page["entries"].as_array().unwrap().iter().map(|e| e["outcome"].clone()).collect();
    assert_eq!(outcomes, ["requested", "signed"].repeat(3), "{page}");
    s.stop();
}
