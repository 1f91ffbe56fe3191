//! Solidity contracts of Peruri Custody: committed artifacts, alloy bindings, UserOperation hashing,
//! deterministic deployment, the Besu network kit and (feature `test-utils`) the local chain harness.
//! See `shared/DESIGN.md` §3–4 and `docs/besu.md`.
//!
//! ```text
//!  solidity/*.sol ──node build.mjs (solc, standard JSON)──► artifacts/*.json (committed)
//!                                                              │ sol! / include_str!
//!                                                              ▼
//!   bindings ◄── userop (PackedUserOperation, userOpHash v0.7/v0.8) ── account / sponsorship helpers
//!      │
//!   deploy: deterministic deployment proxy ──► EntryPoint v0.7/v0.8 (canonical addresses)
//!                                          └─► factories, paymasters, PTKN, PBADGE, PLOG (CREATE2 per DeployConfig)
//!                                          ──► Deployment {chainId, block, contracts} (JSON)
//!   besu: IBFT 2.0 genesis (alloc = deterministic deployer) ── the same alloc ──► test_utils::LocalChain (Hardhat or Anvil)
//! ```

pub mod account;
pub mod artifacts;
pub mod besu;
pub mod bindings;
pub mod deploy;
mod deployment;
pub mod entry_point;
mod error;
pub mod sponsorship;
#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;
pub mod userop;

pub use deploy::{DETERMINISTIC_DEPLOYER, DeployConfig};
pub use deployment::{Contracts, Deployment};
pub use entry_point::{EntryPointVersion, IEntryPoint, PackedUserOperation};
#[cfg(any(test, feature = "test-utils"))]
pub use error::LocalChainError;
pub use error::{DeployError, RecordError, UserOpError};
pub use userop::UserOperation;
