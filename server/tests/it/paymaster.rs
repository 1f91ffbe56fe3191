//! The paymaster on the devnet, driven by viem as a dApp drives it: a bundler client with a paymaster
//! client (ERC-7677 stub, estimation, final data) on v0.7 and v0.8, ending in receipts whose paymaster is
//! PeruriPaymaster; `pm_sponsorUserOperation` in one call; the sponsorships settle (three); callers without the app role are refused.

use serde_json::Value;

use crate::devnet::{eventually, start, stop, wait_for_record};

/// Runs `contracts/test-tools/sponsored-op.mjs` for `version`; its receipt summary.
fn sponsored_op(record: &Value, version: &str, factory: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../contracts/test-tools/sponsored-op.mjs");
    let text = |key: &str| record[key].as_str().unwrap().to_owned();
    let out = std::process::Command::new("node")
        .arg(script)
        .args([text("rpc_url"), text("bundler_rpc_url"), text("paymaster_rpc_url")])
        .args([version, factory])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../contracts"))
        .output()
        .unwrap();
    assert!(out.status.success(), "viem ({version}): {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs the `custody` command line against the devnet in `dir` (its custody.env, chain and deployment);
/// stdout and stderr.
fn custody(dir: &std::path::Path, record: &Value, args: &[&str]) -> String {
    let env = std::fs::read_to_string(dir.join("custody.env")).unwrap();
    let vars = env.lines().filter_map(|l| l.strip_prefix("export ")?.split_once('='));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_custody"))
        .args(args)
        .envs(vars)
        .env("CUSTODY_CHAIN_RPC_URL", record["rpc_url"].as_str().unwrap())
        .env("CUSTODY_DEPLOYMENT_FILE", dir.join("deployment.json"))
        .output()
        .unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `pm_sponsorUserOperation` fills gas and paymaster fields in one call; the owner signs and the bundler
/// carries it.
async fn sponsor_in_one_call(http: &reqwest::Client, record: &Value) {
    use alloy::signers::SignerSync;
    use custody_contracts::{EntryPointVersion, UserOperation, account, userop};
    let version = EntryPointVersion::V08;
    let contracts: custody_contracts::Contracts = serde_json::from_value(record["contracts"].clone()).unwrap();
    let owner = alloy::signers::local::PrivateKeySigner::random();
    let sender = custody_contracts::test_utils::peruri_account(
        &custody_contracts::Deployment { chain_id: 0, block: 0, contracts },
        version,
        owner.address(),
    );
    let mut op = UserOperation {
        sender,
        factory: Some(contracts.account_factory(version)),
        factory_data: Some(account::factory_data(owner.address(), alloy::primitives::U256::ZERO)),
        call_data: account::execute(owner.address(), alloy::primitives::U256::ZERO, Default::default()),
        // A real signature (key 1 over the zero hash): recovers, to a stranger, as the owner's will.
        signature: alloy::primitives::hex!("a0b37f8fba683cc68f6574cd43b39f0343a50008bf6ccea9d13231d9e7e2e1e411edc8d307254296264aebfc3dc76cd8b668373a072fd64665b50000e9fcce521c").into(),
        ..Default::default()
    };
    let url = record["paymaster_rpc_url"].as_str().unwrap();
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "pm_sponsorUserOperation",
        "params": [op, version.address(), {}]});
    let answer: Value = http.post(url).json(&body).send().await.unwrap().json().await.unwrap();
    let fields = &answer["result"];
    assert_eq!(fields["paymaster"], serde_json::json!(contracts.paymaster(version)), "{answer}");
    let quantity = |k: &str| fields[k].as_str().unwrap().parse::<alloy::primitives::U256>().unwrap();
    op.call_gas_limit = quantity("callGasLimit");
    op.verification_gas_limit = quantity("verificationGasLimit");
    op.pre_verification_gas = quantity("preVerificationGas");
    op.paymaster = Some(contracts.paymaster(version));
    op.paymaster_verification_gas_limit = Some(quantity("paymasterVerificationGasLimit"));
    op.paymaster_post_op_gas_limit = Some(quantity("paymasterPostOpGasLimit"));
    op.paymaster_data = Some(fields["paymasterData"].as_str().unwrap().parse().unwrap());
    let chain_id = record["chain_id"].as_u64().unwrap();
    let hash = op.hash(version, version.address(), chain_id).unwrap();
    op.signature = owner.sign_hash_sync(&userop::signing_digest(version, hash)).unwrap().as_bytes().to_vec().into();
    let rpc = record["bundler_rpc_url"].as_str().unwrap();
    let send = serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "eth_sendUserOperation",
        "params": [op, version.address()]});
    let sent: Value = http.post(rpc).json(&send).send().await.unwrap().json().await.unwrap();
    assert_eq!(sent["result"], serde_json::json!(hash), "{sent}");
    let ask = serde_json::json!({"jsonrpc": "2.0", "id": 3, "method": "eth_getUserOperationReceipt", "params": [hash]});
    let receipt = eventually("the receipt", || async {
        let answer: Value = http.post(rpc).json(&ask).send().await.unwrap().json().await.unwrap();
        answer["result"].is_object().then_some(answer)
    })
    .await;
    assert_eq!(receipt["result"]["success"], true, "{receipt}");
}

#[tokio::test]
async fn viem_sends_sponsored_operations_through_the_devnet_paymaster() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start(dir.path());
    let record = wait_for_record(&mut child, &dir.path().join("devnet.json"));
    let contracts = &record["contracts"];
    for (version, factory, paymaster) in [
        ("0.7", "PeruriAccountFactoryV07", "PeruriPaymasterV07"),
        ("0.8", "PeruriAccountFactoryV08", "PeruriPaymasterV08"),
    ] {
        let receipt = sponsored_op(&record, version, contracts[factory].as_str().unwrap());
        assert_eq!(receipt["success"], true, "{version}: {receipt}");
        let expected = contracts[paymaster].as_str().unwrap().to_lowercase();
        assert_eq!(receipt["paymaster"].as_str().unwrap().to_lowercase(), expected, "{version}: {receipt}");
    }

    let api = record["api_url"].as_str().unwrap();
    let http = reqwest::Client::new();
    sponsor_in_one_call(&http, &record).await;
    let token = |name: &str| record["tokens"][name].as_str().unwrap().to_owned();
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "pm_getPaymasterStubData", "params": []});
    let status = |req: reqwest::RequestBuilder| async move { req.send().await.unwrap().status().as_u16() };
    assert_eq!(status(http.post(format!("{api}/paymaster")).json(&body)).await, 401, "no token");
    let officer = http.post(format!("{api}/paymaster")).bearer_auth(token("officer")).json(&body);
    assert_eq!(status(officer).await, 403, "not the app role");
    let forged = http.post(format!("{api}/paymaster?apikey=not.a.token")).json(&body);
    assert_eq!(status(forged).await, 401, "a bad apikey");

    // Officers see the three sponsorships settled from their receipts.
    let list = format!("{api}/v1/admin/paymaster/policies/devnet/sponsorships");
    eventually("three settled sponsorships", || async {
        let page: Value = http.get(&list).bearer_auth(token("officer")).send().await.unwrap().json().await.unwrap();
        let rows = page["sponsorships"].as_array().unwrap();
        (rows.len() == 3 && rows.iter().all(|r| r["status"] == "settled" && r["gasUsed"].as_u64() > Some(0)))
            .then_some(())
    })
    .await;
    let app = http.get(&list).bearer_auth(token("app")).send().await.unwrap().status().as_u16();
    assert_eq!(app, 403, "listing needs the officer role");

    // An operator tops up the v0.8 deposit from the admin key, through the transaction sender.
    let out = custody(dir.path(), &record, &["paymaster", "deposit", "--top-up", "1000", "--entry-point", "v0.8"]);
    assert!(out.contains("topped up"), "{out}");
    let v08 = out.lines().find(|l| l.starts_with("v0.8")).unwrap_or_default();
    assert!(v08.ends_with("deposit 1000 wei"), "{out}");
    let refused = custody(dir.path(), &record, &["paymaster", "deposit", "--top-up", "0"]);
    assert!(refused.contains("more than 0"), "{refused}");
    stop(child);
}
