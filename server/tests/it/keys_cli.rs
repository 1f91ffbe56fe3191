//! `custody keys …` end to end: a fresh SoftHSM2 token and an SQLite file.

use std::process::{Command, Output};

use alloy_primitives::{Address, B256, Signature};
use custody_signer::test_utils::SoftHsm;
use secrecy::ExposeSecret;

struct Env {
    hsm: SoftHsm,
    db: String,
}

impl Env {
    fn new() -> Self {
        let hsm = SoftHsm::fresh("cli").unwrap();
        let db = format!("sqlite://{}", hsm.dir().join("custody.db").display());
        Self { hsm, db }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_custody"))
            .args(args)
            .env("SOFTHSM2_CONF", self.hsm.conf_path())
            .env("CUSTODY_PKCS11_MODULE", self.hsm.module())
            .env("CUSTODY_PKCS11_TOKEN", self.hsm.label())
            .env("CUSTODY_PKCS11_PIN", self.hsm.user_pin().expose_secret())
            .env("CUSTODY_DATABASE_URL", &self.db)
            .env_remove("CUSTODY_CONFIG")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

#[test]
fn create_list_and_sign() {
    let env = Env::new();
    env.ok(&["keys", "create", "--class", "infra", "--name", "bundler"]);
    env.ok(&["keys", "create-user", "--user", "user-7"]);

    let list: serde_json::Value = serde_json::from_str(&env.ok(&["keys", "list", "--json"])).unwrap();
    let keys = list.as_array().unwrap();
    let find = |class: &str, name: &str| {
        keys.iter()
            .find(|k| k["class"] == class && k["name"] == name)
            .unwrap_or_else(|| panic!("{class} {name} in {list}"))
    };
    let bundler: Address = find("infra", "bundler")["address"].as_str().unwrap().parse().unwrap();
    let user: Address = find("user", "user-7")["address"].as_str().unwrap().parse().unwrap();
    assert_eq!(find("user", "user-7")["kek_version"], 1);
    assert!(keys.iter().any(|k| k["class"] == "kek") && keys.iter().any(|k| k["class"] == "pseudonym"));
    let table = env.ok(&["keys", "list"]);
    assert!(table.contains("bundler") && table.contains(&bundler.to_checksum(None)), "{table}");

    let digest = B256::repeat_byte(0x5a);
    for (flag, value, address) in [("--name", "bundler", bundler), ("--user", "user-7", user)] {
        let out = env.ok(&["keys", "sign", flag, value, "--digest", &digest.to_string()]);
        let bytes = alloy_primitives::hex::decode(out.trim()).unwrap();
        assert_eq!(bytes.len(), 65);
        let sig = Signature::from_raw(&bytes).unwrap();
        assert_eq!(sig.recover_address_from_prehash(&digest).unwrap(), address);
    }

    let out = env.ok(&["keys", "rotate-kek"]);
    assert!(out.contains("KEK version 2") && out.contains("1 user keys"), "{out}");
    let out = env.ok(&["keys", "sign", "--user", "user-7", "--digest", &digest.to_string()]);
    let sig = Signature::from_raw(&alloy_primitives::hex::decode(out.trim()).unwrap()).unwrap();
    assert_eq!(sig.recover_address_from_prehash(&digest).unwrap(), user);
}

#[test]
fn bad_input_is_a_clear_error_and_changes_nothing() {
    let env = Env::new();
    env.ok(&["keys", "create", "--name", "issuer"]);
    let before = env.ok(&["keys", "list", "--json"]);

    for (args, expect) in [
        (vec!["keys", "sign", "--name", "issuer", "--digest", "0x1234"], "32 bytes"),
        (vec!["keys", "sign", "--name", "issuer", "--digest", "zz"], "not hex"),
        (vec!["keys", "sign", "--name", "nope", "--digest", &B256::ZERO.to_string()], "not found"),
        (vec!["keys", "create", "--name", "issuer"], "already exists"),
    ] {
        let out = env.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
    }
    assert_eq!(env.ok(&["keys", "list", "--json"]), before);

    // A wrong PIN never appears in the error.
    let out = Command::new(env!("CARGO_BIN_EXE_custody"))
        .args(["keys", "list"])
        .env("SOFTHSM2_CONF", env.hsm.conf_path())
        .env("CUSTODY_PKCS11_MODULE", env.hsm.module())
        .env("CUSTODY_PKCS11_TOKEN", env.hsm.label())
        .env("CUSTODY_PKCS11_PIN", "99999999")
        .env("CUSTODY_DATABASE_URL", &env.db)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("PIN is incorrect") && !stderr.contains("99999999"), "{stderr}");
}

/// `GET /v1/admin/keys` (officer) pages through the same keys `custody keys list` shows, without material.
#[tokio::test]
async fn officers_page_through_every_key() {
    let s = crate::service::Service::start(custody_db::test_utils::Engine::Sqlite).await;
    let app = crate::service::token("backend", &["app"]);
    for user in ["k1", "k2", "k3"] {
        assert_eq!(s.post("/v1/wallets", &app, Some(user), &serde_json::json!({"user_id": user})).await.0, 201);
    }
    let officer = crate::service::token("officer-1", &["officer"]);
    let mut seen = Vec::new();
    let mut path = "/v1/admin/keys?limit=2".to_owned();
    loop {
        let (status, page) = s.get(&path, Some(&officer)).await;
        assert_eq!(status, 200, "{page}");
        for key in page["keys"].as_array().unwrap() {
            assert!(key.get("wrapped").is_none() && key.get("publicKey").is_none(), "no material: {key}");
            seen.push(key["id"].as_str().unwrap().to_owned());
        }
        match page["nextAfter"].as_str() {
            Some(after) => path = format!("/v1/admin/keys?limit=2&after={after}"),
            None => break,
        }
    }
    let out = s.cli(&["keys", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut listed: Vec<String> =
        listed.as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap().to_owned()).collect();
    listed.sort();
    assert_eq!(seen, listed, "every key once, in id order, as the CLI lists them");
    let (_, users) = s.get("/v1/admin/keys?class=user", Some(&officer)).await;
    let names: Vec<_> =
        users["keys"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names.len(), 3, "{users}");
    assert!(users["keys"].as_array().unwrap().iter().all(|k| k["class"] == "user" && k["address"].is_string()));
    assert_eq!(s.get("/v1/admin/keys", Some(&app)).await.0, 403);
    for bad in ["limit=0", "class=root", "limit=1001", "x=1"] {
        assert_eq!(s.get(&format!("/v1/admin/keys?{bad}"), Some(&officer)).await.0, 400, "{bad}");
    }
    s.stop();
}
