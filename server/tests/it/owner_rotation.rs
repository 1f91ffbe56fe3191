//! An officer rotates a custodial wallet's owner key on the devnet: the successor is made in the HSM,
//! the account (still counterfactual) is deployed and its owner changed by one sponsored operation the
//! old key signs; once the receipt shows OwnerChanged, the new key signs operations and ERC-1271
//! signatures, the old key is retired, and the address and tokens stay. While it is pending the wallet's
//! signing routes refuse; the wrong role and an unknown wallet are refused; a list of users rotates each.

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::ProviderBuilder;
use custody_contracts::bindings::peruri_account_v08::PeruriAccountV08;
use custody_contracts::bindings::peruri_token::PeruriToken;
use serde_json::{Value, json};

use crate::devnet::{eventually, start, stop, wait_for_record};
use crate::operations::Api;

const MAGIC_1271: [u8; 4] = [0x16, 0x26, 0xba, 0x7e];

#[tokio::test]
async fn an_officer_rotates_the_owner_and_the_new_key_signs() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start(dir.path());
    let api = Api::of(wait_for_record(&mut child, &dir.path().join("devnet.json")));
    let (app, officer) = (api.token("app"), api.token("officer"));
    let chain = ProviderBuilder::new().connect_http(api.record["rpc_url"].as_str().unwrap().parse().unwrap());
    let (status, wallet) = api.post("/v1/wallets", &app, Some("w-1"), json!({"user_id": "rot-user"})).await;
    assert_eq!(status, 201, "{wallet}");
    let account: Address = wallet["address"].as_str().unwrap().parse().unwrap();
    let old_owner: Address = wallet["owner"].as_str().unwrap().parse().unwrap();
    let ptkn: Address = api.record["contracts"]["PeruriToken"].as_str().unwrap().parse().unwrap();
    let token = PeruriToken::new(ptkn, chain.clone());
    let whole = |n: u64| U256::from(n) * U256::from(10u64).pow(U256::from(18));
    let mint = json!({"userId": "rot-user", "amount": "10", "reason": "welcome"});
    assert!([200, 202].contains(&api.post("/mintToken", &app, Some("m-1"), mint).await.0));
    eventually("the mint", || async { (token.balanceOf(account).call().await.unwrap() == whole(10)).then_some(()) })
        .await;

    // Refused: the app role, an unknown wallet, a bad body.
    let path = "/v1/admin/wallets/rot-user/rotate-owner";
    assert_eq!(api.post(path, &app, Some("r-0"), json!({})).await.0, 403);
    assert_eq!(api.post("/v1/admin/wallets/nobody/rotate-owner", &officer, Some("r-1"), json!({})).await.0, 404);
    assert_eq!(api.post(path, &officer, Some("r-2"), json!({"owner": "0x"})).await.0, 400);

    // Requested: the owner change is with the bundler, and the wallet signs nothing meanwhile.
    let (status, rotation) = api.post(path, &officer, Some("r-3"), json!({})).await;
    assert_eq!(status, 202, "{rotation}");
    assert_eq!(
        (rotation["state"].as_str(), rotation["oldOwner"].as_str()),
        (Some("pending"), wallet["owner"].as_str())
    );
    let new_owner: Address = rotation["newOwner"].as_str().unwrap().parse().unwrap();
    assert_ne!(new_owner, old_owner);
    let (status, body) = api.post("/v1/wallets/rot-user/signatures", &app, None, json!({"message": "hi"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("owner_rotation_pending")), "{body}");
    assert_eq!(api.post(path, &officer, Some("r-4"), json!({})).await.0, 409, "one rotation at a time");
    assert_eq!(api.post(path, &officer, Some("r-3"), json!({})).await, (202, rotation.clone()), "replayed");

    // Confirmed from the receipt: the identity map and the keys follow the chain.
    let list = "/v1/admin/wallets/rot-user/owner-rotations";
    let done = eventually("the rotation", || async {
        let (status, page) = api.get(list, &officer).await;
        assert_eq!(status, 200, "{page}");
        let first = page["rotations"][0].clone();
        assert_ne!(first["state"], "failed", "{page}");
        (first["state"] == "confirmed").then_some(first)
    })
    .await;
    assert_eq!(done["userOpHash"], rotation["userOpHash"]);
    let contract = PeruriAccountV08::new(account, chain.clone());
    assert_eq!(contract.owner().call().await.unwrap(), new_owner, "the account's owner on-chain");
    let (_, after) = api.get("/v1/wallets/rot-user", &app).await;
    assert_eq!(
        (after["address"].as_str(), after["did"].as_str()),
        (wallet["address"].as_str(), wallet["did"].as_str())
    );
    assert_eq!(after["owner"].as_str().unwrap().parse::<Address>().unwrap(), new_owner);
    assert_eq!(token.balanceOf(account).call().await.unwrap(), whole(10), "the tokens stay");
    let (_, keys) = api.get("/v1/admin/keys?class=user&limit=1000", &officer).await;
    let state_of = |address: Address| {
        let keys = keys["keys"].as_array().unwrap();
        let key = keys.iter().find(|k| k["address"].as_str().and_then(|a| a.parse::<Address>().ok()) == Some(address));
        key.map(|k| k["state"].clone()).unwrap_or(Value::Null)
    };
    assert_eq!((state_of(old_owner), state_of(new_owner)), (json!("retired"), json!("active")), "{keys}");

    // The new key signs: a PTKN transfer lands, and a signature verifies by ERC-1271 on-chain.
    let transfer = json!({"to": Address::repeat_byte(0x5e), "amount": "3"});
    let (status, sent) = api.post("/v1/wallets/rot-user/tokens/transfer", &app, Some("t-1"), transfer).await;
    assert_eq!(status, 202, "{sent}");
    let op_path = format!("/v1/wallets/rot-user/operations/{}", sent["userOpHash"].as_str().unwrap());
    let included = api.included(&op_path, &app).await;
    assert_eq!(included["success"], true, "{included}");
    let bundle_tx = included["txHash"].as_str().unwrap().to_owned();
    assert_eq!(token.balanceOf(account).call().await.unwrap(), whole(7));
    let digest = B256::repeat_byte(0xab);
    let (status, signed) = api.post("/v1/wallets/rot-user/signatures", &app, None, json!({"hash": digest})).await;
    assert_eq!((status, &signed["erc6492"]), (200, &json!(false)), "{signed}");
    let signature: Bytes = signed["signature"].as_str().unwrap().parse().unwrap();
    assert_eq!(contract.isValidSignature(digest, signature).call().await.unwrap().0, MAGIC_1271);

    // A list of users, each rotated as alone: one started, an unknown one refused; repeats are refused.
    let many = "/v1/admin/wallets/rotate-owner";
    let twice = json!({"user_ids": ["rot-user", "rot-user"]});
    assert_eq!(api.post(many, &officer, Some("m-0"), twice).await.0, 422);
    let (status, batch) = api.post(many, &officer, Some("m-1"), json!({"user_ids": ["rot-user", "nobody"]})).await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch["outcomes"][0]["rotation"]["oldOwner"], rotation["newOwner"], "{batch}");
    assert_eq!(batch["outcomes"][1]["error"]["code"], "wallet_not_found", "{batch}");
    let third: Address = batch["outcomes"][0]["rotation"]["newOwner"].as_str().unwrap().parse().unwrap();
    eventually("the second rotation", || async {
        let (_, page) = api.get(list, &officer).await;
        (page["rotations"][0]["state"] == "confirmed").then_some(())
    })
    .await;
    assert_eq!(contract.owner().call().await.unwrap(), third);

    // Audited: requested and confirmed.
    let (_, trail) = api.get("/v1/admin/audit?limit=1000", &api.token("auditor")).await;
    let outcomes: Vec<_> = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "owner.rotate")
        .map(|e| e["outcome"].clone())
        .collect();
    assert!(outcomes.contains(&json!("requested")) && outcomes.contains(&json!("confirmed")), "{outcomes:?}");
    // The bundle transaction that carried the transfer was audited as signed before it was broadcast.
    let signed = trail["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "tx.sign");
    assert!(signed.clone().any(|e| e.to_string().contains(&bundle_tx)), "no tx.sign entry for {bundle_tx}");
    assert!(signed.count() >= 3, "the mint's batch, the rotation's and the transfer's bundles at least");
    stop(child);
}
