//! Native ERC-4337 bundler with in-process ERC-7562 validation.
//!
//! Will hold the ERC-7769 RPC, the mempool, validation in revm, bundling and
//! receipts (see `shared/DESIGN.md` §5). Not built yet: it is tracked by its own
//! issue and signs through `custody-signer`.
