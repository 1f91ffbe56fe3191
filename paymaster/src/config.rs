//! The `[paymaster]` configuration: the signing key, the gas the paymaster asks for, the signature
//! validity and the sponsorship policies.

use alloy::primitives::{Address, FixedBytes};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The paymaster settings; every field but `policies` has a default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymasterConfig {
    /// Name of the infrastructure key (class `infra`) that signs sponsorships: a PeruriPaymaster signer.
    pub key: String,
    /// Seconds a sponsorship signature is valid (`validUntil` = now + this); 1 to 86,400, never unbounded.
    pub validity_secs: u64,
    /// `paymasterVerificationGasLimit` the stub asks for (PeruriPaymaster's validation uses ~10,000).
    pub verification_gas_limit: u64,
    /// `paymasterPostOpGasLimit` the stub asks for (PeruriPaymaster's postOp does nothing).
    pub post_op_gas_limit: u64,
    /// The most `paymasterVerificationGasLimit` a request may carry into a signature.
    pub max_verification_gas_limit: u64,
    /// `sponsor.name` in the answers (ERC-7677).
    pub sponsor_name: String,
    /// Readiness warns when a PeruriPaymaster's EntryPoint deposit is below this (wei; 0 on the
    /// zero-gas chain, where the deposit pays nothing).
    pub min_deposit_wei: u128,
    /// The policy used when the request's context names none.
    pub default_policy: String,
    /// The sponsorship policies.
    pub policies: Vec<PolicyConfig>,
}

impl Default for PaymasterConfig {
    fn default() -> Self {
        Self {
            key: "paymaster".to_owned(),
            validity_secs: 600,
            verification_gas_limit: 60_000,
            post_op_gas_limit: 1_000,
            max_verification_gas_limit: 200_000,
            sponsor_name: "Peruri".to_owned(),
            min_deposit_wei: 0,
            default_policy: "default".to_owned(),
            policies: Vec::new(),
        }
    }
}

impl PaymasterConfig {
    /// Refuses settings the paymaster cannot run with.
    pub fn validate(&self) -> Result<(), Error> {
        let fail = |m: String| Err(Error::Config(m));
        if !(1..=86_400).contains(&self.validity_secs) {
            return fail(format!("validity_secs must be 1 to 86400, not {}", self.validity_secs));
        }
        if self.verification_gas_limit > self.max_verification_gas_limit {
            return fail("verification_gas_limit is above max_verification_gas_limit".to_owned());
        }
        if !self.policies.iter().any(|p| p.id == self.default_policy) {
            return fail(format!("default_policy {:?} is not among the policies", self.default_policy));
        }
        let mut ids: Vec<&str> = self.policies.iter().map(|p| p.id.as_str()).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return fail("two policies share an id".to_owned());
        }
        self.policies.iter().try_for_each(PolicyConfig::validate)
    }

    /// The policy `id`.
    pub fn policy(&self, id: &str) -> Option<&PolicyConfig> {
        self.policies.iter().find(|p| p.id == id)
    }
}

/// What one policy sponsors. Empty lists do not restrict (an empty `targets` allows any target).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// The policy id (a request's `context.policyId` names it); over the API, the path's.
    #[schema(max_length = 64, pattern = "^[A-Za-z0-9._-]{1,64}$", read_only)]
    pub id: String,
    /// Contracts the account may call (`execute` / `executeBatch` targets); the account itself counts
    /// as a target only when listed, like any other, or through `self_selectors`.
    #[schema(value_type = Vec<custody_accounts::AddressText>, max_items = 32)]
    pub targets: Vec<Address>,
    /// Function selectors the account may call on those targets (`0x` and 8 hex digits).
    #[schema(value_type = Vec<SelectorText>, max_items = 32)]
    pub selectors: Vec<FixedBytes<4>>,
    /// Functions the account may call on itself whatever `targets` and `selectors` say: its own owner
    /// change (`changeOwner`, `0xa6f9dae1`, as an officer's owner rotation sends it) or upgrade.
    #[schema(value_type = Vec<SelectorText>, max_items = 32)]
    pub self_selectors: Vec<FixedBytes<4>>,
    /// Only these senders (accounts), when not empty.
    #[schema(value_type = Vec<custody_accounts::AddressText>, max_items = 100)]
    pub senders_allow: Vec<Address>,
    /// Never these senders.
    #[schema(value_type = Vec<custody_accounts::AddressText>, max_items = 100)]
    pub senders_block: Vec<Address>,
    /// Unix seconds before which the policy sponsors nothing.
    #[serde(deserialize_with = "whole")]
    pub not_before: Option<u64>,
    /// Unix seconds from which the policy sponsors nothing.
    #[serde(deserialize_with = "whole")]
    pub not_after: Option<u64>,
    /// Gas and operation-count limits.
    #[schema(max_items = 8)]
    pub limits: Vec<Limit>,
}

/// The most targets or selectors a policy lists (the API's schema says the same).
pub const MAX_CALLS: usize = 32;
/// The most senders a policy's allow or block list holds.
pub const MAX_SENDERS: usize = 100;
/// The most limits a policy has.
pub const MAX_LIMITS: usize = 8;

/// A function selector as text (`0x` and 8 hex digits).
#[derive(Debug)]
pub struct SelectorText;

impl utoipa::PartialSchema for SelectorText {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::{ObjectBuilder, schema::Type};
        ObjectBuilder::new().schema_type(Type::String).pattern(Some("^0x[0-9a-fA-F]{8}$")).into()
    }
}

impl utoipa::ToSchema for SelectorText {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Selector")
    }
}

impl PolicyConfig {
    /// Refuses a policy that cannot be enforced as written: a bad id, an empty time window, a limit
    /// without a maximum, a list over its maximum ([`MAX_CALLS`], [`MAX_SENDERS`], [`MAX_LIMITS`]).
    pub fn validate(&self) -> Result<(), Error> {
        let fail = |m: String| Err(Error::Config(m));
        let id_ok = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        if self.id.is_empty() || self.id.len() > 64 || !self.id.chars().all(id_ok) {
            return fail("a policy id must be 1 to 64 letters, digits, '-', '_' or '.'".to_owned());
        }
        if let (Some(start), Some(end)) = (self.not_before, self.not_after)
            && start >= end
        {
            return fail(format!("policy {}: not_before must be before not_after", self.id));
        }
        if self.limits.iter().any(|l| l.max_gas.is_none() && l.max_ops.is_none()) {
            return fail(format!("policy {}: a limit needs max_gas or max_ops", self.id));
        }
        if self.limits.iter().any(|l| l.scope == Scope::Operation && l.max_ops.is_some()) {
            return fail(format!("policy {}: an operation limit caps max_gas only", self.id));
        }
        let lists = [
            ("targets", self.targets.len(), MAX_CALLS),
            ("selectors", self.selectors.len(), MAX_CALLS),
            ("self_selectors", self.self_selectors.len(), MAX_CALLS),
            ("senders_allow", self.senders_allow.len(), MAX_SENDERS),
            ("senders_block", self.senders_block.len(), MAX_SENDERS),
            ("limits", self.limits.len(), MAX_LIMITS),
        ];
        if let Some((name, _, max)) = lists.iter().find(|(_, n, max)| n > max) {
            return fail(format!("policy {}: {name} holds more than {max} entries", self.id));
        }
        Ok(())
    }
}

/// A budget: at most `max_gas` and `max_ops` within `scope`, counted since the last `reset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Whose operations count together.
    pub scope: Scope,
    /// Most gas (an operation counts its gas limits while reserved, its gas used once settled).
    #[serde(default, deserialize_with = "whole")]
    pub max_gas: Option<u64>,
    /// Most operations.
    #[serde(default, deserialize_with = "whole")]
    pub max_ops: Option<u64>,
    /// When the count starts again.
    #[serde(default)]
    pub reset: Reset,
}

/// An optional whole number that JSON may write as an integral float (`1e3`, `1000.0`: JSON Schema's
/// integer); past `u64::MAX` it saturates.
fn whole<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Whole(u64),
        Float(f64),
    }
    match Option::<Number>::deserialize(d)? {
        None => Ok(None),
        Some(Number::Whole(n)) => Ok(Some(n)),
        // The cast saturates.
        Some(Number::Float(f)) if f.fract() == 0.0 && f >= 0.0 => Ok(Some(f as u64)),
        Some(Number::Float(f)) => Err(serde::de::Error::custom(format!("{f} is not a whole number"))),
    }
}

/// Whose operations a [`Limit`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every operation of the policy.
    Global,
    /// Each sender's.
    Sender,
    /// Each operation alone (`max_gas` caps one operation's gas limits).
    Operation,
}

/// When a [`Limit`]'s count starts again (UTC).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Reset {
    /// Never.
    #[default]
    Never,
    /// At midnight.
    Daily,
    /// On Monday at midnight.
    Weekly,
    /// On the first of the month at midnight.
    Monthly,
}

impl Reset {
    /// The start (unix seconds) of the period that holds `now`.
    pub fn period_start(self, now: u64) -> u64 {
        const DAY: u64 = 86_400;
        let day = now / DAY;
        match self {
            Self::Never => 0,
            Self::Daily => day * DAY,
            // 1970-01-01 was a Thursday: Monday is 3 days later.
            Self::Weekly => (day - (day + 3) % 7) * DAY,
            Self::Monthly => {
                let (y, m, _) = civil_from_days(day);
                days_from_civil(y, m, 1) * DAY
            }
        }
    }
}

/// (year, month, day) of a day number since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: u64) -> (i64, u32, u32) {
    let z = z as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The day number of a civil date (inverse of [`civil_from_days`]).
fn days_from_civil(y: i64, m: u32, d: u32) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    u64::try_from(era * 146_097 + doe - 719_468).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_start_at_utc_midnight_monday_and_the_first() {
        // 2026-12-03T10:52:15Z is a Thursday.
        let now = 1_796_295_135;
        assert_eq!(Reset::Never.period_start(now), 0);
        assert_eq!(Reset::Daily.period_start(now), 1_796_256_000); // 2026-12-03T00:00Z
        assert_eq!(Reset::Weekly.period_start(now), 1_795_996_800); // 2026-11-30T00:00Z (Monday)
        assert_eq!(Reset::Monthly.period_start(now), 1_796_083_200); // 2026-12-01T00:00Z
        assert_eq!(Reset::Monthly.period_start(1_796_083_199), 1_793_491_200); // 2026-11-01T00:00Z
    }

    #[test]
    fn the_default_policy_must_exist_and_validity_is_bounded() {
        let policy = PolicyConfig { id: "default".into(), ..Default::default() };
        let ok = PaymasterConfig { policies: vec![policy], ..Default::default() };
        assert!(ok.validate().is_ok());
        assert!(PaymasterConfig { validity_secs: 0, ..ok.clone() }.validate().is_err());
        assert!(PaymasterConfig { default_policy: "other".into(), ..ok }.validate().is_err());
    }
}
