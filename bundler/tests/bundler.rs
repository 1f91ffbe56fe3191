//! Bundler integration tests: a local chain, SoftHSM bundler and owner keys, SQLite and PostgreSQL.

#[path = "shared/rule_contracts.rs"]
#[allow(dead_code)]
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
