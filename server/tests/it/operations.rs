//! Operations of custodial wallets on the devnet: prepared (summary, sponsorship, nothing signed),
//! submitted once under an Idempotency-Key and signed by the HSM owner key, carried by the bundler and
//! included on-chain; calls sent at once as a batch; the user's own routes; an expired prepared operation,
//! another user's, the wrong role and malformed calls refused with nothing sent.

use alloy::primitives::{Address, U256};
use alloy::providers::{Provider, ProviderBuilder};
use custody_contracts::bindings::peruri_token::PeruriToken;
use serde_json::{Value, json};

use crate::devnet::{eventually, start, stop, wait_for_record};

/// The devnet's API as an app talks to it.
pub(crate) struct Api {
    pub(crate) http: reqwest::Client,
    pub(crate) url: String,
    pub(crate) record: Value,
}

impl Api {
    /// The API of a devnet whose record is `record`.
    pub(crate) fn of(record: Value) -> Self {
        Self { http: reqwest::Client::new(), url: record["api_url"].as_str().unwrap().to_owned(), record }
    }

    pub(crate) fn token(&self, name: &str) -> String {
        self.record["tokens"][name].as_str().unwrap().to_owned()
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        token: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method.parse().unwrap(), format!("{}{path}", self.url)).bearer_auth(token);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn post(&self, path: &str, token: &str, key: Option<&str>, body: Value) -> (u16, Value) {
        self.send("POST", path, token, key, Some(body)).await
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.send("GET", path, token, None, None).await
    }

    /// Polls `path` until the operation is included; its status.
    pub(crate) async fn included(&self, path: &str, token: &str) -> Value {
        eventually(path, || async {
            let (status, body) = self.get(path, token).await;
            assert_eq!(status, 200, "{body}");
            assert_ne!(body["status"], "failed", "{body}");
            (body["status"] == "included").then_some(body)
        })
        .await
    }
}

#[tokio::test]
async fn custodial_wallets_prepare_sign_and_send_sponsored_operations() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start(dir.path());
    let record = wait_for_record(&mut child, &dir.path().join("devnet.json"));
    let api = Api::of(record);
    let (app, officer) = (api.token("app"), api.token("officer"));
    let chain = ProviderBuilder::new().connect_http(api.record["rpc_url"].as_str().unwrap().parse().unwrap());
    for user in ["op-user", "op-other", "demo-user"] {
        let (status, body) = api.post("/v1/wallets", &app, Some(&format!("w-{user}")), json!({"user_id": user})).await;
        assert_eq!(status, 201, "{body}");
    }
    let (_, wallet) = api.get("/v1/wallets/op-user", &app).await;
    let account: Address = wallet["address"].as_str().unwrap().parse().unwrap();
    assert!(chain.get_code_at(account).await.unwrap().is_empty(), "counterfactual");

    // Prepared: what it does, sponsored, deploying the account, nothing signed.
    let recipient = Address::repeat_byte(0x5e);
    let calls = json!({"calls": [{"to": recipient, "value": "0"}]});
    let (status, prepared) = api.post("/v1/wallets/op-user/operations/prepare", &app, None, calls.clone()).await;
    assert_eq!(status, 200, "{prepared}");
    assert_eq!(prepared["summary"], format!("send to {recipient}"));
    let op = &prepared["userOp"];
    assert_eq!(op["sender"].as_str().unwrap().parse::<Address>().unwrap(), account);
    assert_eq!(op["paymaster"], api.record["contracts"]["PeruriPaymasterV07"], "{op}");
    assert!(op["factory"].is_string(), "initCode while counterfactual: {op}");
    assert_eq!(op["signature"], "0x", "not signed yet");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(prepared["expiresAt"].as_u64().unwrap() > now);
    let hash = prepared["userOpHash"].as_str().unwrap().to_owned();
    let status_path = format!("/v1/wallets/op-user/operations/{hash}");
    assert_eq!(api.get(&status_path, &app).await.1["status"], "prepared");

    // Submitted once: the same key replays the answer, another key sends nothing new.
    let id = json!({"prepared": prepared["id"]});
    let (status, submitted) = api.post("/v1/wallets/op-user/operations", &app, Some("s-1"), id.clone()).await;
    assert_eq!(status, 202, "{submitted}");
    assert_eq!(submitted, json!({"userOpHash": hash, "status": "pending"}));
    assert_eq!(
        api.post("/v1/wallets/op-user/operations", &app, Some("s-1"), id.clone()).await,
        (202, submitted.clone())
    );
    assert_eq!(api.post("/v1/wallets/op-user/operations", &app, Some("s-2"), id.clone()).await.0, 202);
    let included = api.included(&status_path, &app).await;
    assert_eq!(included["success"], true, "{included}");
    assert!(included["txHash"].is_string(), "{included}");
    assert!(!chain.get_code_at(account).await.unwrap().is_empty(), "deployed by its first operation");
    let dump = json!({"jsonrpc": "2.0", "id": 1, "method": "debug_bundler_dumpMempool",
        "params": [api.record["contracts"]["EntryPointV07"]]});
    let rpc = api.http.post(format!("{}/rpc", api.url)).json(&dump).send().await.unwrap();
    assert_eq!(rpc.json::<Value>().await.unwrap()["result"], json!([]), "nothing sent twice");

    // Calls sent at once: a batch of two, included.
    let batch = json!({"calls": [{"to": recipient}, {"to": Address::repeat_byte(0x5f), "data": "0x"}]});
    let (status, sent) = api.post("/v1/wallets/op-user/operations", &app, Some("s-3"), batch).await;
    assert_eq!(status, 202, "{sent}");
    let path = format!("/v1/wallets/op-user/operations/{}", sent["userOpHash"].as_str().unwrap());
    assert_eq!(api.included(&path, &app).await["success"], true);

    // A PTKN transfer to another user, from the tokens the mirror minted to the account.
    let ptkn: Address = api.record["contracts"]["PeruriToken"].as_str().unwrap().parse().unwrap();
    let token = PeruriToken::new(ptkn, chain.clone());
    let (_, other) = api.get("/v1/wallets/op-other", &app).await;
    let other: Address = other["address"].as_str().unwrap().parse().unwrap();
    let mint = json!({"userId": "op-user", "amount": "10", "reason": "welcome"});
    assert!([200, 202].contains(&api.post("/mintToken", &app, Some("m-1"), mint).await.0));
    let whole = |n: u64| U256::from(n) * U256::from(10u64).pow(U256::from(18));
    eventually("the mint", || async { (token.balanceOf(account).call().await.unwrap() == whole(10)).then_some(()) })
        .await;
    let transfer = json!({"to_user_id": "op-other", "amount": "3"});
    let (status, sent) = api.post("/v1/wallets/op-user/tokens/transfer", &app, Some("t-1"), transfer.clone()).await;
    assert_eq!(status, 202, "{sent}");
    assert_eq!(api.post("/v1/wallets/op-user/tokens/transfer", &app, Some("t-1"), transfer).await, (202, sent.clone()));
    let path = format!("/v1/wallets/op-user/operations/{}", sent["userOpHash"].as_str().unwrap());
    assert_eq!(api.included(&path, &app).await["success"], true);
    assert_eq!(token.balanceOf(other).call().await.unwrap(), whole(3), "moved once");
    assert_eq!(token.balanceOf(account).call().await.unwrap(), whole(7));
    let nobody = json!({"to_user_id": "nobody", "amount": "1"});
    assert_eq!(api.post("/v1/wallets/op-user/tokens/transfer", &app, Some("t-2"), nobody).await.0, 404);
    let both = json!({"to_user_id": "op-other", "to": other, "amount": "1"});
    assert_eq!(api.post("/v1/wallets/op-user/tokens/transfer", &app, Some("t-3"), both).await.0, 400);

    // Spending: the user's own account burns 2 of its 7, once under its key; more than it holds would
    // not execute; a bad amount is refused; the issuer cannot burn at all.
    let burn = json!({"userId": "op-user", "amount": "2", "reason": "coffee"});
    let (status, sent) = api.post("/v1/tokens/burn", &app, Some("b-1"), burn.clone()).await;
    assert_eq!(status, 202, "{sent}");
    assert_eq!(api.post("/v1/tokens/burn", &app, Some("b-1"), burn).await, (202, sent.clone()));
    let path = format!("/v1/wallets/op-user/operations/{}", sent["userOpHash"].as_str().unwrap());
    assert_eq!(api.included(&path, &app).await["success"], true);
    assert_eq!(token.balanceOf(account).call().await.unwrap(), whole(5), "burned once");
    assert_eq!(token.totalSupply().call().await.unwrap(), whole(8));
    let (status, body) =
        api.post("/v1/tokens/burn", &app, Some("b-2"), json!({"userId": "op-user", "amount": "6"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("operation_not_executable")), "{body}");
    let (status, body) =
        api.post("/v1/tokens/burn", &app, Some("b-3"), json!({"userId": "op-user", "amount": "1.5"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_amount")), "{body}");
    let issuer: Address = api.record["keys"]["issuer"].as_str().unwrap().parse().unwrap();
    let by_issuer = token.burnFrom(account, whole(1)).from(issuer).call().await;
    assert!(by_issuer.is_err(), "the issuer cannot burn a user's tokens");
    assert_eq!(token.balanceOf(account).call().await.unwrap(), whole(5));

    // The user's own routes.
    let user = api.token("user");
    let (status, own) = api.post("/wallet/operations/prepare", &user, None, calls.clone()).await;
    assert_eq!(status, 200, "{own}");
    let (status, sent) = api.post("/wallet/operations", &user, Some("u-1"), json!({"prepared": own["id"]})).await;
    assert_eq!(status, 202, "{sent}");
    let path = format!("/wallet/operations/{}", sent["userOpHash"].as_str().unwrap());
    assert_eq!(api.included(&path, &user).await["success"], true);
    assert_eq!(api.get(&status_path, &user).await.0, 403, "a user reads only under /wallet");
    // The demo user sends 1 PTKN of its own to op-other (minted to it first), once under its key.
    let (_, demo) = api.get("/v1/wallets/demo-user", &app).await;
    let demo: Address = demo["address"].as_str().unwrap().parse().unwrap();
    let mint = json!({"userId": "demo-user", "amount": "2"});
    assert!([200, 202].contains(&api.post("/mintToken", &app, Some("m-2"), mint).await.0));
    eventually("the demo mint", || async { (token.balanceOf(demo).call().await.unwrap() == whole(2)).then_some(()) })
        .await;
    let own = json!({"to_user_id": "op-other", "amount": "1"});
    let (status, sent) = api.post("/wallet/tokens/transfer", &user, Some("ut-1"), own.clone()).await;
    assert_eq!(status, 202, "{sent}");
    assert_eq!(api.post("/wallet/tokens/transfer", &user, Some("ut-1"), own.clone()).await, (202, sent.clone()));
    let path = format!("/wallet/operations/{}", sent["userOpHash"].as_str().unwrap());
    assert_eq!(api.included(&path, &user).await["success"], true);
    assert_eq!(token.balanceOf(demo).call().await.unwrap(), whole(1), "moved once, from the user's own account");
    assert_eq!(token.balanceOf(other).call().await.unwrap(), whole(4));
    assert_eq!(api.post("/wallet/tokens/transfer", &app, Some("ut-2"), own).await.0, 403, "the app uses its route");

    // A counterfactual wallet's second operation, sent while its deploying one is still pending, waits
    // for the deployment instead of carrying initCode again (which fails AA10 at bundle time).
    assert_eq!(api.post("/v1/wallets", &app, Some("w-quick"), json!({"user_id": "op-quick"})).await.0, 201);
    let one = json!({"calls": [{"to": recipient}]});
    let (first_status, first) = api.post("/v1/wallets/op-quick/operations", &app, Some("q-1"), one.clone()).await;
    let (second_status, second) = api.post("/v1/wallets/op-quick/operations", &app, Some("q-2"), one).await;
    assert_eq!((first_status, second_status), (202, 202), "{first} {second}");
    for sent in [first, second] {
        let path = format!("/v1/wallets/op-quick/operations/{}", sent["userOpHash"].as_str().unwrap());
        assert_eq!(api.included(&path, &app).await["success"], true, "{sent}");
    }

    // Refused, nothing sent: another user's prepared operation, the wrong role, malformed calls, no key,
    // no wallet, an expired prepared operation.
    let (_, theirs) = api.post("/v1/wallets/op-user/operations/prepare", &app, None, calls.clone()).await;
    let stolen = json!({"prepared": theirs["id"]});
    assert_eq!(api.post("/v1/wallets/op-other/operations", &app, Some("x-1"), stolen).await.0, 404);
    assert_eq!(
        api.get(&format!("/v1/wallets/op-other/operations/{}", theirs["userOpHash"].as_str().unwrap()), &app).await.0,
        404
    );
    assert_eq!(api.post("/v1/wallets/op-user/operations/prepare", &officer, None, calls.clone()).await.0, 403);
    assert_eq!(api.post("/v1/wallets/op-user/operations", &officer, Some("x-2"), calls.clone()).await.0, 403);
    let (status, body) = api.post("/v1/wallets/op-user/operations/prepare", &app, None, json!({"calls": []})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_calls")), "{body}");
    let bad_to = json!({"calls": [{"to": "0x12"}]});
    assert_eq!(api.post("/v1/wallets/op-user/operations/prepare", &app, None, bad_to).await.0, 400);
    assert_eq!(api.post("/v1/wallets/op-user/operations", &app, None, json!({"prepared": theirs["id"]})).await.0, 400);
    assert_eq!(api.post("/v1/wallets/nobody/operations/prepare", &app, None, calls.clone()).await.0, 404);

    let db = custody_db::connect_pool(api.record["database_url"].as_str().unwrap()).await.unwrap();
    sqlx::query("UPDATE operations_prepared SET expires_at = 0 WHERE id = $1")
        .bind(theirs["id"].as_str().unwrap())
        .execute(&db)
        .await
        .unwrap();
    let (status, body) =
        api.post("/v1/wallets/op-user/operations", &app, Some("x-3"), json!({"prepared": theirs["id"]})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (410, Some("operation_expired")), "{body}");
    let expired = format!("/v1/wallets/op-user/operations/{}", theirs["userOpHash"].as_str().unwrap());
    assert_eq!(api.get(&expired, &app).await.1["status"], "expired");
    stop(child);
}
