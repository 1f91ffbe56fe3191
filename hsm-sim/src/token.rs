use std::{
    fmt,
    path::{Path, PathBuf},
    process::Command,
};

use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::Error;

/// Where Debian (and most distributions) install the SoftHSM2 module.
const KNOWN_MODULE_PATHS: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

/// The PKCS#11 module: `PKCS11_MODULE` when set, else the first known path that exists.
pub fn module_path() -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os("PKCS11_MODULE") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(Error::ModuleMissing { looked_at: format!("PKCS11_MODULE={}", path.display()) })
        };
    }
    KNOWN_MODULE_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| Error::ModuleMissing { looked_at: KNOWN_MODULE_PATHS.join(", ") })
}

/// A SoftHSM2 token in a directory of its own.
///
/// A fresh token lives in a temporary directory that is removed on drop; a
/// persistent one is kept and reused. `Debug` shows the label and directory, never
/// the PINs.
pub struct SoftHsm {
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    module: PathBuf,
    label: String,
    user_pin: SecretString,
    so_pin: SecretString,
}

/// What a persistent token directory remembers (devnet only: PINs in a 0600 file).
#[derive(Serialize, Deserialize)]
struct TokenRecord {
    label: String,
    user_pin: String,
    so_pin: String,
}

impl SoftHsm {
    /// A fresh token with random PINs in a temporary directory, removed on drop.
    pub fn fresh(label: &str) -> Result<Self, Error> {
        let temp = tempfile::Builder::new()
            .prefix("softhsm-")
            .tempdir()
            .map_err(|source| Error::Io { path: std::env::temp_dir(), source })?;
        let dir = temp.path().to_path_buf();
        let mut hsm = Self::init(&dir, label, random_pin(), random_pin())?;
        hsm._temp = Some(temp);
        Ok(hsm)
    }

    /// The token under `dir`, created with random PINs on first use and reused after.
    pub fn persistent(dir: &Path, label: &str) -> Result<Self, Error> {
        let record_path = dir.join("token.json");
        if record_path.is_file() {
            let text = std::fs::read_to_string(&record_path)
                .map_err(|source| Error::Io { path: record_path.clone(), source })?;
            let record: TokenRecord =
                serde_json::from_str(&text).map_err(|source| Error::Record { path: record_path.clone(), source })?;
            return Ok(Self {
                dir: dir.to_path_buf(),
                _temp: None,
                module: module_path()?,
                label: record.label,
                user_pin: record.user_pin.into(),
                so_pin: record.so_pin.into(),
            });
        }
        let hsm = Self::init(dir, label, random_pin(), random_pin())?;
        let record = TokenRecord {
            label: hsm.label.clone(),
            user_pin: hsm.user_pin.expose_secret().to_owned(),
            so_pin: hsm.so_pin.expose_secret().to_owned(),
        };
        let text = serde_json::to_string_pretty(&record)
            .map_err(|source| Error::Record { path: record_path.clone(), source })?;
        write_private(&record_path, text.as_bytes())?;
        Ok(hsm)
    }

    fn init(dir: &Path, label: &str, user_pin: SecretString, so_pin: SecretString) -> Result<Self, Error> {
        let module = module_path()?;
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).map_err(|source| Error::Io { path: tokens.clone(), source })?;
        let conf = format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        );
        let conf_path = dir.join("softhsm2.conf");
        std::fs::write(&conf_path, conf).map_err(|source| Error::Io { path: conf_path.clone(), source })?;

        let output = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf_path)
            .args(["--init-token", "--free", "--label", label, "--so-pin"])
            .arg(so_pin.expose_secret())
            .arg("--pin")
            .arg(user_pin.expose_secret())
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::UtilMissing,
                _ => Error::Io { path: PathBuf::from("softhsm2-util"), source: e },
            })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr)
                .replace(user_pin.expose_secret(), "***")
                .replace(so_pin.expose_secret(), "***");
            return Err(Error::InitToken { status: output.status, stderr });
        }
        Ok(Self { dir: dir.to_path_buf(), _temp: None, module, label: label.to_owned(), user_pin, so_pin })
    }

    /// Points this process's SoftHSM at this token's configuration.
    ///
    /// Call it before any thread initialises the PKCS#11 module (at the top of a
    /// test or of `main`): SoftHSM reads `SOFTHSM2_CONF` only in `C_Initialize`.
    #[expect(unsafe_code, reason = "setting SOFTHSM2_CONF is the only way to point SoftHSM at a token")]
    pub fn activate(&self) {
        // SAFETY: called before the module or other threads read the environment, as documented.
        unsafe { std::env::set_var("SOFTHSM2_CONF", self.conf_path()) };
    }

    /// The directory that holds the token.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `softhsm2.conf` to set as `SOFTHSM2_CONF`.
    pub fn conf_path(&self) -> PathBuf {
        self.dir.join("softhsm2.conf")
    }

    /// The PKCS#11 module's path.
    pub fn module(&self) -> &Path {
        &self.module
    }

    /// The token label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The user PIN.
    pub fn user_pin(&self) -> &SecretString {
        &self.user_pin
    }

    /// The security officer PIN.
    pub fn so_pin(&self) -> &SecretString {
        &self.so_pin
    }
}

impl fmt::Debug for SoftHsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftHsm").field("label", &self.label).field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn random_pin() -> SecretString {
    let mut bytes = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes).into()
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_token_is_removed_on_drop() {
        let hsm = SoftHsm::fresh("t").expect("softhsm2 must be installed (apt-get install softhsm2)");
        let dir = hsm.dir().to_path_buf();
        assert!(dir.join("softhsm2.conf").is_file());
        assert!(std::fs::read_dir(dir.join("tokens")).expect("tokens dir").next().is_some());
        assert!(!format!("{hsm:?}").contains(hsm.user_pin().expose_secret()));
        drop(hsm);
        assert!(!dir.exists());
    }

    #[test]
    fn persistent_token_is_reused() {
        let root = tempfile::tempdir().expect("tempdir");
        let first = SoftHsm::persistent(root.path(), "devnet").expect("create");
        let pin = first.user_pin().expose_secret().to_owned();
        let second = SoftHsm::persistent(root.path(), "devnet").expect("reuse");
        assert_eq!(second.user_pin().expose_secret(), pin);
        assert_eq!(second.label(), "devnet");
        let tokens = std::fs::read_dir(root.path().join("tokens")).expect("tokens").count();
        assert_eq!(tokens, 1, "reuse must not initialise a second token");
    }
}
