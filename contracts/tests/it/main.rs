//! Integration tests of custody-contracts against a local Hardhat chain (one per test).
#![allow(clippy::unwrap_used, clippy::err_expect, unreachable_pub, missing_debug_implementations)]

mod account;
mod chain;
mod deploy;
mod hsm_owner;
mod paymaster;
mod setup;
mod tokens;
mod userop_hash;
