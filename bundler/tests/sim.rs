//! Integration tests of the in-process simulator against a local Hardhat chain: validation of real
//! accounts (Peruri, eth-infinitism SimpleAccount) for EntryPoint v0.7 and v0.8, one rule-test contract
//! per ERC-7562 rule, entities staked on the EntryPoint, the state cache, and gas estimation checked
//! against handleOps on chain.

#[path = "sim/estimate.rs"]
mod estimate;
#[path = "shared/rule_contracts.rs"]
mod rule_contracts;
#[path = "sim/rules.rs"]
mod rules;
#[path = "sim/setup.rs"]
mod setup;
#[path = "sim/stake.rs"]
mod stake;
#[path = "sim/validate.rs"]
mod validate;
