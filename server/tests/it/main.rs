//! Integration tests of the `custody` binary against real parts.

#![allow(clippy::unwrap_used, unreachable_pub, missing_debug_implementations, dead_code)]

mod auth;
mod devnet;
mod keys_cli;
mod service;
mod wallets;
