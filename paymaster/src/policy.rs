//! The static rules of a policy: time window, sender lists, call targets and selectors, per-operation gas.
//! The counted limits (global, per sender) are the budget's ([`crate::budget`]).

use alloy::primitives::{Address, Bytes, FixedBytes};
use alloy::sol_types::SolCall;
use custody_contracts::UserOperation;
use custody_contracts::bindings::peruri_account_v08::PeruriAccountV08 as Account;

use crate::config::{PolicyConfig, Scope};

/// Why a policy does not sponsor an operation: the policy, the rule (a stable name) and a sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// The policy id.
    pub policy: String,
    /// The rule that refused: `not_started`, `ended`, `sender_blocked`, `sender_not_allowed`,
    /// `call_not_understood`, `target_not_allowed`, `selector_not_allowed`, `operation_gas`,
    /// `global_gas`, `global_ops`, `sender_gas`, `sender_ops`, `unknown_policy`.
    pub rule: &'static str,
    /// What was wrong, for the caller.
    pub message: String,
}

impl Denial {
    pub(crate) fn new(policy: &str, rule: &'static str, message: impl Into<String>) -> Self {
        Self { policy: policy.to_owned(), rule, message: message.into() }
    }
}

/// The calls a Peruri (or SimpleAccount-compatible) account makes for `call_data`: `execute` and both
/// `executeBatch` forms; `None` for anything else.
pub fn account_calls(call_data: &[u8]) -> Option<Vec<(Address, Bytes)>> {
    if let Ok(c) = Account::executeCall::abi_decode(call_data) {
        return Some(vec![(c.target, c.data)]);
    }
    if let Ok(c) = Account::executeBatch_0Call::abi_decode(call_data) {
        return Some(c.calls.into_iter().map(|c| (c.target, c.data)).collect());
    }
    if let Ok(c) = Account::executeBatch_1Call::abi_decode(call_data) {
        return Some(c.target.into_iter().zip(c.data).collect());
    }
    None
}

/// Checks `op` against `policy`'s static rules at unix time `now`.
pub fn check(policy: &PolicyConfig, op: &UserOperation, now: u64) -> Result<(), Denial> {
    let deny = |rule, message: String| Err(Denial::new(&policy.id, rule, message));
    if let Some(start) = policy.not_before
        && now < start
    {
        return deny("not_started", format!("the policy sponsors from {start} (unix seconds)"));
    }
    if let Some(end) = policy.not_after
        && now >= end
    {
        return deny("ended", format!("the policy ended at {end} (unix seconds)"));
    }
    if policy.senders_block.contains(&op.sender) {
        return deny("sender_blocked", format!("sender {} is blocked", op.sender));
    }
    if !policy.senders_allow.is_empty() && !policy.senders_allow.contains(&op.sender) {
        return deny("sender_not_allowed", format!("sender {} is not on the allow list", op.sender));
    }
    if !policy.targets.is_empty() || !policy.selectors.is_empty() {
        let Some(calls) = account_calls(&op.call_data) else {
            return deny("call_not_understood", "callData is not execute or executeBatch".to_owned());
        };
        for (target, data) in calls {
            let selector = data.get(..4).map(FixedBytes::<4>::from_slice);
            if target == op.sender && selector.is_some_and(|s| policy.self_selectors.contains(&s)) {
                continue;
            }
            if !policy.targets.is_empty() && !policy.targets.contains(&target) {
                return deny("target_not_allowed", format!("calls to {target} are not sponsored"));
            }
            if !policy.selectors.is_empty() && !selector.is_some_and(|s| policy.selectors.contains(&s)) {
                let shown = selector.map_or_else(|| "a plain transfer".to_owned(), |s| s.to_string());
                return deny("selector_not_allowed", format!("{shown} on {target} is not sponsored"));
            }
        }
    }
    let gas = op.max_gas();
    for limit in policy.limits.iter().filter(|l| l.scope == Scope::Operation) {
        if let Some(max) = limit.max_gas
            && gas > max
        {
            return deny("operation_gas", format!("the operation's gas limits sum to {gas}, over {max}"));
        }
    }
    Ok(())
}
