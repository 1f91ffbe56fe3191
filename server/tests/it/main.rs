//! Integration tests of the `custody` binary against real parts.

#![allow(clippy::unwrap_used, unreachable_pub)]

mod keys_cli;
