//! The policy engine: what an activity issues, from the configured rules.
//!
//! | type | issues |
//! |---|---|
//! | `attendance` | `attendance.amount` PTKN; the month's badge once the month's count reaches the threshold |
//! | `training_completed` | the training badge and `training.bonus` PTKN |
//! | `milestone` | the milestone's badge (if configured) and a log entry |
//! | anything else | nothing (stored and anchored only) |
//!
//! Badges are issued at most once per user and badge id (the store enforces it).

use serde_json::Value;

use crate::{config::PolicyConfig, item::ItemKind};

/// Activity types with rules.
pub(crate) const ATTENDANCE: &str = "attendance";
pub(crate) const TRAINING: &str = "training_completed";
pub(crate) const MILESTONE: &str = "milestone";
/// The internal type of direct mints (`/mintToken`); refused at intake.
pub(crate) const MINT: &str = "_mint";

/// The rules, evaluated without side effects.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    config: PolicyConfig,
}

impl Policy {
    pub(crate) fn new(config: PolicyConfig) -> Self {
        Self { config }
    }

    /// The period counter an activity advances (attendance: its `YYYYMM`), if any.
    pub(crate) fn counter(kind: &str, occurred_at: i64) -> Option<String> {
        (kind == ATTENDANCE).then(|| crate::time::year_month(occurred_at).to_string())
    }

    /// What an activity issues, each award with the period count (see [`Policy::counter`]) from which it
    /// is issued, 0 for always: the store applies them once it knows the count after this activity.
    pub(crate) fn awards(&self, kind: &str, payload: &Value, occurred_at: i64) -> Vec<(ItemKind, u64)> {
        let c = &self.config;
        match kind {
            ATTENDANCE => {
                let mut awards = vec![(ItemKind::token(c.attendance.amount), 0)];
                let threshold = c.attendance.monthly_threshold;
                if threshold > 0 {
                    let month = crate::time::year_month(occurred_at);
                    awards.push((ItemKind::badge(c.attendance.monthly_badge_base.saturating_add(month)), threshold));
                }
                awards
            }
            TRAINING => {
                let badge = payload.get("badge_id").and_then(Value::as_u64).unwrap_or(c.training.badge_id);
                vec![(ItemKind::badge(badge), 0), (ItemKind::token(c.training.bonus), 0)]
            }
            MILESTONE => {
                let name = payload.get("milestone").and_then(Value::as_str);
                let badge = name.and_then(|n| c.milestones.get(n)).copied();
                badge.map(ItemKind::badge).into_iter().chain([ItemKind::Log]).map(|a| (a, 0)).collect()
            }
            _ => Vec::new(),
        }
        .into_iter()
        .filter(|(a, _)| !a.is_zero_amount())
        .collect()
    }

    /// What an activity issues when the period count after it is `count`.
    #[cfg(test)]
    fn evaluate(&self, kind: &str, payload: &Value, occurred_at: i64, count: u64) -> Vec<ItemKind> {
        self.awards(kind, payload, occurred_at).into_iter().filter(|(_, from)| count >= *from).map(|(a, _)| a).collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::{AttendanceRule, TrainingRule};

    fn policy() -> Policy {
        Policy::new(PolicyConfig {
            attendance: AttendanceRule { amount: 10, monthly_threshold: 3, monthly_badge_base: 1_000_000 },
            training: TrainingRule { badge_id: 7, bonus: 50 },
            milestones: [("first_year".to_owned(), 900)].into(),
        })
    }

    const JAN_2026: i64 = 1_768_000_000; // 2026-01-09

    #[test]
    fn attendance_pays_and_the_months_badge_comes_at_the_threshold() {
        let p = policy();
        assert_eq!(p.evaluate(ATTENDANCE, &json!({}), JAN_2026, 1), vec![ItemKind::token(10)]);
        assert_eq!(p.evaluate(ATTENDANCE, &json!({}), JAN_2026, 2), vec![ItemKind::token(10)]);
        assert_eq!(
            p.evaluate(ATTENDANCE, &json!({}), JAN_2026, 3),
            vec![ItemKind::token(10), ItemKind::badge(1_202_601)],
            "threshold reached: the month's badge (the store keeps it to once per user)"
        );
        assert_eq!(Policy::counter(ATTENDANCE, JAN_2026).as_deref(), Some("202601"));
        assert_eq!(Policy::counter(TRAINING, JAN_2026), None);
    }

    #[test]
    fn training_milestones_and_unknown_types() {
        let p = policy();
        assert_eq!(p.evaluate(TRAINING, &json!({}), JAN_2026, 0), vec![ItemKind::badge(7), ItemKind::token(50)]);
        assert_eq!(
            p.evaluate(TRAINING, &json!({"badge_id": 8}), JAN_2026, 0),
            vec![ItemKind::badge(8), ItemKind::token(50)]
        );
        assert_eq!(
            p.evaluate(MILESTONE, &json!({"milestone": "first_year"}), JAN_2026, 0),
            vec![ItemKind::badge(900), ItemKind::Log]
        );
        assert_eq!(p.evaluate(MILESTONE, &json!({"milestone": "other"}), JAN_2026, 0), vec![ItemKind::Log]);
        assert_eq!(p.evaluate("coffee_break", &json!({"x": 1}), JAN_2026, 0), vec![]);
    }

    #[test]
    fn zero_amounts_and_thresholds_issue_nothing() {
        let p = Policy::new(PolicyConfig {
            attendance: AttendanceRule { amount: 0, monthly_threshold: 0, monthly_badge_base: 0 },
            ..PolicyConfig::default()
        });
        assert_eq!(p.evaluate(ATTENDANCE, &json!({}), JAN_2026, 100), vec![]);
    }
}
