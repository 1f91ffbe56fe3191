//! Activity mirror and token issuance (`shared/DESIGN.md` §7): intake, policy, merkle batches, mints.
//!
//! ```text
//! POST /activity/track ─► Issuance::track ──one DB transaction──► activity + policy items + outbox
//!                                                                     │
//!   Worker::tick:  batch ─► merkle tree (StandardMerkleTree shape), planned calls
//!                  sign  ─► recorded with custody-sender: nonce + raw tx stored (HSM issuer / anchor keys)
//!                  submit ─► broadcast (same bytes on retry)
//!                  confirm ─► the sender's outcomes ─► activities confirmed with root, leaf and proof
//!   calls: PLOG.anchor(batchId, root, n, uri) · PTKN.batchMint(batchId, …) · PBADGE.batchMint(batchId, …)
//!   Indexer: PTKN / PBADGE logs ─► token_balance_cache, badge_index ─► Issuance::token_balance, badges
//! ```
//!
//! An item is one `ItemKind` throughout (a PTKN mint, a badge, a log entry): the policy
//! issues it, the store keeps it, the plan turns it into calls; a stored kind it does not know is a
//! corrupt row. Nothing is minted twice: each call's batch id is derived from the batch's root and
//! refused on-chain a second time, and a signed transaction is kept and re-sent byte for byte.
//!
//! The tables live in the service database (`custody-db`: pool, write gate, `custody_db::migrate` of
//! `issuance/migrations/{sqlite,postgres}`); every query is a method of the crate's store (`store/`:
//! intake, views, batches, calls, caches), which the worker, the indexer and [`Issuance`] call.

mod config;
mod error;
mod failpoint;
mod indexer;
mod item;
mod merkle;
mod plan;
mod policy;
mod rabbitmq;
mod store;
mod time;
mod worker;

pub use config::{AttendanceRule, PolicyConfig, TrainingRule, WorkerConfig};
pub use error::Error;
pub use indexer::Indexer;
pub use merkle::{MerkleTree, activity_leaf, leaf_hash, verify};
pub use plan::{IssuanceContracts, chain_batch_id};
pub use rabbitmq::{ActivityConsumer, REASON_HEADER, RabbitMqConfig, Recorded, Recorder};
pub use store::{
    ActivityCursor, ActivityQuery, ActivityStatus, ActivitySummary, ActivityView, IssuedItem, MirrorTotals,
    NewActivity, TrackRequest, Tracked,
};
pub use worker::{Progress, Worker};

use alloy::primitives::{Address, U256};
use serde_json::json;
use sqlx::AnyPool;

use crate::{
    item::ItemKind,
    policy::{MINT, Policy},
    store::Store,
};

/// Intake and reads of the activity mirror.
#[derive(Clone, Debug)]
pub struct Issuance {
    store: Store,
    policy: std::sync::Arc<Policy>,
}

impl Issuance {
    /// The mirror on `pool` (migrated here) with the policy `rules`.
    pub async fn open(pool: AnyPool, rules: PolicyConfig) -> Result<Self, Error> {
        custody_sender::Sender::migrate(&pool).await?;
        Ok(Self { store: Store::open(pool).await?, policy: std::sync::Arc::new(Policy::new(rules)) })
    }

    /// Stores an activity with what it issues and its outbox entry, in one transaction. Idempotent per
    /// `(caller, key)`: a replay returns the first activity; other parameters are [`Error::IdempotencyConflict`].
    pub async fn track(&self, caller: &str, key: &str, activity: NewActivity) -> Result<Tracked, Error> {
        let fingerprint = store::fingerprint(&activity, Some(activity.occurred_at), None);
        self.intake(caller, key, activity, None, fingerprint).await
    }

    /// As [`Issuance::track`], for an activity as the app sends it: `occurred_at` defaults to the time of
    /// receipt, and the fingerprint covers only what was sent, so a retry at any later time replays.
    pub async fn track_request(&self, caller: &str, key: &str, request: TrackRequest) -> Result<Tracked, Error> {
        let (activity, fingerprint) =
            request.into_activity(store::now_millis() / 1000).ok_or(Error::InvalidOccurredAt)?;
        self.intake(caller, key, activity, None, fingerprint).await
    }

    /// Mints `amount` whole PTKN to the user's account, through the same path (idempotent likewise).
    pub async fn mint(
        &self,
        caller: &str,
        key: &str,
        user_id: &str,
        amount: u64,
        reason: &str,
    ) -> Result<Tracked, Error> {
        self.direct(caller, key, user_id, MINT, ItemKind::token(amount), reason).await
    }

    async fn direct(
        &self,
        caller: &str,
        key: &str,
        user_id: &str,
        kind: &str,
        item: ItemKind,
        reason: &str,
    ) -> Result<Tracked, Error> {
        if item.is_zero_amount() {
            return Err(Error::Invalid("amount must be at least 1"));
        }
        if reason.chars().count() > 256 {
            return Err(Error::Invalid("reason is longer than 256 characters"));
        }
        let activity = NewActivity {
            user_id: user_id.to_owned(),
            kind: kind.to_owned(),
            payload: json!({ "reason": reason }),
            occurred_at: store::now_millis() / 1000,
        };
        // The time of the request is the server's: not part of what the caller sent.
        let fingerprint = store::fingerprint(&activity, None, Some(&item));
        self.intake(caller, key, activity, Some(item), fingerprint).await
    }

    /// Checks and stores one activity (see [`Issuance::track`]).
    async fn intake(
        &self,
        caller: &str,
        key: &str,
        activity: NewActivity,
        direct: Option<ItemKind>,
        request_hash: String,
    ) -> Result<Tracked, Error> {
        if direct.is_none() && !store::intake_kind_ok(&activity.kind) {
            return Err(Error::Invalid("type must be 1 to 64 of [A-Za-z0-9_.-] and not start with '_'"));
        }
        validate(&activity)?;
        let intake = store::Intake {
            policy: self.policy.clone(),
            caller: caller.to_owned(),
            key: key.to_owned(),
            activity,
            direct,
            request_hash,
        };
        self.store.track(intake).await
    }

    /// A page of `user_id`'s activities, newest first, with the cursor of the next page.
    pub async fn activities_of(
        &self,
        user_id: &str,
        query: &ActivityQuery,
    ) -> Result<(Vec<ActivitySummary>, Option<ActivityCursor>), Error> {
        self.store.activities_of(user_id, query).await
    }

    /// The activity `id` (`None` if unknown).
    pub async fn activity(&self, id: &str) -> Result<Option<ActivityView>, Error> {
        self.store.view(id).await
    }

    /// The PTKN balance of `account` (base units) in `token_balance_cache`, as last indexed.
    pub async fn token_balance(&self, account: Address) -> Result<U256, Error> {
        self.store.token_balance(account).await
    }

    /// The badges `account` holds (`(badge id, amount)`, amount > 0) in `badge_index`, as last indexed.
    pub async fn badges(&self, account: Address) -> Result<Vec<(U256, U256)>, Error> {
        self.store.badges(account).await
    }

    /// Every activity's status and when it last changed (for benchmarks: one query over all of them).
    pub async fn statuses(&self) -> Result<Vec<ActivityStatus>, Error> {
        self.store.statuses().await
    }

    /// What the mirror has planned and sent: batches, mined calls and their gas, PTKN mints carried.
    pub async fn totals(&self) -> Result<MirrorTotals, Error> {
        self.store.totals().await
    }
}

fn validate(activity: &NewActivity) -> Result<(), Error> {
    // The wallets service's rule, so that any user id tracked here can have a wallet.
    if custody_accounts::validate_user_id(&activity.user_id).is_err() {
        return Err(Error::Invalid("user_id must be 1 to 256 characters without control characters"));
    }
    let latest = store::now_millis() / 1000 + 86_400;
    if activity.occurred_at <= 0 || activity.occurred_at > latest {
        return Err(Error::OutOfRange("occurred_at must be after 1970 and at most a day in the future"));
    }
    Ok(())
}
