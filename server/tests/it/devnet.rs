//! `custody devnet`: starts, deploys with HSM keys, reuses its state, stops on SIGTERM.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use alloy::providers::{Provider, ProviderBuilder};
use alloy_primitives::Address;

fn start(dir: &Path) -> Child {
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

fn wait_for_record(child: &mut Child, path: &Path) -> serde_json::Value {
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

fn stop(mut child: Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "devnet exits cleanly on SIGTERM: {status}");
            return;
        }
        assert!(Instant::now() < deadline, "devnet did not stop within 30 s of SIGTERM");
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
