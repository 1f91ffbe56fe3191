//! `custody audit verify`: recomputes the hash chain and names the first broken entry.

use clap::Subcommand;

use crate::{audit::Audit, config::Config};

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Recompute the audit trail's hash chain.
    Verify,
}

#[expect(clippy::print_stdout, reason = "a command-line tool prints its answer")]
pub(crate) async fn run(cmd: AuditCommand, config: &Config) -> anyhow::Result<()> {
    let pool = custody_db::connect_pool(&config.database.url).await?;
    crate::db::migrate(&pool).await?;
    match cmd {
        AuditCommand::Verify => {
            let entries = Audit::new(pool).verify().await?;
            println!("audit trail intact: {entries} entries");
        }
    }
    Ok(())
}
