//! The bundler's integration tests, one binary: the in-process simulator (`sim`: validation of real
//! accounts for EntryPoint v0.7 and v0.8, one rule-test contract per ERC-7562 rule, staked entities, the
//! state cache, gas estimation checked against handleOps) and the bundler (`bundler`: mempool, RPC,
//! builders with HSM keys, stuck transactions, end to end), on a local chain, SoftHSM2, SQLite and
//! PostgreSQL.

#[allow(dead_code, reason = "each of the two suites uses part of the rule contracts")]
mod rule_contracts;

mod bundler {
    mod bundle_time;
    mod e2e;
    mod keys;
    mod mempool;
    mod rpc;
    mod setup;
    mod stake;
    mod stuck;
}

mod sim {
    mod estimate;
    mod rules;
    mod setup;
    mod stake;
    mod validate;
}
