//! ERC-7562 checks that need the whole trace and the entities' stakes: storage access with associated
//! slots (STO-010..033), BALANCE/SELFBALANCE for staked entities only (OP-080), a context only from a
//! staked paymaster (EREP-050), and the verdict on
//! everything the [`Tracer`] flagged. Trusted entities skip all of it.

use std::collections::BTreeSet;

use alloy::primitives::{Address, U256};

use super::tracer::{Parties, StorageAccess, Tracer, Violation};
use crate::validation::{Entity, RpcErrorCode, ValidationError};

/// How many slots after `keccak(A ‖ x)` count as associated with `A`.
const ASSOCIATED_SLOTS: u64 = 128;

/// Facts about the entities the storage rules depend on.
#[derive(Clone, Copy)]
#[allow(missing_debug_implementations)]
pub(crate) struct EntityFacts<'a> {
    pub(crate) parties: &'a Parties,
    /// Whether the sender had code before this operation (no initCode).
    pub(crate) sender_exists: bool,
    pub(crate) staked: &'a dyn Fn(Entity) -> bool,
    /// Whether an address has code (at the end of the simulation).
    pub(crate) has_code: &'a dyn Fn(Address) -> bool,
    pub(crate) trusted: &'a dyn Fn(Entity) -> bool,
    /// Whether the paymaster's validation returned a non-empty context (for a `postOp`).
    pub(crate) paymaster_context: bool,
}

impl EntityFacts<'_> {
    fn address(&self, entity: Entity) -> Option<Address> {
        match entity {
            Entity::Sender => Some(self.parties.sender),
            Entity::Factory => self.parties.factory,
            Entity::Paymaster => self.parties.paymaster,
            Entity::Aggregator => None,
        }
    }
}

/// Applies every rule; returns the addresses (other than the sender) whose storage was accessed.
pub(crate) fn check(tracer: &Tracer, facts: &EntityFacts<'_>) -> Result<Vec<Address>, ValidationError> {
    if let Some(v) = tracer.violations.iter().find(|v| !(facts.trusted)(v.entity)) {
        return Err(rule_error(v, RpcErrorCode::BannedOpcode));
    }
    let unstaked_paymaster = !(facts.trusted)(Entity::Paymaster) && !(facts.staked)(Entity::Paymaster);
    if facts.paymaster_context && unstaked_paymaster {
        let v = Violation {
            entity: Entity::Paymaster,
            rule: "EREP-050",
            detail: "an unstaked paymaster returned a context".to_owned(),
        };
        return Err(rule_error(&v, RpcErrorCode::BannedOpcode));
    }
    if let Some(entity) = tracer.balance_uses.iter().copied().find(|e| !(facts.trusted)(*e) && !(facts.staked)(*e)) {
        let v = Violation { entity, rule: "OP-080", detail: "BALANCE/SELFBALANCE by an unstaked entity".to_owned() };
        return Err(rule_error(&v, RpcErrorCode::StakeTooLow));
    }
    for (address, entity) in &tracer.ext_code_targets {
        let exempt = *address == facts.parties.sender || U256::from_be_slice(address.as_slice()) <= U256::from(0xffff);
        if !exempt && !(facts.trusted)(*entity) && !(facts.has_code)(*address) {
            let v = Violation {
                entity: *entity,
                rule: "OP-041",
                detail: format!("EXTCODE* of {address}, which has no code"),
            };
            return Err(rule_error(&v, RpcErrorCode::BannedOpcode));
        }
    }
    let associated = |address: Address, slot: U256| {
        slot == U256::from_be_slice(address.as_slice())
            || tracer
                .keccak
                .iter()
                .any(|(a, base)| *a == address && slot >= *base && slot - *base < U256::from(ASSOCIATED_SLOTS))
    };
    let mut accessed = BTreeSet::new();
    for access in &tracer.storage {
        if access.address == facts.parties.sender || access.address == facts.parties.entry_point {
            continue; // STO-010; the EntryPoint's own accounting (depositTo) is not the entity's.
        }
        accessed.insert(access.address);
        if (facts.trusted)(access.entity) {
            continue;
        }
        storage_rule(access, facts, &associated)?;
    }
    Ok(accessed.into_iter().collect())
}

/// Allows an access if any rule does: STO-021/022 (the sender's associated storage), or for a staked
/// entity STO-031 (its own storage), STO-032 (storage associated with it) and STO-033 (reading any
/// other storage). A refusal names the rule that would have allowed it.
fn storage_rule(
    access: &StorageAccess,
    facts: &EntityFacts<'_>,
    associated: &dyn Fn(Address, U256) -> bool,
) -> Result<(), ValidationError> {
    let entity = access.entity;
    let staked = (facts.staked)(entity);
    let own = facts.address(entity);
    let factory_staked = facts.parties.factory.is_some() && (facts.staked)(Entity::Factory);
    let verb = if access.write { "wrote" } else { "read" };
    let what = format!("{verb} slot {:#x} of {}", access.slot, access.address);
    let fail =
        |rule, code, why: &str| Err(rule_error(&Violation { entity, rule, detail: format!("{what}: {why}") }, code));

    if Some(access.address) == own {
        return if staked { Ok(()) } else { fail("STO-031", RpcErrorCode::StakeTooLow, "own storage needs stake") };
    }
    let sender_associated = associated(facts.parties.sender, access.slot);
    if sender_associated && (facts.sender_exists || factory_staked) {
        return Ok(());
    }
    let entity_associated = own.is_some_and(|own| associated(own, access.slot));
    if staked && (entity_associated || !access.write) {
        return Ok(());
    }
    if sender_associated {
        return fail(
            "STO-022",
            RpcErrorCode::StakeTooLow,
            "storage associated with a sender being deployed needs a staked factory",
        );
    }
    if entity_associated {
        return fail("STO-032", RpcErrorCode::StakeTooLow, "associated storage needs stake");
    }
    let code = if access.write { RpcErrorCode::BannedOpcode } else { RpcErrorCode::StakeTooLow };
    fail("STO-033", code, "not associated with the sender or the entity")
}

fn rule_error(v: &Violation, code: RpcErrorCode) -> ValidationError {
    ValidationError::new(code, format!("{} validation broke ERC-7562 {}: {}", entity_name(v.entity), v.rule, v.detail))
        .with_data(serde_json::json!({ "entity": v.entity, "rule": v.rule, "detail": v.detail }))
}

fn entity_name(entity: Entity) -> &'static str {
    match entity {
        Entity::Sender => "The account's",
        Entity::Factory => "The factory's",
        Entity::Paymaster => "The paymaster's",
        Entity::Aggregator => "The aggregator's",
    }
}
