//! Bundler integration tests: a local chain, SoftHSM bundler and owner keys, SQLite and PostgreSQL.

mod bundler {
    mod bundle_time;
    mod e2e;
    mod keys;
    mod mempool;
    mod rpc;
    mod setup;
    mod stuck;
}
