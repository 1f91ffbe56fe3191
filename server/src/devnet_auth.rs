//! The devnet's token issuer: an ES256 key pair under `.devnet` and ready-made tokens.

use std::path::Path;

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::json;

/// Issuer and audience of devnet tokens.
pub(crate) const ISSUER: &str = "https://devnet.peruri.invalid";
pub(crate) const AUDIENCE: &str = "peruri-custody";

/// The devnet's signing key (created on first use, 0600) and its public PEM.
pub(crate) fn key_pair(dir: &Path) -> anyhow::Result<(String, String)> {
    let private_path = dir.join("jwt-es256.pem");
    let public_path = dir.join("jwt-es256.pub.pem");
    if !private_path.is_file() {
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let private = secret.to_pkcs8_pem(LineEnding::LF).context("encoding the devnet JWT key")?;
        let public = secret.public_key().to_public_key_pem(LineEnding::LF).context("encoding the devnet JWT key")?;
        write_private(&private_path, private.as_bytes())?;
        std::fs::write(&public_path, public)?;
    }
    Ok((std::fs::read_to_string(&private_path)?, std::fs::read_to_string(&public_path)?))
}

/// A 30-day token for `sub` with `roles`.
pub(crate) fn token(private_pem: &str, sub: &str, roles: &[&str]) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let claims = json!({"sub": sub, "roles": roles, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 30 * 86_400});
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("devnet".into());
    Ok(encode(&header, &claims, &EncodingKey::from_ec_pem(private_pem.as_bytes())?)?)
}

/// Writes (or rewrites) a file only its owner can read: it holds devnet secrets. The mode is set on an
/// existing file too (the mode given at open applies only to a file it creates), before the bytes go in.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::{
        io::Write,
        os::unix::fs::{OpenOptionsExt, PermissionsExt},
    };
    let context = || format!("writing {}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(context)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).with_context(context)?;
    file.write_all(bytes).with_context(context)?;
    Ok(())
}
