//! `custody keys …`: create, list, sign, rotate the KEK.

use clap::{Subcommand, ValueEnum};
use custody_signer::{KeyClass, KeyRecord};
use serde_json::json;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Create an infrastructure key (bundler, paymaster, issuer, anchor…).
    Create {
        /// Key class; only `infra` is created by name.
        #[arg(long, value_enum, default_value = "infra")]
        class: CreateClass,
        /// The key's name.
        #[arg(long)]
        name: String,
    },
    /// Create a user's owner key: generated in the HSM, stored wrapped under the KEK.
    CreateUser {
        /// The app's user id.
        #[arg(long)]
        user: String,
    },
    /// List keys: name or user, class, version, address, state.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Sign a 32-byte digest; prints the 65-byte signature r ‖ s ‖ v as 0x-hex.
    Sign {
        /// Infrastructure key name.
        #[arg(long, conflicts_with = "user", required_unless_present = "user")]
        name: Option<String>,
        /// Or a user id, for the user's owner key.
        #[arg(long)]
        user: Option<String>,
        /// The digest, 0x followed by 64 hex digits.
        #[arg(long)]
        digest: String,
    },
    /// Rotate the KEK: create the next version and re-wrap every user key under it.
    RotateKek,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum CreateClass {
    Infra,
}

#[expect(clippy::print_stdout, reason = "a command-line tool prints its answer")]
pub(crate) async fn run(cmd: KeysCommand, config: &Config) -> anyhow::Result<()> {
    if let KeysCommand::Sign { digest, .. } = &cmd {
        // Refuse bad input before touching the HSM.
        parse_digest(digest)?;
    }
    let pool = custody_db::connect_pool(&config.database.url).await?;
    crate::db::migrate(&pool).await?;
    let keyring = super::keyring_on(config, custody_signer::KeyStore::from_pool(pool.clone())).await?;
    let trail = crate::audit::Audit::new(pool);
    // Each key action is recorded before it is done ("requested") and after, with its outcome.
    let audit = |action: &'static str, target: String, outcome: &'static str, details: serde_json::Value| {
        let trail = trail.clone();
        async move { super::audit(&trail, action, &target, outcome, &details).await }
    };
    match cmd {
        KeysCommand::Create { class: CreateClass::Infra, name } => {
            audit("key.create", name.clone(), "requested", json!({"class": "infra"})).await?;
            let key = keyring.create_infra(&name).await?;
            audit("key.create", name, "created", json!({"class": "infra", "address": key.address()})).await?;
            println!("{}", row(&key));
        }
        KeysCommand::CreateUser { user } => {
            audit("key.create", format!("user:{user}"), "requested", json!({"class": "user"})).await?;
            let key = keyring.create_user(&user).await?;
            let details = json!({"class": "user", "address": key.address()});
            audit("key.create", format!("user:{user}"), "created", details).await?;
            println!("{}", row(&key));
        }
        KeysCommand::List { json } => {
            let keys = keyring.list(None).await?;
            if json {
                let list: Vec<_> = keys.iter().map(to_json).collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!("{:<24} {:<10} {:>7} {:<42} {:<9}", "NAME", "CLASS", "VERSION", "ADDRESS", "STATE");
                for key in &keys {
                    println!("{}", row(key));
                }
            }
        }
        KeysCommand::Sign { name, user, digest: text } => {
            let digest = parse_digest(&text)?;
            let (signer, target) = match (name, user) {
                (Some(name), _) => (keyring.signer(KeyClass::Infra, &name).await?, name),
                (None, Some(user)) => (keyring.signer(KeyClass::User, &user).await?, format!("user:{user}")),
                (None, None) => anyhow::bail!("give --name or --user"),
            };
            audit("key.sign", target.clone(), "requested", json!({"digest": text})).await?;
            let sig = signer.sign_digest_slice(&digest).await?;
            audit("key.sign", target, "signed", json!({"digest": text, "address": signer.address()})).await?;
            println!("0x{}", hex::encode(sig.as_bytes()));
        }
        KeysCommand::RotateKek => {
            audit("kek.rotate", "kek".into(), "requested", json!({})).await?;
            let (version, rewrapped) = keyring.rotate_kek().await?;
            audit("kek.rotate", "kek".into(), "rotated", json!({"version": version, "rewrapped": rewrapped})).await?;
            println!("KEK version {version} active; {rewrapped} user keys re-wrapped");
        }
    }
    Ok(())
}

fn parse_digest(text: &str) -> anyhow::Result<Vec<u8>> {
    let hex_part = text.strip_prefix("0x").unwrap_or(text);
    let bytes = hex::decode(hex_part).map_err(|e| anyhow::anyhow!("--digest is not hex: {e}"))?;
    if bytes.len() != 32 {
        anyhow::bail!("--digest must be 32 bytes (64 hex digits), got {}", bytes.len());
    }
    Ok(bytes)
}

fn row(key: &KeyRecord) -> String {
    let address = key.address().map(|a| a.to_checksum(None)).unwrap_or_else(|| "-".into());
    format!("{:<24} {:<10} {:>7} {:<42} {:<9}", key.name, key.class, key.version, address, key.state)
}

fn to_json(key: &KeyRecord) -> serde_json::Value {
    json!({
        "id": key.id,
        "name": key.name,
        "class": key.class.as_str(),
        "version": key.version,
        "backend": key.backend.as_str(),
        "address": key.address(),
        "kek_version": key.kek_version,
        "state": key.state.as_str(),
        "created_at": key.created_at,
    })
}
