/// Errors from provisioning a SoftHSM2 token.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither `PKCS11_MODULE` nor a known install path points at the module.
    #[error(
        "SoftHSM2 PKCS#11 module not found (looked at {looked_at}); install it with `apt-get install softhsm2` or set PKCS11_MODULE"
    )]
    ModuleMissing {
        /// The paths that were tried.
        looked_at: String,
    },
    /// `softhsm2-util` is not on the PATH.
    #[error("softhsm2-util not found; install it with `apt-get install softhsm2`")]
    UtilMissing,
    /// `softhsm2-util --init-token` failed.
    #[error("softhsm2-util --init-token failed ({status}): {stderr}")]
    InitToken {
        /// Exit status.
        status: std::process::ExitStatus,
        /// What the tool printed on stderr (never contains the PINs).
        stderr: String,
    },
    /// Reading or writing the token directory failed.
    #[error("token directory {path}: {source}")]
    Io {
        /// The path involved.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `token.json` in a persistent directory is unreadable.
    #[error("token record {path} is corrupt: {source}")]
    Record {
        /// The record's path.
        path: std::path::PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}
