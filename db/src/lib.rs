//! The database layer every Peruri Custody crate shares: one sqlx `Any` pool on SQLite or
//! PostgreSQL, its dialect, each crate's migrations, the write gate and the text codecs of the
//! Ethereum values the tables store.
//!
//! ```text
//!   connect_pool(url) ──► AnyPool ──┬─► Dialect::of      SQLite | PostgreSQL, from the pool's URL
//!                                   ├─► migrate(pool, postgres, sqlite)
//!                                   │      each crate passes its own sqlx::migrate! folders;
//!                                   │      one _sqlx_migrations table, versions unique across crates
//!                                   └─► WriteGate::of    SQLite writers take turns; open on PostgreSQL
//!
//!   codec: Address, B256 ──► lowercase 0x hex TEXT (decoded in any case)
//!          U256           ──► decimal TEXT
//! ```
//!
//! Domain crates (signer, accounts, bundler, issuance, server) keep their own tables and queries;
//! only the set-up lives here, as reth keeps `crates/storage/db` out of its domain crates.

mod codec;
mod error;
mod gate;
mod pool;

#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;

pub use codec::{decode_address, decode_b256, decode_u256, encode_address, encode_b256, encode_u256, is_hex32};
pub use error::DecodeError;
pub use gate::WriteGate;
pub use pool::{Dialect, connect_pool, migrate, now_millis};
