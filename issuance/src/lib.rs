//! Activity mirror and token issuance: intake, policy, merkle batches, mints.
//!
//! See `shared/DESIGN.md` §7. Not built yet: it is tracked by its own issue and
//! signs through `custody-signer`.
