//! `custody enroll --csv users.csv`: bulk enrolment with a progress bar.
//!
//! Each user id gets its wallet exactly as `POST /v1/wallets` would make it
//! (owner key in the HSM, DID, counterfactual address, audit entries). Creation
//! is idempotent per user id, so a run that was stopped (Ctrl-C, crash) is
//! resumed by running the same command again: users already enrolled are
//! counted as `existing` and cost one lookup.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use custody_accounts::Wallets;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::{
    audit::{Audit, Entry},
    config::Config,
};

/// Options of `custody enroll`.
#[derive(Debug, clap::Args)]
pub(crate) struct EnrollArgs {
    /// CSV file with a header row and a `user_id` column (or a single column).
    #[arg(long)]
    csv: PathBuf,
    /// Wallets created at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) created: u64,
    pub(crate) existing: u64,
    /// Data rows (1 is the first row after the header) that failed, with why.
    pub(crate) failed: Vec<(u64, String)>,
}

#[expect(clippy::print_stdout, reason = "a command-line tool prints its summary")]
pub(crate) async fn run(args: EnrollArgs, config: &Config) -> anyhow::Result<()> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let users = read_user_ids(&args.csv)?;
    let pool = custody_db::connect_pool(&config.database.url).await?;
    crate::db::migrate(&pool).await?;
    let keyring = crate::cli::keyring_on(config, custody_signer::KeyStore::from_pool(pool.clone())).await?;
    let deployment =
        config.chain.deployment_file.as_deref().context(
            "enrolment needs [chain] deployment_file (or CUSTODY_DEPLOYMENT_FILE) to compute account addresses",
        )?;
    let wallets = crate::serve::wallets(config, deployment, &keyring, &pool).await?;
    let audit = Audit::new(pool);

    let bar = ProgressBar::new(users.len() as u64).with_style(
        ProgressStyle::with_template("{spinner} enrolling [{bar:40}] {pos}/{len} {per_sec} eta {eta} {msg}")
            .context("progress bar template")?
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let started = Instant::now();
    let stop = crate::shutdown::signal();
    let summary = tokio::select! {
        summary = enroll(&wallets, &audit, &users, args.concurrency, &bar) => summary,
        () = stop => {
            bar.abandon_with_message("interrupted: run the same command again to resume");
            bail!("interrupted after {} of {} users; run the same command again to resume", bar.position(), users.len());
        }
    };
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "enrolled {} users in {secs:.1} s ({:.0}/s): {} created, {} already enrolled, {} failed",
        users.len(),
        users.len() as f64 / secs.max(1e-9),
        summary.created,
        summary.existing,
        summary.failed.len()
    );
    for (line, why) in summary.failed.iter().take(20) {
        println!("  row {line}: {why}");
    }
    if !summary.failed.is_empty() {
        bail!("{} users were not enrolled; fix those rows and run again", summary.failed.len());
    }
    Ok(())
}

/// Enrols `users` (CSV data row, user id) with `concurrency` creations at once.
pub(crate) async fn enroll(
    wallets: &Wallets,
    audit: &Audit,
    users: &[(u64, String)],
    concurrency: usize,
    bar: &ProgressBar,
) -> Summary {
    let mut results = futures::stream::iter(users.iter())
        .map(|(line, user_id)| async move { (*line, enroll_one(wallets, audit, *line, user_id).await) })
        .buffer_unordered(concurrency);
    let mut summary = Summary::default();
    while let Some((line, result)) = results.next().await {
        match result {
            Ok(true) => summary.created += 1,
            Ok(false) => summary.existing += 1,
            Err(why) => summary.failed.push((line, why)),
        }
        bar.inc(1);
    }
    summary.failed.sort();
    summary
}

/// One user: `Ok(true)` created, `Ok(false)` already there, `Err` why not (never the user id).
async fn enroll_one(wallets: &Wallets, audit: &Audit, line: u64, user_id: &str) -> Result<bool, String> {
    let did = wallets.did_of(user_id).await.map_err(|e| e.to_string())?.to_string();
    let request_id = format!("enroll:row-{line}");
    let actor = super::operator();
    let entry = |outcome| Entry {
        actor: &actor,
        action: "wallet.create",
        target: &did,
        request_id: &request_id,
        outcome,
        details: "",
    };
    audit.append(&entry("requested")).await.map_err(|e| format!("audit trail unavailable: {e}"))?;
    let (_, created) = wallets.create(user_id).await.map_err(|e| e.to_string())?;
    let outcome = if created { "created" } else { "existing" };
    audit.append(&entry(outcome)).await.map_err(|e| format!("audit trail unavailable: {e}"))?;
    Ok(created)
}

/// The user ids of a CSV file with their data row numbers (1-based, after the
/// header): the `user_id` column, or the only column. Blank lines are skipped.
pub(crate) fn read_user_ids(path: &Path) -> anyhow::Result<Vec<(u64, String)>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let headers = reader.headers().with_context(|| format!("reading the header of {}", path.display()))?;
    let column = match headers.iter().position(|h| h == "user_id") {
        Some(i) => i,
        None if headers.len() == 1 => 0,
        None => {
            bail!("{} has no user_id column (header: {})", path.display(), headers.iter().collect::<Vec<_>>().join(","))
        }
    };
    let mut users = Vec::new();
    for (row, record) in (1u64..).zip(reader.records()) {
        let record = record.with_context(|| format!("reading row {row} of {}", path.display()))?;
        match record.get(column) {
            Some(id) if !id.is_empty() => users.push((row, id.to_owned())),
            _ => {}
        }
    }
    if users.is_empty() {
        bail!("{} holds no user ids", path.display());
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_column_or_the_only_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("u.csv");
        std::fs::write(&path, "name,user_id\nAda, u-1 \n\nBob,u-2\n").expect("write");
        let users = read_user_ids(&path).expect("reads");
        assert_eq!(users, vec![(1, "u-1".to_owned()), (2, "u-2".to_owned())]);
        std::fs::write(&path, "id\nx\ny\n").expect("write");
        assert_eq!(read_user_ids(&path).expect("reads").len(), 2);
        std::fs::write(&path, "a,b\n1,2\n").expect("write");
        assert!(read_user_ids(&path).expect_err("no column").to_string().contains("no user_id column"));
        std::fs::write(&path, "user_id\n").expect("write");
        assert!(read_user_ids(&path).is_err());
    }
}
