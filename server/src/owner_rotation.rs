//! Owner-key rotation of a custodial wallet (officers). A successor key is made in the HSM; the
//! account's owner is changed on-chain by a sponsored UserOperation that the current key signs (it
//! deploys the account first when it is still counterfactual); the rotation is confirmed from that
//! operation's receipt and its `OwnerChanged` event, and only then does the successor become the key
//! that signs, the old one is retired and the identity map names the new owner. Address, tokens and
//! badges stay: they belong to the account.
//!
//! ```text
//! request ─► owner_rotations (pending) ─► successor key (retired: signs nothing) ─► prepare + submit
//! Follower (task) ─► receipt, OwnerChanged(old, new) ─► identity map, successor active, old retired ─► confirmed
//!                 └► reverted, dropped, or never sent ─► failed (the old key stays; the successor never signed)
//! ```
//!
//! While a rotation is pending the wallet's signing routes answer 409 `owner_rotation_pending`: what the
//! old key signed could land after the change and fail.

use std::{sync::Arc, time::Duration};

use alloy::primitives::{Address, B256, U256};
use alloy::sol_types::{SolCall, SolEvent};
use custody_contracts::bindings::peruri_account_v08::PeruriAccountV08 as Account;
use custody_signer::{KeyClass, Keyring};
use serde::Serialize;
use serde_json::json;
use sqlx::{AnyPool, Row};

use crate::api::{AppState, error::ApiError};
use crate::audit::{Audit, Entry, now_millis};
use crate::operations::{self, Call, Find};

/// A rotation whose operation the bundler has not seen for this long after it was requested is failed
/// (its sponsorship and prepared operation have expired by then).
const GIVE_UP_AFTER_MILLIS: i64 = 15 * 60 * 1000;

/// One rotation as officers see it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Rotation {
    pub(crate) id: String,
    /// The owner before.
    #[serde(serialize_with = "custody_accounts::checksummed")]
    #[schema(value_type = custody_accounts::AddressText)]
    pub(crate) old_owner: Address,
    /// The successor key's address.
    #[serde(serialize_with = "custody_accounts::checksummed")]
    #[schema(value_type = custody_accounts::AddressText)]
    pub(crate) new_owner: Address,
    /// The operation that changes the owner, once sent.
    #[schema(value_type = Option<String>)]
    pub(crate) user_op_hash: Option<B256>,
    /// `pending`, `confirmed` or `failed`.
    pub(crate) state: String,
    /// Why it failed.
    pub(crate) reason: Option<String>,
    /// The officer (`sub`).
    pub(crate) requested_by: String,
    /// Unix milliseconds.
    pub(crate) created_at: i64,
    pub(crate) finished_at: Option<i64>,
}

/// A rotation row with what the follower needs.
struct Record {
    rotation: Rotation,
    user_id: String,
    old_key_id: String,
    new_key_id: String,
}

const COLUMNS: &str = "id, user_id, old_key_id, new_key_id, old_owner, new_owner, user_op_hash, state, reason, \
                       requested_by, created_at, finished_at";

/// Starts rotating the owner key of `wallet` (custodial, checked by the caller) for officer `by`, the
/// operation sponsored under `policy` (the paymaster's default when `None`).
pub(crate) async fn start(
    state: &AppState,
    wallet: &custody_accounts::Wallet,
    by: &str,
    policy: Option<&str>,
) -> Result<Rotation, ApiError> {
    let user_id = wallet.user_id.as_str();
    let conflict = |code, why: &str| ApiError::new(axum::http::StatusCode::CONFLICT, code, why.to_owned());
    if pending(&state.pool, user_id).await? {
        return Err(conflict("owner_rotation_pending", "an owner rotation of this wallet is under way"));
    }
    let current = state.keyring.store().active(KeyClass::User, user_id).await.map_err(|e| ApiError::unavailable(&e))?;
    if current.as_ref().map(|k| k.id.as_str()) != Some(wallet.owner_key_id.as_str()) {
        return Err(conflict("owner_key_mismatch", "the wallet's owner key is not its active key"));
    }
    let successor = state.keyring.create_user_successor(user_id).await.map_err(|e| ApiError::unavailable(&e))?;
    let new_owner = successor.address().ok_or_else(|| ApiError::internal(&"the successor key has no address"))?;
    let rotation = Rotation {
        id: hex::encode(rand::random::<[u8; 16]>()),
        old_owner: wallet.owner,
        new_owner,
        user_op_hash: None,
        state: "pending".to_owned(),
        reason: None,
        requested_by: by.to_owned(),
        created_at: now_millis(),
        finished_at: None,
    };
    let inserted = sqlx::query(
        "INSERT INTO owner_rotations (id, user_id, old_key_id, new_key_id, old_owner, new_owner, state, requested_by, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8)",
    )
    .bind(&rotation.id)
    .bind(user_id)
    .bind(&wallet.owner_key_id)
    .bind(&successor.id)
    .bind(custody_db::encode_address(wallet.owner))
    .bind(custody_db::encode_address(new_owner))
    .bind(by)
    .bind(rotation.created_at)
    .execute(&state.pool)
    .await;
    match inserted {
        Ok(_) => {}
        // The one-open-rotation index: another request won the race.
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(conflict("owner_rotation_pending", "an owner rotation of this wallet is under way"));
        }
        Err(e) => return Err(ApiError::unavailable(&e)),
    }
    let change = Call {
        to: wallet.address,
        value: U256::ZERO,
        data: Account::changeOwnerCall { newOwner: new_owner }.abi_encode().into(),
    };
    let sent = async {
        let prepared = operations::prepare(state, (user_id, wallet.address, wallet.owner), &[change], policy).await?;
        let stored = operations::stored(state, user_id, Find::Id(&prepared.id)).await?;
        let stored = stored.ok_or_else(|| ApiError::internal(&"the prepared owner change vanished"))?;
        operations::submit(state, user_id, &stored).await
    };
    match sent.await {
        Ok(hash) => {
            sqlx::query("UPDATE owner_rotations SET user_op_hash = $1 WHERE id = $2")
                .bind(hash.to_string())
                .bind(&rotation.id)
                .execute(&state.pool)
                .await
                .map_err(|e| ApiError::unavailable(&e))?;
            Ok(Rotation { user_op_hash: Some(hash), ..rotation })
        }
        Err(e) => {
            finish(&state.pool, &rotation.id, "failed", Some(&e.message))
                .await
                .map_err(|e| ApiError::unavailable(&e))?;
            Err(e)
        }
    }
}

/// Whether `user_id`'s wallet has a rotation under way.
pub(crate) async fn pending(pool: &AnyPool, user_id: &str) -> Result<bool, ApiError> {
    let row = sqlx::query("SELECT id FROM owner_rotations WHERE user_id = $1 AND state = 'pending'")
        .bind(user_id)
        .fetch_optional(pool)
        .await
        .map_err(|e| ApiError::unavailable(&e))?;
    Ok(row.is_some())
}

/// `user_id`'s rotations, newest first.
pub(crate) async fn list(pool: &AnyPool, user_id: &str) -> Result<Vec<Rotation>, ApiError> {
    let sql = format!("SELECT {COLUMNS} FROM owner_rotations WHERE user_id = $1 ORDER BY created_at DESC LIMIT 100");
    let rows = sqlx::query(&sql).bind(user_id).fetch_all(pool).await.map_err(|e| ApiError::unavailable(&e))?;
    rows.iter().map(|r| from_row(r).map(|r| r.rotation)).collect::<Result<_, _>>().map_err(|e| ApiError::internal(&e))
}

async fn finish(pool: &AnyPool, id: &str, state: &str, reason: Option<&str>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE owner_rotations SET state = $1, reason = $2, finished_at = $3 WHERE id = $4 AND state = 'pending'",
    )
    .bind(state)
    .bind(reason)
    .bind(now_millis())
    .bind(id)
    .execute(pool)
    .await
    .map(drop)
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<Record, String> {
    let text = |c: &str| row.try_get::<String, _>(c).map_err(|e| format!("owner_rotations.{c}: {e}"));
    let address = |c: &str| text(c)?.parse::<Address>().map_err(|e| format!("owner_rotations.{c}: {e}"));
    let hash: Option<String> = row.try_get("user_op_hash").map_err(|e| e.to_string())?;
    Ok(Record {
        rotation: Rotation {
            id: text("id")?,
            old_owner: address("old_owner")?,
            new_owner: address("new_owner")?,
            user_op_hash: hash
                .map(|h| h.parse())
                .transpose()
                .map_err(|e| format!("owner_rotations.user_op_hash: {e}"))?,
            state: text("state")?,
            reason: row.try_get("reason").map_err(|e| e.to_string())?,
            requested_by: text("requested_by")?,
            created_at: row.try_get("created_at").map_err(|e| e.to_string())?,
            finished_at: row.try_get("finished_at").map_err(|e| e.to_string())?,
        },
        user_id: text("user_id")?,
        old_key_id: text("old_key_id")?,
        new_key_id: text("new_key_id")?,
    })
}

/// Follows pending rotations to their end (the task `owner-rotations`).
#[derive(Clone, Debug)]
pub(crate) struct Follower {
    pool: AnyPool,
    keyring: Keyring,
    wallets: custody_accounts::Wallets,
    bundler: Arc<custody_bundler::Bundler>,
    audit: Audit,
}

impl Follower {
    /// The follower over `state`'s parts; `None` without wallets or a bundler (no rotation can start).
    pub(crate) fn of(state: &AppState) -> Option<Self> {
        Some(Self {
            pool: state.pool.clone(),
            keyring: state.keyring.clone(),
            wallets: state.wallets.clone()?,
            bundler: state.bundler.clone()?,
            audit: state.audit.clone(),
        })
    }

    /// Runs [`Self::step`] every `interval` until `stop`.
    pub(crate) async fn run(self, interval: Duration, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            if let Err(e) = self.step().await {
                tracing::warn!(error = %e, "owner rotation step failed; retrying");
            }
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// Looks at every pending rotation once; returns how many ended.
    pub(crate) async fn step(&self) -> Result<usize, String> {
        let sql = format!("SELECT {COLUMNS} FROM owner_rotations WHERE state = 'pending'");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await.map_err(|e| e.to_string())?;
        let mut ended = 0;
        for row in rows.iter().map(from_row) {
            let row = row?;
            if let Some(outcome) = self.outcome(&row).await? {
                self.end(&row, outcome).await?;
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// Where `row`'s operation is: `None` while it may still land, else confirmed (`Ok`) or why not.
    async fn outcome(&self, row: &Record) -> Result<Option<Result<(), String>>, String> {
        let stale = now_millis() - row.rotation.created_at > GIVE_UP_AFTER_MILLIS;
        let Some(hash) = row.rotation.user_op_hash else {
            // Never sent: the service stopped between the successor key and the submission.
            return Ok(stale.then(|| Err("the owner change was never sent".to_owned())));
        };
        let found = self.bundler.user_operation_status(hash).await.map_err(|e| e.to_string())?;
        if let Some(receipt) = found.receipt {
            if !receipt.success {
                return Ok(Some(Err("the owner change reverted".to_owned())));
            }
            let changed = receipt.logs.iter().any(|log| {
                log.address() == receipt.sender
                    && Account::OwnerChanged::decode_log(&log.inner).is_ok_and(|e| {
                        e.previousOwner == row.rotation.old_owner && e.newOwner == row.rotation.new_owner
                    })
            });
            return Ok(Some(if changed { Ok(()) } else { Err("no OwnerChanged to the successor".to_owned()) }));
        }
        if let Some(removed) = found.removed {
            let why = removed.reason.unwrap_or_else(|| format!("{:?}", removed.status));
            return Ok(Some(Err(format!("the bundler dropped the owner change: {why}"))));
        }
        Ok((found.status == "unknown" && stale).then(|| Err("the bundler never carried the owner change".to_owned())))
    }

    /// Confirms (the identity map, then the keys) or fails `row`, and audits it.
    async fn end(&self, row: &Record, outcome: Result<(), String>) -> Result<(), String> {
        let wallet = self.wallets.get(&row.user_id).await.map_err(|e| e.to_string())?;
        let target = wallet.as_ref().map_or_else(|| row.rotation.id.clone(), |w| w.did.to_string());
        let (state, reason) = match &outcome {
            Ok(()) => {
                let successor = self.keyring.store().get(&row.new_key_id).await.map_err(|e| e.to_string())?;
                let successor = successor.ok_or("the successor key is gone")?;
                self.wallets
                    .owner_changed(&row.user_id, &row.old_key_id, &successor)
                    .await
                    .map_err(|e| e.to_string())?;
                self.keyring.promote_user(&row.new_key_id, &row.old_key_id).await.map_err(|e| e.to_string())?;
                ("confirmed", None)
            }
            Err(why) => ("failed", Some(why.as_str())),
        };
        finish(&self.pool, &row.rotation.id, state, reason).await.map_err(|e| e.to_string())?;
        let details = json!({
            "rotationId": row.rotation.id,
            "oldOwner": row.rotation.old_owner,
            "newOwner": row.rotation.new_owner,
            "userOpHash": row.rotation.user_op_hash,
            "reason": reason,
        })
        .to_string();
        let actor = format!("owner-rotation:{}", row.rotation.requested_by);
        let entry = Entry {
            actor: &actor,
            action: "owner.rotate",
            target: &target,
            request_id: &row.rotation.id,
            outcome: state,
            details: &details,
        };
        self.audit.append(&entry).await.map_err(|e| e.to_string())?;
        metrics::counter!("custody_owner_rotations_total", "outcome" => state).increment(1);
        match outcome {
            Ok(()) => {
                tracing::info!(rotation = %row.rotation.id, owner = %row.rotation.new_owner, "owner rotation confirmed")
            }
            Err(why) => tracing::warn!(rotation = %row.rotation.id, reason = %why, "owner rotation failed"),
        }
        Ok(())
    }
}
