//! Integration tests of the `custody` binary against real parts.

#![allow(clippy::unwrap_used, unreachable_pub)]

mod devnet;
mod keys_cli;
