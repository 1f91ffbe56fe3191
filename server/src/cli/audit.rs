//! `custody audit verify`: recomputes the hash chain and names the first broken entry.

use clap::Subcommand;

use crate::{audit::Audit, config::Config};

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Recompute the audit trail's hash chain, and check it against the checkpoints anchored in PLOG
    /// (when `[chain]` is configured).
    Verify,
}

#[expect(clippy::print_stdout, reason = "a command-line tool prints its answer")]
pub(crate) async fn run(cmd: AuditCommand, config: &Config) -> anyhow::Result<()> {
    let pool = custody_db::connect_pool(&config.database.url).await?;
    crate::db::migrate(&pool).await?;
    match cmd {
        AuditCommand::Verify => {
            let entries = Audit::new(pool.clone()).verify().await?;
            println!("audit trail intact: {entries} entries");
            if let (Some(url), Some(path)) = (&config.chain.rpc_url, &config.chain.deployment_file) {
                let deployment = crate::serve::deployment_record(path)?;
                let provider = crate::serve::provider(url)?;
                let log = deployment.contracts.peruri_log;
                let matched = crate::audit_checkpoint::verify_anchored(&pool, &provider, log, deployment.block).await?;
                println!("on-chain checkpoints match: {matched}");
            }
        }
    }
    Ok(())
}
