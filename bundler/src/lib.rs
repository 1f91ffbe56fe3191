//! Native ERC-4337 bundler with in-process ERC-7562 validation.
//!
//! ```text
//!  POST /rpc (ERC-7769) ─► rpc ─► Bundler ─► pool (admission, replacement, limits) ─► store (SQLite | PostgreSQL)
//!                                   │  └─► dyn Validate (sim: revm + ERC-7562)        ▲
//!                                   │  └─► reputation (ERC-7562, hourly decay) ───────┤
//!                                   └─► builder per key: select → eth_call handleOps ─┤─► custody-sender ─► node
//!                                        └─ settled bundles: included | back to pending ┘   (sign, record,
//!                                                                              broadcast, bump, cancel)
//!                                   receipts: UserOperationEvent logs + transaction receipt
//! ```
//!
//! - [`validation`]: the seam between the simulator and the rest: what a
//!   validated operation carries and how a rejection is reported (ERC-7769 codes).
//! - [`sim`]: revm over the node's state, `simulateValidation` for EntryPoint
//!   v0.7 and v0.8 with an ERC-7562 inspector, gas estimation.
//!
//! See `shared/DESIGN.md` §5. Bundler keys stay in the HSM: bundle transactions are
//! signed through `custody-signer` and sent, followed and replaced by `custody-sender`. Migrations: `bundler/migrations` (one SQL for both dialects),
//! applied through `custody_db::migrate` on the service's shared pool.

mod builder;
mod config;
mod error;
mod estimate;
mod metrics;
pub mod node;
mod pool;
mod receipts;
mod reputation;
pub mod rpc;
mod service;
pub mod sim;
mod store;
pub mod validation;

pub use config::{BundlerConfig, BundlingMode, Hardfork};
pub use error::BundlerError;
pub use estimate::{EstimateGas, GasEstimate};
pub use pool::replacement_allowed;
pub use receipts::{
    PendingBundle, Removed, UserOperationByHash, UserOperationReceipt, UserOperationStatus, receipt_from,
};
pub use reputation::{
    BAN_SLACK, FAILED_BUNDLE_OPS_SEEN, MAX_OPS_ALLOWED_UNSTAKED_ENTITY, MIN_INCLUSION_RATE_DENOMINATOR, Reputation,
    ReputationStatus, SAME_SENDER_MEMPOOL_COUNT, SAME_UNSTAKED_ENTITY_MEMPOOL_COUNT, THROTTLED_ENTITY_BUNDLE_COUNT,
    THROTTLED_ENTITY_LIVE_BLOCKS, THROTTLED_ENTITY_MEMPOOL_COUNT, THROTTLING_SLACK,
};
pub use service::{Bundler, OpView};
pub use store::OpStatus;
