//! Sponsorship service: ERC-7677 RPC, policies, budgets and paymaster signatures.
//!
//! See `shared/DESIGN.md` §6. Not built yet: it is tracked by its own issue and
//! signs through `custody-signer`.
