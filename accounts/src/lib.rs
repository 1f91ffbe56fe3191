//! Wallets and identities: one custodial owner key, one `did:peruri` DID and one counterfactual
//! ERC-4337 smart account per application user (`shared/DESIGN.md` §3).
//!
//! ```text
//!   Wallets::create(user_id)
//!      │  validate user_id (1..=256 chars, no control characters)
//!      ├─► identity_map: INSERT pending row (unique user_id) ── lost the race? wait for the winner's row
//!      ├─► Keyring::pseudonym("did:peruri:" ‖ user_id)  HMAC-SHA256 in the HSM
//!      │        └─► did:peruri:<base32(first 20 bytes)>       (no user_id in it)
//!      ├─► Keyring::create_user(user_id)                  owner key, wrapped under the KEK
//!      ├─► account_address(factory, implementation, owner, salt 0)   CREATE2, = factory.getAddress
//!      └─► identity_map: row ready {did, address, owner, key id + version, custody, deployed}
//!
//!   by_did / by_address / get ──► Wallet ──► DidDocument (W3C DID Core, CAIP-10 account)
//!                                       └──► DidResolution (Universal Resolver result)
//! ```
//!
//! The identity map lives in the key store's database (SQLite or PostgreSQL, set up by `custody-db`)
//! and its migrations share `_sqlx_migrations` with the other crates'. [`Wallets::verify_address_on_chain`] checks at start-up that the
//! factory on chain computes the same account addresses. DIDs need the pseudonym key, so wallets need
//! a PKCS#11 keyring.

mod did;
mod error;
mod schema;
mod store;
mod wallets;

pub use did::{Did, DidDocument, DidResolution, DocumentMetadata, ResolutionMetadata, VerificationMethod};
pub use error::Error;
pub use schema::{AddressText, DID_PATTERN, USER_ID_PATTERN, UserId};
pub use wallets::{ChainContext, Custody, MAX_USER_ID_CHARS, Wallet, Wallets, checksummed, validate_user_id};
