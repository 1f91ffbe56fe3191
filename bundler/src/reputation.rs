//! ERC-7562 reputation: `opsSeen` / `opsIncluded` per entity, decayed every hour, giving
//! `ok`, `throttled` or `banned`; persisted in `bundler_reputation`.
//!
//! ```text
//! maxSeen = opsSeen / MIN_INCLUSION_RATE_DENOMINATOR
//! banned     if maxSeen > opsIncluded + BAN_SLACK
//! throttled  if maxSeen > opsIncluded + THROTTLING_SLACK
//! hourly:    opsSeen = opsSeen * 23 // 24, opsIncluded = opsIncluded * 23 // 24
//! ```
//!
//! Reputation is kept per address across both EntryPoints.

use alloy::primitives::Address;
use serde::{Deserialize, Serialize};

use crate::error::BundlerError;
use crate::store::{RepRow, Store};

/// ERC-7562 `MIN_INCLUSION_RATE_DENOMINATOR` for a bundler.
pub const MIN_INCLUSION_RATE_DENOMINATOR: u64 = 10;
/// ERC-7562 `THROTTLING_SLACK`.
pub const THROTTLING_SLACK: u64 = 10;
/// ERC-7562 `BAN_SLACK`.
pub const BAN_SLACK: u64 = 50;
/// ERC-7562 `SAME_SENDER_MEMPOOL_COUNT`: live operations per unstaked sender.
pub const SAME_SENDER_MEMPOOL_COUNT: usize = 4;
/// ERC-7562 `SAME_UNSTAKED_ENTITY_MEMPOOL_COUNT`.
pub const SAME_UNSTAKED_ENTITY_MEMPOOL_COUNT: u64 = 10;
/// ERC-7562 `MAX_OPS_ALLOWED_UNSTAKED_ENTITY`.
pub const MAX_OPS_ALLOWED_UNSTAKED_ENTITY: u64 = 10_000;
/// ERC-7562 `THROTTLED_ENTITY_MEMPOOL_COUNT`.
pub const THROTTLED_ENTITY_MEMPOOL_COUNT: usize = 4;
/// ERC-7562 `THROTTLED_ENTITY_BUNDLE_COUNT`.
pub const THROTTLED_ENTITY_BUNDLE_COUNT: usize = 4;
/// ERC-7562 `THROTTLED_ENTITY_LIVE_BLOCKS`: blocks an operation of a throttled entity may wait.
pub const THROTTLED_ENTITY_LIVE_BLOCKS: u64 = 10;
/// `opsSeen` given to an entity that made a bundle fail (GREP-040): banned at once.
pub const FAILED_BUNDLE_OPS_SEEN: u64 = 10_000;

/// An entity's standing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReputationStatus {
    Ok,
    Throttled,
    Banned,
}

/// An entity's counters (decay applied).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reputation {
    pub ops_seen: u64,
    pub ops_included: u64,
}

impl Reputation {
    /// ERC-7562 status.
    pub fn status(&self) -> ReputationStatus {
        let max_seen = self.ops_seen / MIN_INCLUSION_RATE_DENOMINATOR;
        if max_seen > self.ops_included + BAN_SLACK {
            ReputationStatus::Banned
        } else if max_seen > self.ops_included + THROTTLING_SLACK {
            ReputationStatus::Throttled
        } else {
            ReputationStatus::Ok
        }
    }

    /// UREP-020: live operations allowed for an unstaked paymaster (and, stricter than the ERC, an
    /// unstaked factory): `SAME_UNSTAKED_ENTITY_MEMPOOL_COUNT + inclusionRate * min(opsIncluded,
    /// MAX_OPS_ALLOWED_UNSTAKED_ENTITY)`, `inclusionRate = opsIncluded / opsSeen` (rounded down at the end).
    pub fn unstaked_entity_allowance(&self) -> u64 {
        let capped = u128::from(self.ops_included.min(MAX_OPS_ALLOWED_UNSTAKED_ENTITY));
        let earned = (u128::from(self.ops_included) * capped).checked_div(u128::from(self.ops_seen)).unwrap_or(0);
        SAME_UNSTAKED_ENTITY_MEMPOOL_COUNT.saturating_add(u64::try_from(earned).unwrap_or(u64::MAX))
    }

    /// The counters after `hours` hourly decays.
    pub fn decayed(mut self, hours: i64) -> Self {
        // ERC-7562: `x * 23 // 24`, written `x - ceil(x / 24)` so that it cannot overflow. After about
        // 1,040 hourly decays even u64::MAX is zero.
        for _ in 0..hours.clamp(0, 24 * 48) {
            if self.ops_seen == 0 && self.ops_included == 0 {
                break;
            }
            self.ops_seen -= self.ops_seen.div_ceil(24);
            self.ops_included -= self.ops_included.div_ceil(24);
        }
        self
    }
}

/// The current hour since the Unix epoch.
pub(crate) fn current_hour() -> i64 {
    crate::store::now_millis() / 3_600_000
}

/// Reputation over the store.
#[derive(Clone, Debug)]
pub(crate) struct ReputationBook {
    store: Store,
}

impl ReputationBook {
    pub(crate) fn new(store: Store) -> Self {
        Self { store }
    }

    /// An entity's counters, with pending hourly decays applied (and persisted).
    pub(crate) async fn get(&self, address: Address) -> Result<Reputation, BundlerError> {
        let Some(row) = self.store.reputation(address).await? else { return Ok(Reputation::default()) };
        Ok(self.decay(row).await?.1)
    }

    async fn decay(&self, row: RepRow) -> Result<(Address, Reputation), BundlerError> {
        let hour = current_hour();
        let rep = Reputation { ops_seen: row.ops_seen, ops_included: row.ops_included };
        if row.decayed_hour >= hour {
            return Ok((row.address, rep));
        }
        let rep = rep.decayed(hour - row.decayed_hour);
        self.store
            .put_reputation(&RepRow {
                address: row.address,
                ops_seen: rep.ops_seen,
                ops_included: rep.ops_included,
                decayed_hour: hour,
            })
            .await?;
        Ok((row.address, rep))
    }

    pub(crate) async fn seen(&self, address: Address) -> Result<(), BundlerError> {
        self.store.bump_reputation(address, 1, 0, current_hour()).await
    }

    /// `count` more operations naming `address` were included.
    pub(crate) async fn included(&self, address: Address, count: u64) -> Result<(), BundlerError> {
        self.store.bump_reputation(address, 0, count, current_hour()).await
    }

    /// GREP-040: an entity made an operation fail at bundle time; it is banned (`opsSeen` =
    /// [`FAILED_BUNDLE_OPS_SEEN`], `opsIncluded` = 0) until decay restores it.
    pub(crate) async fn failed_bundle(&self, address: Address) -> Result<(), BundlerError> {
        self.set(address, Reputation { ops_seen: FAILED_BUNDLE_OPS_SEEN, ops_included: 0 }).await
    }

    /// Sets an entity's counters (debug_bundler_setReputation).
    pub(crate) async fn set(&self, address: Address, rep: Reputation) -> Result<(), BundlerError> {
        self.store
            .put_reputation(&RepRow {
                address,
                ops_seen: rep.ops_seen,
                ops_included: rep.ops_included,
                decayed_hour: current_hour(),
            })
            .await
    }

    pub(crate) async fn all(&self) -> Result<Vec<(Address, Reputation)>, BundlerError> {
        let mut out = Vec::new();
        for row in self.store.all_reputation().await? {
            out.push(self.decay(row).await?);
        }
        Ok(out)
    }

    pub(crate) async fn clear(&self) -> Result<(), BundlerError> {
        self.store.clear_reputation().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(ops_seen: u64, ops_included: u64) -> Reputation {
        Reputation { ops_seen, ops_included }
    }

    #[test]
    fn status_follows_the_slacks() {
        assert_eq!(rep(0, 0).status(), ReputationStatus::Ok);
        // maxSeen = 110 / 10 = 11 > 0 + 10: throttled; 100 / 10 = 10 is not.
        assert_eq!(rep(100, 0).status(), ReputationStatus::Ok);
        assert_eq!(rep(110, 0).status(), ReputationStatus::Throttled);
        assert_eq!(rep(510, 0).status(), ReputationStatus::Banned);
        assert_eq!(rep(500, 0).status(), ReputationStatus::Throttled);
        // Inclusions restore standing.
        assert_eq!(rep(510, 1).status(), ReputationStatus::Throttled);
        assert_eq!(rep(510, 41).status(), ReputationStatus::Ok);
        assert_eq!(rep(FAILED_BUNDLE_OPS_SEEN, 0).status(), ReputationStatus::Banned);
    }

    #[test]
    fn hourly_decay() {
        assert_eq!(rep(240, 48).decayed(1), rep(230, 46));
        // x * 23 // 24, as the ERC writes it: 25 → 23 and 23 → 22, not 24 and 23; small counts reach zero.
        assert_eq!(rep(25, 23).decayed(1), rep(23, 22));
        assert_eq!(rep(5, 1).decayed(5), rep(0, 0));
        for x in [1u64, 23, 24, 25, 47, 1_000_003] {
            assert_eq!(rep(x, 0).decayed(1).ops_seen, x * 23 / 24, "{x}");
        }
        assert_eq!(rep(240, 48).decayed(0), rep(240, 48));
        assert_eq!(rep(240, 48).decayed(-3), rep(240, 48));
        assert_eq!(rep(u64::MAX, u64::MAX).decayed(i64::MAX), rep(0, 0));
    }

    #[test]
    fn unstaked_allowance() {
        assert_eq!(rep(0, 0).unstaked_entity_allowance(), 10);
        // inclusionRate 1 × min(100, 10,000).
        assert_eq!(rep(100, 100).unstaked_entity_allowance(), 10 + 100);
        // inclusionRate 0.05 × min(50,000, 10,000) = 500.
        assert_eq!(rep(1_000_000, 50_000).unstaked_entity_allowance(), 10 + 500);
        // inclusionRate 0.5 × 3, rounded down.
        assert_eq!(rep(6, 3).unstaked_entity_allowance(), 10 + 1);
        assert_eq!(rep(u64::MAX, u64::MAX).unstaked_entity_allowance(), 10 + 10_000);
    }
}
