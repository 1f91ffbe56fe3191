//! What an issuance item is: one enum from the policy's rules through the store's rows to the planned
//! calls. Stored in `issuance_items` as `kind` (`token`, `badge`, `log`) with `amount` or `badge_id`
//! (decimal text); a row of any other kind is corrupt. (`burn` rows are no more: PTKN is burned only by
//! its holder, as an operation of the user's own account.)

use alloy::primitives::U256;
use custody_db::{decode_u256, encode_u256};

use crate::Error;

/// One thing an activity issues, as the policy decides it, the store keeps it and a batch carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ItemKind {
    /// PTKN minted, in base units (10^-18).
    Token(U256),
    /// A PBADGE id (at most once per user).
    Badge(U256),
    /// A log entry: the activity's leaf, carried by the batch's anchor.
    Log,
}

/// The base units of one PTKN (18 decimals).
fn one_ptkn() -> U256 {
    U256::from(10u64).pow(U256::from(18))
}

impl ItemKind {
    /// `whole` PTKN minted.
    pub(crate) fn token(whole: u64) -> Self {
        Self::Token(U256::from(whole) * one_ptkn())
    }

    /// The PBADGE `id`.
    pub(crate) fn badge(id: u64) -> Self {
        Self::Badge(U256::from(id))
    }

    /// Whether it moves no PTKN (a mint of 0).
    pub(crate) fn is_zero_amount(&self) -> bool {
        matches!(self, Self::Token(a) if a.is_zero())
    }

    /// The stored `kind`.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Self::Token(_) => "token",
            Self::Badge(_) => "badge",
            Self::Log => "log",
        }
    }

    /// The stored `amount` and `badge_id` columns.
    pub(crate) fn columns(&self) -> (Option<String>, Option<String>) {
        match self {
            Self::Token(a) => (Some(encode_u256(*a)), None),
            Self::Badge(id) => (None, Some(encode_u256(*id))),
            Self::Log => (None, None),
        }
    }

    /// The item of a stored row's `kind`, `amount` and `badge_id`.
    pub(crate) fn from_row(kind: &str, amount: Option<&str>, badge_id: Option<&str>) -> Result<Self, Error> {
        let number = |v: Option<&str>| -> Result<U256, Error> {
            v.and_then(|s| decode_u256(s).ok()).ok_or(Error::CorruptRow("issuance_items amount or badge"))
        };
        Ok(match kind {
            "token" => Self::Token(number(amount)?),
            "badge" => Self::Badge(number(badge_id)?),
            "log" => Self::Log,
            _ => return Err(Error::CorruptRow("issuance_items.kind")),
        })
    }

    /// A direct mint's part of its request fingerprint, in whole PTKN (`Token(5)`):
    /// the form fingerprints have always had, so that keys stored before still replay.
    pub(crate) fn fingerprint(&self) -> String {
        match self {
            Self::Token(a) => format!("Token({})", a / one_ptkn()),
            Self::Badge(id) => format!("Badge({id})"),
            Self::Log => "Log".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_an_unknown_kind_is_corrupt() {
        for item in [ItemKind::token(5), ItemKind::badge(9), ItemKind::Log] {
            let (amount, badge_id) = item.columns();
            let back = ItemKind::from_row(item.as_str(), amount.as_deref(), badge_id.as_deref()).expect("decodes");
            assert_eq!(back, item);
        }
        assert_eq!(ItemKind::token(5).columns().0.as_deref(), Some("5000000000000000000"));
        assert!(matches!(ItemKind::from_row("burn", Some("1"), None), Err(Error::CorruptRow(_))), "no burns");
        assert!(matches!(ItemKind::from_row("stamp", None, None), Err(Error::CorruptRow("issuance_items.kind"))));
        assert!(matches!(ItemKind::from_row("token", None, None), Err(Error::CorruptRow(_))));
        assert!(matches!(ItemKind::from_row("badge", Some("1"), None), Err(Error::CorruptRow(_))));
    }

    #[test]
    fn fingerprints_keep_the_whole_token_form() {
        assert_eq!(ItemKind::token(5).fingerprint(), "Token(5)");
        assert_eq!(ItemKind::badge(7).fingerprint(), "Badge(7)");
        assert_eq!(ItemKind::Log.fingerprint(), "Log");
        assert!(ItemKind::token(0).is_zero_amount() && !ItemKind::badge(0).is_zero_amount());
    }
}
