//! Integration tests of the activity mirror against real parts: SQLite and PostgreSQL, a SoftHSM token
//! holding the issuer and anchor keys, and a local chain with the Peruri contracts.

#![allow(clippy::unwrap_used, unreachable_pub, missing_debug_implementations, dead_code)]

mod intake;
mod mirror;
mod rabbitmq;
mod setup;
mod storage;
