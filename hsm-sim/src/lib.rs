//! SoftHSM2 harness: provisions PKCS#11 tokens in a directory of their own.
//!
//! ```text
//! SoftHsm::fresh()        temp dir ─► softhsm2.conf ─► softhsm2-util --init-token ─► removed on drop
//! SoftHsm::persistent(d)  d/      ─► softhsm2.conf ─► token (once) + d/token.json  ─► kept, reused
//! ```
//!
//! SoftHSM reads its configuration from `SOFTHSM2_CONF` when the module is
//! initialised, so a process uses one token directory: call [`SoftHsm::activate`]
//! before anything initialises the module (tests run one process each under
//! cargo-nextest). The module is found at `PKCS11_MODULE` or at Debian's path.

mod error;
mod token;

pub use error::Error;
pub use token::{SoftHsm, module_path};
