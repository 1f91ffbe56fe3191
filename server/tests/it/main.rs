//! Integration tests of the `custody` binary against real parts.

#![allow(clippy::unwrap_used, clippy::print_stderr, unreachable_pub, missing_debug_implementations, dead_code)]

mod activity;
mod approvals;
mod auth;
mod backup;
mod chain_identity;
mod crash;
mod devnet;
mod enroll;
mod history;
mod http;
mod intake;
mod keys_cli;
mod operations;
mod ops;
mod owner_rotation;
mod paymaster;
mod policies;
mod replay;
mod service;
mod signatures;
mod tasks;
mod tls;
mod wallets;
