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
    let keyring = super::keyring(config).await?;
    match cmd {
        KeysCommand::Create { class: CreateClass::Infra, name } => {
            let key = keyring.create_infra(&name).await?;
            println!("{}", row(&key));
        }
        KeysCommand::CreateUser { user } => {
            let key = keyring.create_user(&user).await?;
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
        KeysCommand::Sign { name, user, digest } => {
            let digest = parse_digest(&digest)?;
            let signer = match (name, user) {
                (Some(name), _) => keyring.signer(KeyClass::Infra, &name).await?,
                (None, Some(user)) => keyring.signer(KeyClass::User, &user).await?,
                (None, None) => anyhow::bail!("give --name or --user"),
            };
            let sig = signer.sign_digest_slice(&digest).await?;
            println!("0x{}", hex::encode(sig.as_bytes()));
        }
        KeysCommand::RotateKek => {
            let (version, rewrapped) = keyring.rotate_kek().await?;
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
