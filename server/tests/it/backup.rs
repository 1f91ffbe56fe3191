//! `custody backup` and `custody restore` on the devnet: a backup taken while the service runs, the
//! machine's database and token lost, the backup restored into the same layout; the restored service has
//! the same wallets and DIDs, signs with the same owner keys, its audit trail verifies against the
//! checkpoints anchored on-chain, and issuance resumes without minting anything twice.

use std::{path::Path, process::Command};

use alloy::primitives::{Address, U256};
use alloy::providers::ProviderBuilder;
use custody_contracts::bindings::peruri_token::PeruriToken;
use serde_json::{Value, json};

use crate::devnet::{eventually, start, stop, wait_for_record};
use crate::operations::Api;

/// `custody <args>` with the devnet's environment (custody.env) and its chain and deployment record.
fn custody(dir: &Path, record: &Value, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_custody"));
    let env = std::fs::read_to_string(dir.join("custody.env")).unwrap();
    for line in env.lines().filter_map(|l| l.strip_prefix("export ")) {
        let (key, value) = line.split_once('=').unwrap();
        command.env(key, value);
    }
    command
        .env("CUSTODY_CHAIN_RPC_URL", record["rpc_url"].as_str().unwrap())
        .env("CUSTODY_DEPLOYMENT_FILE", dir.join("deployment.json"))
        .args(args)
        .output()
        .unwrap()
}

fn succeeded(out: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    text
}

#[tokio::test]
async fn a_restored_service_has_the_same_wallets_keys_and_trail_and_mints_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let backup_dir = backup.path().join("b1");
    let record_path = dir.path().join("devnet.json");
    let mut child = start(dir.path());
    let api = Api::of(wait_for_record(&mut child, &record_path));
    let app = api.token("app");
    let chain = ProviderBuilder::new().connect_http(api.record["rpc_url"].as_str().unwrap().parse().unwrap());
    let ptkn: Address = api.record["contracts"]["PeruriToken"].as_str().unwrap().parse().unwrap();
    let token = PeruriToken::new(ptkn, chain.clone());
    let whole = |n: u64| U256::from(n) * U256::from(10u64).pow(U256::from(18));

    let (status, wallet) = api.post("/v1/wallets", &app, Some("w-1"), json!({"user_id": "bk-user"})).await;
    assert_eq!(status, 201, "{wallet}");
    let account: Address = wallet["address"].as_str().unwrap().parse().unwrap();
    let did = wallet["did"].as_str().unwrap().to_owned();
    let (_, document) = api.get(&format!("/1.0/identifiers/{did}"), &app).await;
    // A mint requested just before the backup: in flight or confirmed in the backup, whichever the worker
    // reached; either way the restored worker must not mint it again.
    let mint = json!({"userId": "bk-user", "amount": "5", "reason": "welcome"});
    let (status, minted) = api.post("/mintToken", &app, Some("m-1"), mint).await;
    assert!([200, 202].contains(&status), "{minted}");
    eventually("the audit checkpoint of the wallet's DID", || async {
        let out = custody(dir.path(), &api.record, &["audit", "verify"]);
        let text = succeeded(&out);
        (!text.contains("on-chain checkpoints match: 0")).then_some(())
    })
    .await;

    // Online: the service keeps running while the backup is written.
    let out = custody(dir.path(), &api.record, &["backup", "--out", backup_dir.to_str().unwrap()]);
    let said = succeeded(&out);
    assert!(said.contains("SoftHSM2"), "{said}");
    let manifest: Value = serde_json::from_slice(&std::fs::read(backup_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["database"], "sqlite");
    assert!(manifest["files"].as_object().unwrap().keys().any(|f| f.starts_with("softhsm-tokens/")), "{manifest}");
    eventually("the mint", || async { (token.balanceOf(account).call().await.unwrap() == whole(5)).then_some(()) })
        .await;
    stop(child);

    // The machine loses its database and its token; the chain (the network) keeps running elsewhere.
    let tokens = dir.path().join("softhsm").join("tokens");
    std::fs::remove_dir_all(&tokens).unwrap();
    std::fs::create_dir(&tokens).unwrap();
    for file in ["custody.db", "custody.db-wal", "custody.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(file));
    }

    // A backup that was tampered with is refused, and nothing is written.
    let tampered = backup.path().join("tampered");
    crate::backup::copy(&backup_dir, &tampered);
    std::fs::write(tampered.join("deployment.json"), b"{}").unwrap();
    let out = custody(dir.path(), &api.record, &["restore", "--from", tampered.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("deployment.json is missing or changed"), "{out:?}");
    assert!(!dir.path().join("custody.db").exists() && std::fs::read_dir(&tokens).unwrap().next().is_none());

    let out = custody(dir.path(), &api.record, &["restore", "--from", backup_dir.to_str().unwrap()]);
    let said = succeeded(&out);
    assert!(said.contains("verified"), "{said}");
    // Restoring twice is refused: the database is there now.
    let again = custody(dir.path(), &api.record, &["restore", "--from", backup_dir.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("restore into a new database"), "{again:?}");

    std::fs::remove_file(&record_path).unwrap();
    let mut child = start(dir.path());
    let api = Api::of(wait_for_record(&mut child, &record_path));
    let app = api.token("app");
    // The chain's node listens on a new port after a restart.
    let chain = ProviderBuilder::new().connect_http(api.record["rpc_url"].as_str().unwrap().parse().unwrap());
    let token = PeruriToken::new(ptkn, chain);
    let (_, same) = api.get("/v1/wallets/bk-user", &app).await;
    assert_eq!((same["address"].as_str(), same["did"].as_str()), (Some(&*account.to_string()), Some(&*did)));
    assert_eq!(api.get(&format!("/1.0/identifiers/{did}"), &app).await.1, document, "the same DID document");
    let out = custody(dir.path(), &api.record, &["audit", "verify"]);
    let said = succeeded(&out);
    assert!(said.contains("audit trail intact") && !said.contains("match: 0"), "{said}");

    // Issuance resumes: the mint in flight at the backup confirmed once, a new one adds to it.
    let id = minted["id"].as_str().unwrap();
    eventually("the restored mint's confirmation", || async {
        (api.get(&format!("/activity/{id}"), &app).await.1["status"] == "confirmed").then_some(())
    })
    .await;
    assert_eq!(token.balanceOf(account).call().await.unwrap(), whole(5), "nothing minted twice");
    let (status, _) = api.post("/mintToken", &app, Some("m-2"), json!({"userId": "bk-user", "amount": "2"})).await;
    assert!([200, 202].contains(&status));
    eventually("the new mint", || async { (token.balanceOf(account).call().await.unwrap() == whole(7)).then_some(()) })
        .await;

    // The restored owner key signs for the same account: its first operation deploys and runs.
    let calls = json!({"calls": [{"to": Address::repeat_byte(0x5e)}]});
    let (status, sent) = api.post("/v1/wallets/bk-user/operations", &app, Some("o-1"), calls).await;
    assert_eq!(status, 202, "{sent}");
    let path = format!("/v1/wallets/bk-user/operations/{}", sent["userOpHash"].as_str().unwrap());
    assert_eq!(api.included(&path, &app).await["success"], true);
    stop(child);
}

/// Copies a directory tree (the test's own copy of a backup).
pub(crate) fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// PostgreSQL: `pg_dump` into the backup, `pg_restore` into a new, empty database; the SoftHSM token into
/// an empty token directory. The restored keys are the same and sign; the trail verifies; a second
/// restore into the now full database is refused.
#[tokio::test]
async fn postgres_backup_restores_into_an_empty_database_and_token_directory() {
    use crate::service::{Service, token};
    use custody_db::test_utils::{Engine, TestDb};
    let mut s = Service::start(Engine::Postgres).await;
    let (status, _) =
        s.post("/v1/wallets", &token("backend", &["app"]), Some("w-1"), &json!({"user_id": "pg-user"})).await;
    assert_eq!(status, 201);
    let keys = |out: std::process::Output| -> Value { serde_json::from_str(&succeeded(&out)).unwrap() };
    let before = keys(s.cli(&["keys", "list", "--json"]));
    let backup = tempfile::tempdir().unwrap();
    let out = backup.path().join("b");
    succeeded(&s.cli(&["backup", "--out", out.to_str().unwrap()]));
    assert!(out.join("database.pgdump").exists());
    s.kill();

    let fresh = TestDb::new(Engine::Postgres).await;
    let machine = tempfile::tempdir().unwrap();
    let conf = machine.path().join("softhsm2.conf");
    let tokendir = machine.path().join("tokens");
    std::fs::write(&conf, format!("directories.tokendir = {}\nobjectstore.backend = file\n", tokendir.display()))
        .unwrap();
    let on_new_machine = |args: &[&str]| {
        let mut command = s.command();
        command.env("CUSTODY_DATABASE_URL", &fresh.url).env("SOFTHSM2_CONF", &conf).args(args);
        command.output().unwrap()
    };
    succeeded(&on_new_machine(&["restore", "--from", out.to_str().unwrap()]));
    let after = keys(on_new_machine(&["keys", "list", "--json"]));
    assert_eq!(after, before, "the same keys, versions and addresses");
    let user = after
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "pg-user" && k["class"] == "user")
        .expect("the user's key");
    let digest = alloy::primitives::B256::repeat_byte(0x11);
    let signed = succeeded(&on_new_machine(&["keys", "sign", "--user", "pg-user", "--digest", &digest.to_string()]));
    let signature: alloy::primitives::Signature = signed.trim().parse().unwrap();
    let signer = signature.recover_address_from_prehash(&digest).unwrap();
    assert_eq!(Some(signer), user["address"].as_str().and_then(|a| a.parse().ok()), "the restored key signs as before");
    assert!(succeeded(&on_new_machine(&["audit", "verify"])).contains("audit trail intact"));
    let again = on_new_machine(&["restore", "--from", out.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("restore into an empty database"), "{again:?}");
}
