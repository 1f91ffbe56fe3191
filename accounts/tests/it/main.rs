//! Integration tests of custody-accounts against real parts: a fresh SoftHSM2 token, a fresh SQLite or
//! PostgreSQL database (127.0.0.1:5432) and, for the factory, a local Hardhat chain.
#![allow(clippy::unwrap_used, unreachable_pub, missing_debug_implementations)]

mod chain;
mod create;
mod input;
mod lookup;
mod recovery;
mod setup;
