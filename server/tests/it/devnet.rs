//! `custody devnet`: starts, deploys with HSM keys, reuses its state (the chain too), stops on SIGTERM and
//! SIGINT.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use alloy::providers::{Provider, ProviderBuilder};
use alloy_primitives::Address;

pub(crate) fn start(dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_custody"))
        .args(["devnet", "--dir"])
        .arg(dir)
        .args(["--block-time", "0", "--listen", "127.0.0.1:0"])
        .env_remove("SOFTHSM2_CONF")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

pub(crate) fn wait_for_record(child: &mut Child, path: &Path) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("devnet exited early ({status}): {err}");
        }
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(json) = serde_json::from_str(&text)
        {
            return json;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("devnet.json did not appear within 120 s");
}

/// Asks `check` every 250 ms until it answers `Some`, for at most 30 s; `what` says what was awaited.
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(done) = check().await {
            return done;
        }
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub(crate) fn stop(child: Child) {
    stop_with(child, "TERM");
}

/// Sends `signal` (TERM, INT) and waits for a clean exit.
fn stop_with(mut child: Child, signal: &str) {
    let status = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "devnet exits cleanly on SIG{signal}: {status}");
            return;
        }
        assert!(Instant::now() < deadline, "devnet did not stop within 60 s of SIG{signal}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn mode(path: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions()) & 0o777
}

#[tokio::test]
async fn devnet_deploys_with_hsm_keys_and_reuses_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let record_path = dir.path().join("devnet.json");
    // An environment file left readable by others (an older devnet wrote it so) is made private.
    let env_path = dir.path().join("custody.env");
    std::fs::write(&env_path, "stale").unwrap();
    std::fs::set_permissions(&env_path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();

    let mut child = start(dir.path());
    let first = wait_for_record(&mut child, &record_path);
    for secret in ["devnet.json", "custody.env", "jwt-es256.pem"] {
        assert_eq!(mode(&dir.path().join(secret)), 0o600, "{secret} is readable by its owner only");
    }
    let rpc = first["rpc_url"].as_str().unwrap().to_owned();
    let provider = ProviderBuilder::new().connect_http(rpc.parse().unwrap());
    assert_eq!(provider.get_chain_id().await.unwrap(), 1337);
    let contracts = first["contracts"].as_object().unwrap();
    let ep: Address = contracts["EntryPointV07"].as_str().unwrap().parse().unwrap();
    assert_eq!(ep, "0x0000000071727De22E5E9d8BAf0edAc6f37da032".parse::<Address>().unwrap());
    for (name, address) in contracts {
        let code = provider.get_code_at(address.as_str().unwrap().parse().unwrap()).await.unwrap();
        assert!(!code.is_empty(), "{name} has no code");
    }
    let env = std::fs::read_to_string(dir.path().join("custody.env")).unwrap();
    assert!(env.contains("CUSTODY_PKCS11_PIN="));

    // The API with its ready-made tokens: create the demo user's wallet and read it as the user.
    let api = first["api_url"].as_str().unwrap();
    let http = reqwest::Client::new();
    let ready: serde_json::Value = http.get(format!("{api}/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["checks"]["chain"], "ok", "{ready}");
    let tokens = &first["tokens"];
    for name in ["app", "officer", "officer2", "auditor", "user"] {
        assert!(tokens[name].as_str().is_some_and(|t| t.split('.').count() == 3), "token {name}");
    }
    let resp = http
        .post(format!("{api}/v1/wallets"))
        .bearer_auth(tokens["app"].as_str().unwrap())
        .header("Idempotency-Key", "demo-1")
        .json(&serde_json::json!({"user_id": first["demo_user"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let wallet: serde_json::Value = resp.json().await.unwrap();
    let status: serde_json::Value = http
        .get(format!("{api}/wallet/status"))
        .bearer_auth(tokens["user"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["walletAddress"], wallet["address"]);
    assert_eq!(status["ready"], true);

    // The bundler answers ERC-7769 at bundler_rpc_url, both EntryPoints, debug methods on.
    let bundler = first["bundler_rpc_url"].as_str().unwrap();
    let call = |method: &str| serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": []});
    let answer: serde_json::Value =
        http.post(bundler).json(&call("eth_supportedEntryPoints")).send().await.unwrap().json().await.unwrap();
    let eps: Vec<Address> = serde_json::from_value(answer["result"].clone()).expect("two addresses");
    assert!(eps.contains(&ep) && eps.len() == 2, "{answer}");
    let answer: serde_json::Value =
        http.post(bundler).json(&call("eth_chainId")).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["result"], "0x539", "{answer}");
    let dump = serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "debug_bundler_dumpMempool", "params": [ep]});
    let answer: serde_json::Value = http.post(bundler).json(&dump).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["result"], serde_json::json!([]), "{answer}");
    stop(child);
    // The chain went with it.
    assert!(provider.get_chain_id().await.is_err(), "the local chain must stop with the devnet");

    std::fs::remove_file(&record_path).unwrap();
    let mut child = start(dir.path());
    let second = wait_for_record(&mut child, &record_path);
    assert_eq!(first["keys"], second["keys"], "a second run reuses the token and its keys");
    assert_eq!(first["contracts"], second["contracts"], "the same deterministic addresses");
    let api = second["api_url"].as_str().unwrap();
    let resp = reqwest::Client::new()
        .get(format!("{api}/v1/wallets/demo-user"))
        .bearer_auth(second["tokens"]["app"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the wallet made in the first run is still there");
    stop(child);
}

/// A restart keeps every confirmed transaction and balance on the chain: the mint's receipt is still there,
/// PTKN's balance on chain and the API's agree, and the issuer goes on minting from where it was. Without
/// its chain state the devnet refuses to start and says how to start over.
#[tokio::test]
async fn devnet_restart_keeps_confirmed_transactions_and_balances() {
    use custody_contracts::bindings::peruri_token::PeruriToken;
    let dir = tempfile::tempdir().unwrap();
    let record_path = dir.path().join("devnet.json");
    let ptkn = |whole: u128| alloy_primitives::U256::from(whole * 10u128.pow(18));

    let mut child = start(dir.path());
    let first = wait_for_record(&mut child, &record_path);
    let api = Api::of(&first);
    let (status, wallet) = api.post("/v1/wallets", "w1", serde_json::json!({"user_id": "u1"})).await;
    assert_eq!(status, 201, "{wallet}");
    let account: Address = wallet["address"].as_str().unwrap().parse().unwrap();
    let view = api.mint_and_confirm("m1", 100).await;
    let tx_hash: alloy_primitives::B256 = view["txHash"].as_str().unwrap().parse().unwrap();
    api.wait_balance("u1", ptkn(100)).await;
    stop_with(child, "INT");

    std::fs::remove_file(&record_path).unwrap();
    let mut child = start(dir.path());
    let second = wait_for_record(&mut child, &record_path);
    assert_eq!(first["contracts"], second["contracts"], "the deployment is kept");
    let provider = ProviderBuilder::new().connect_http(second["rpc_url"].as_str().unwrap().parse().unwrap());
    let receipt = provider.get_transaction_receipt(tx_hash).await.unwrap();
    assert!(receipt.as_ref().is_some_and(|r| r.status()), "the confirmed mint {tx_hash} is on the chain: {receipt:?}");
    let token = PeruriToken::new(first["contracts"]["PeruriToken"].as_str().unwrap().parse().unwrap(), &provider);
    assert_eq!(token.balanceOf(account).call().await.unwrap(), ptkn(100), "the balance is on the chain");
    let api = Api::of(&second);
    let again = api.get(&format!("/activity/{}", view["id"].as_str().unwrap())).await;
    assert_eq!((&again["status"], &again["txHash"]), (&view["status"], &view["txHash"]), "{again}");
    let tokens = api.get("/v1/wallets/u1/tokens").await;
    assert_eq!(tokens["balance"], ptkn(100).to_string(), "{tokens}");

    // The chain goes on: the issuer's next transaction follows its last one.
    api.mint_and_confirm("m2", 5).await;
    assert_eq!(token.balanceOf(account).call().await.unwrap(), ptkn(105));
    api.wait_balance("u1", ptkn(105)).await;
    stop_with(child, "INT");

    // The chain state gone, the database is of a chain that is no more: refused, with what to do.
    std::fs::remove_file(dir.path().join("chain-state.json")).unwrap();
    let err = crate::service::refusal(start(dir.path()), "the devnet without its chain state");
    assert!(err.contains("there is no chain state") && err.contains("rm -rf"), "{err}");
    assert!(!dir.path().join("chain-state.json").exists(), "a refused start leaves no new chain behind");
}

/// The devnet's API is for this machine: another address is refused before anything starts.
#[test]
fn devnet_refuses_a_non_loopback_listen() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_custody"))
        .args(["devnet", "--dir"])
        .arg(dir.path())
        .args(["--listen", "0.0.0.0:8080"])
        .env_remove("SOFTHSM2_CONF")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--listen 0.0.0.0:8080 is not a loopback address"), "{err}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing is created");
}

/// The devnet's API with its app token.
struct Api {
    url: String,
    app: String,
    http: reqwest::Client,
}

impl Api {
    fn of(record: &serde_json::Value) -> Self {
        let (url, app) = (record["api_url"].as_str().unwrap(), record["tokens"]["app"].as_str().unwrap());
        Self { url: url.to_owned(), app: app.to_owned(), http: reqwest::Client::new() }
    }

    async fn post(&self, path: &str, key: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let req = self.http.post(format!("{}{path}", self.url)).bearer_auth(&self.app).header("Idempotency-Key", key);
        let resp = req.json(&body).send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> serde_json::Value {
        let resp = self.http.get(format!("{}{path}", self.url)).bearer_auth(&self.app).send().await.unwrap();
        resp.json().await.unwrap()
    }

    /// Mints `amount` PTKN to u1 and waits until the activity is confirmed; its view.
    async fn mint_and_confirm(&self, key: &str, amount: u64) -> serde_json::Value {
        let body = serde_json::json!({"userId": "u1", "amount": amount, "reason": "x"});
        let (status, minted) = self.post("/mintToken", key, body).await;
        assert!(status == 200 || status == 202, "{status} {minted}");
        let id = minted["id"].as_str().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let view = self.get(&format!("/activity/{id}")).await;
            if view["status"] == "confirmed" {
                return view;
            }
            assert_ne!(view["status"], "failed", "{view}");
            assert!(Instant::now() < deadline, "not confirmed within 60 s: {view}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the API shows `balance` for `user`.
    async fn wait_balance(&self, user: &str, balance: alloy_primitives::U256) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let tokens = self.get(&format!("/v1/wallets/{user}/tokens")).await;
            if tokens["balance"] == balance.to_string() {
                return;
            }
            assert!(Instant::now() < deadline, "balance not {balance} within 60 s: {tokens}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
