//! `custody backup --out DIR` and `custody restore --from DIR`.
//!
//! A backup holds the database (an online SQLite snapshot by `VACUUM INTO`, or `pg_dump` in its custom
//! format for PostgreSQL), the SoftHSM token directory when the signer is SoftHSM (what holds the KEK and
//! the infrastructure keys; every user key is wrapped in the database), the deployment record, and
//! `manifest.json`: the SHA-256 of every file and the audit trail's head at the time. A restore checks
//! every file against the manifest, refuses to overwrite a database or token that holds anything, puts
//! the parts in the places this configuration names, and checks the restored audit trail against the
//! manifest's head. `docs/operations.md` has the runbook.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    audit::Audit,
    config::{BackendChoice, Config},
};

/// The manifest's format; a restore refuses any other.
const FORMAT: u32 = 1;
const MANIFEST: &str = "manifest.json";
const SQLITE_FILE: &str = "database.sqlite3";
const PG_FILE: &str = "database.pgdump";
const TOKENS_DIR: &str = "softhsm-tokens";
const DEPLOYMENT_FILE: &str = "deployment.json";

#[derive(Debug, clap::Args)]
pub(crate) struct BackupArgs {
    /// A new (or empty) directory to write the backup to.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RestoreArgs {
    /// A directory `custody backup` wrote.
    #[arg(long)]
    from: PathBuf,
}

/// What a backup holds; `files` maps each file (relative to the backup) to its SHA-256.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    /// Unix seconds.
    created_at: u64,
    /// `sqlite` or `postgres`.
    database: String,
    /// The audit trail when the database was copied: entries and the last entry's hash.
    audit_entries: i64,
    audit_head: String,
    /// `softhsm2` (its token directory is in the backup), `pkcs11` or `kms` (see `hsm_note`).
    hsm: String,
    hsm_note: String,
    files: BTreeMap<String, String>,
}

/// `custody backup --out DIR`.
#[expect(clippy::print_stdout, reason = "a command-line tool prints its answer")]
pub(crate) async fn backup(args: BackupArgs, config: &Config) -> anyhow::Result<()> {
    let out = &args.out;
    if out.exists() {
        ensure!(std::fs::read_dir(out)?.next().is_none(), "{} is not empty: give a new directory", out.display());
    }
    create_private_dir(out)?;
    let pool = custody_db::connect_pool(&config.database.url).await?;
    crate::db::migrate(&pool).await?;
    let audit = Audit::new(pool.clone());
    let entries = audit.verify().await.context("the audit trail does not verify; not backing up")?;

    let sqlite = sqlite_path(&config.database.url);
    match &sqlite {
        Some(_) => {
            let target = out.join(SQLITE_FILE);
            let target = target.to_str().context("the backup path is not UTF-8")?;
            // One consistent snapshot while the service keeps writing.
            sqlx::query(&format!("VACUUM INTO '{}'", target.replace('\'', "''"))).execute(&pool).await?;
        }
        None => run_tool(
            std::process::Command::new("pg_dump")
                .args(["--format=custom", "--no-owner", "--file"])
                .arg(out.join(PG_FILE))
                .arg(&config.database.url),
            "pg_dump",
        )?,
    }
    let head = head_hash(&pool, entries).await?;

    let (hsm, hsm_note) = match softhsm_tokendir(config)? {
        Some(tokendir) => {
            copy_tree(&tokendir, &out.join(TOKENS_DIR))?;
            ("softhsm2", format!("the token directory {} (SoftHSM2)", tokendir.display()))
        }
        None if config.signer.backend == BackendChoice::Kms => (
            "kms",
            "AWS KMS keys stay in KMS (back them up with AWS's own controls); the database holds their ids".to_owned(),
        ),
        None => (
            "pkcs11",
            "back up the HSM's key-encryption and infrastructure keys with the vendor's procedure (a backup HSM or \
             the vendor's cluster backup); every user key is wrapped in the database"
                .to_owned(),
        ),
    };
    if let Some(path) = config.chain.deployment_file.as_ref().filter(|p| p.exists()) {
        std::fs::copy(path, out.join(DEPLOYMENT_FILE)).with_context(|| format!("copying {}", path.display()))?;
    }

    let manifest = Manifest {
        format: FORMAT,
        created_at: crate::audit::now_millis().unsigned_abs() / 1000,
        database: if sqlite.is_some() { "sqlite" } else { "postgres" }.to_owned(),
        audit_entries: entries,
        audit_head: head,
        hsm: hsm.to_owned(),
        hsm_note,
        files: checksums(out)?,
    };
    std::fs::write(out.join(MANIFEST), serde_json::to_vec_pretty(&manifest)?)?;
    let details = serde_json::json!({"auditEntries": entries, "files": manifest.files.len(), "hsm": hsm});
    super::audit(&Audit::new(pool), "backup.create", &out.display().to_string(), "written", &details).await?;
    println!(
        "backup written to {}: {} files, audit trail of {entries} entries, HSM: {}",
        out.display(),
        manifest.files.len(),
        manifest.hsm_note
    );
    Ok(())
}

/// `custody restore --from DIR`.
#[expect(clippy::print_stdout, reason = "a command-line tool prints its answer")]
pub(crate) async fn restore(args: RestoreArgs, config: &Config) -> anyhow::Result<()> {
    let from = &args.from;
    let text = std::fs::read(from.join(MANIFEST)).with_context(|| format!("reading {}/{MANIFEST}", from.display()))?;
    let manifest: Manifest = serde_json::from_slice(&text).context("manifest.json")?;
    ensure!(
        manifest.format == FORMAT,
        "backup format {} is not {FORMAT}: restore it with its own release",
        manifest.format
    );
    let found = checksums(from)?;
    for (file, sum) in &manifest.files {
        ensure!(found.get(file) == Some(sum), "{file} is missing or changed since the backup (SHA-256 differs)");
    }
    if let Some(extra) = found.keys().find(|f| !manifest.files.contains_key(*f) && f.as_str() != MANIFEST) {
        bail!("{extra} is not in the manifest: not a backup as written");
    }

    // Everything is checked before anything is written.
    let sqlite = sqlite_path(&config.database.url);
    ensure!(
        (manifest.database == "sqlite") == sqlite.is_some(),
        "the backup holds a {} database but database.url is {}",
        manifest.database,
        if sqlite.is_some() { "SQLite" } else { "PostgreSQL" }
    );
    if let Some(path) = &sqlite {
        ensure!(
            std::fs::metadata(path).map(|m| m.len() == 0).unwrap_or(true),
            "{} exists: restore into a new database",
            path.display()
        );
    } else {
        let pool = custody_db::connect_pool(&config.database.url).await?;
        let tables: i64 = sqlx::query_scalar(
            "SELECT CAST(count(*) AS BIGINT) FROM information_schema.tables WHERE table_schema = current_schema()",
        )
        .fetch_one(&pool)
        .await?;
        pool.close().await;
        ensure!(tables == 0, "the database at database.url has {tables} tables: restore into an empty database");
    }
    let tokendir = match manifest.hsm.as_str() {
        "softhsm2" => {
            let dir = softhsm_tokendir(config)?.context(
                "the backup holds a SoftHSM token but this configuration's signer is not SoftHSM (SOFTHSM2_CONF)",
            )?;
            ensure!(
                !dir.exists() || std::fs::read_dir(&dir)?.next().is_none(),
                "the token directory {} is not empty: restore onto a machine without tokens",
                dir.display()
            );
            Some(dir)
        }
        _ => None,
    };
    let deployment = config.chain.deployment_file.as_ref().filter(|_| manifest.files.contains_key(DEPLOYMENT_FILE));
    if let Some(path) = deployment.filter(|p| p.exists()) {
        ensure!(
            std::fs::read(path)? == std::fs::read(from.join(DEPLOYMENT_FILE))?,
            "{} differs from the backup's deployment record",
            path.display()
        );
    }

    match &sqlite {
        Some(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(from.join(SQLITE_FILE), path).with_context(|| format!("writing {}", path.display()))?;
        }
        None => run_tool(
            std::process::Command::new("pg_restore")
                .args(["--no-owner", "--exit-on-error", "--dbname"])
                .arg(&config.database.url)
                .arg(from.join(PG_FILE)),
            "pg_restore",
        )?,
    }
    if let Some(dir) = &tokendir {
        copy_tree(&from.join(TOKENS_DIR), dir)?;
    }
    if let Some(path) = deployment.filter(|p| !p.exists()) {
        std::fs::copy(from.join(DEPLOYMENT_FILE), path)?;
    }

    let pool = custody_db::connect_pool(&config.database.url).await?;
    let entries = Audit::new(pool.clone()).verify().await.context("the restored audit trail does not verify")?;
    let head = head_hash(&pool, manifest.audit_entries).await?;
    ensure!(
        entries >= manifest.audit_entries && head == manifest.audit_head,
        "the restored audit trail ({entries} entries) does not hold the backup's head (entry {})",
        manifest.audit_entries
    );
    let details = serde_json::json!({"auditEntries": manifest.audit_entries, "createdAt": manifest.created_at});
    super::audit(&Audit::new(pool), "backup.restore", &from.display().to_string(), "restored", &details).await?;
    println!(
        "restored from {}: database ({}), audit trail of {entries} entries verified, HSM: {}",
        from.display(),
        manifest.database,
        if tokendir.is_some() { "SoftHSM token directory restored" } else { manifest.hsm_note.as_str() }
    );
    Ok(())
}

/// The file of a `sqlite://` URL (`None` for PostgreSQL).
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    Some(PathBuf::from(rest.split('?').next().unwrap_or(rest)))
}

/// The hash of audit entry `seq` (the genesis value for an empty trail).
async fn head_hash(pool: &sqlx::AnyPool, seq: i64) -> anyhow::Result<String> {
    let hash: Option<String> =
        sqlx::query_scalar("SELECT hash FROM audit_log WHERE seq = $1").bind(seq).fetch_optional(pool).await?;
    Ok(hash.unwrap_or_default())
}

/// SoftHSM's token directory when the signer is SoftHSM: `directories.tokendir` of `SOFTHSM2_CONF`.
fn softhsm_tokendir(config: &Config) -> anyhow::Result<Option<PathBuf>> {
    let module = config.signer.pkcs11.module.to_string_lossy().to_lowercase();
    if config.signer.backend != BackendChoice::Pkcs11 || !module.contains("softhsm") {
        return Ok(None);
    }
    let conf =
        std::env::var_os("SOFTHSM2_CONF").map_or_else(|| PathBuf::from("/etc/softhsm/softhsm2.conf"), PathBuf::from);
    let text = std::fs::read_to_string(&conf).with_context(|| format!("reading {}", conf.display()))?;
    let dir = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("directories.tokendir"))
        .find_map(|rest| rest.trim_start().strip_prefix('='))
        .with_context(|| format!("{} has no directories.tokendir", conf.display()))?;
    Ok(Some(PathBuf::from(dir.trim())))
}

/// Copies the files under `from` to `to` (created 0700), keeping the layout.
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    create_private_dir(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// The SHA-256 of every file under `root` but the manifest, by path relative to `root`.
fn checksums(root: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    fn walk(root: &Path, dir: &Path, sums: &mut BTreeMap<String, String>) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(root, &path, sums)?;
            } else {
                let name = path.strip_prefix(root)?.to_string_lossy().into_owned();
                if name != MANIFEST {
                    sums.insert(name, hex::encode(Sha256::digest(std::fs::read(&path)?)));
                }
            }
        }
        Ok(())
    }
    let mut sums = BTreeMap::new();
    walk(root, root, &mut sums)?;
    Ok(sums)
}

/// Runs a database tool, with a clear error when it is missing or fails (its stderr, which holds no secret
/// but may hold the URL's host and database name).
fn run_tool(command: &mut std::process::Command, name: &str) -> anyhow::Result<()> {
    let output = command.output().with_context(|| format!("running {name} (install the PostgreSQL client tools)"))?;
    ensure!(output.status.success(), "{name} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(sqlite_path("sqlite:///var/lib/custody.db?mode=rwc"), Some(PathBuf::from("/var/lib/custody.db")));
        assert_eq!(sqlite_path("sqlite://custody.db"), Some(PathBuf::from("custody.db")));
        assert_eq!(sqlite_path("postgres://u@h/db"), None);
    }
}
