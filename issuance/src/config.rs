//! Issuance rules and worker settings (the server's `[issuance]` section).

use std::{collections::BTreeMap, time::Duration};

use serde::Deserialize;

/// Policy rules: amounts in whole PTKN (scaled by 10^18 on-chain), badge ids as on PBADGE.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// `attendance` activities.
    #[serde(default)]
    pub attendance: AttendanceRule,
    /// `training_completed` activities.
    #[serde(default)]
    pub training: TrainingRule,
    /// `milestone` activities: the payload's `"milestone"` name → badge id. Unknown names: log entry only.
    #[serde(default)]
    pub milestones: BTreeMap<String, u64>,
}

/// Attendance: PTKN per activity, plus the month's badge when the month's count reaches `monthly_threshold`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AttendanceRule {
    /// PTKN per attendance.
    pub amount: u64,
    /// Attendances in a calendar month (UTC) that earn the month's badge (0: no badge).
    pub monthly_threshold: u64,
    /// The month's badge id is `monthly_badge_base + YYYYMM` (base 0: e.g. 202601).
    #[serde(default)]
    pub monthly_badge_base: u64,
}

impl Default for AttendanceRule {
    fn default() -> Self {
        Self { amount: 10, monthly_threshold: 20, monthly_badge_base: 0 }
    }
}

/// Training completion: a badge (the payload's `"badge_id"`, else `badge_id`) and a PTKN bonus.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TrainingRule {
    /// The training badge.
    pub badge_id: u64,
    /// PTKN bonus.
    pub bonus: u64,
}

impl Default for TrainingRule {
    fn default() -> Self {
        Self { badge_id: 1, bonus: 50 }
    }
}

/// How the mirror worker batches and sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Most activities per merkle batch.
    pub batch_size: usize,
    /// How often a merkle batch is formed from the outbox (a full batch is followed at once by the next).
    pub interval: Duration,
    /// Most recipients per batchMint transaction (bounded by the block gas limit).
    pub max_mints_per_tx: usize,
    /// Attempts at a call that does not take effect (reverted, cancelled, dropped) before its activities fail.
    pub max_attempts: u32,
    /// The PLOG batch URI prefix (the batch id is appended).
    pub batch_uri: String,
    /// When the worker's transactions count as stuck (re-sent after 10 s without a receipt).
    pub sender: custody_sender::SenderConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            batch_size: 256,
            interval: Duration::from_millis(500),
            max_mints_per_tx: 400,
            max_attempts: 3,
            batch_uri: "peruri:batch:".to_owned(),
            sender: custody_sender::SenderConfig {
                stuck_after: Duration::from_secs(10),
                ..custody_sender::SenderConfig::default()
            },
        }
    }
}
