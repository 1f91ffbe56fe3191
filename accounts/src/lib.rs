//! Identity map and smart-account lifecycle.
//!
//! Will hold: `user_id` ⇄ `did:peruri` ⇄ account address, counterfactual
//! addresses, UserOperation building and signing, owner rotation and
//! self-custody (see `shared/DESIGN.md` §3). Not built yet: it is tracked by its
//! own issue and builds on `custody-signer`.
