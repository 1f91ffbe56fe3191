//! Mempool admission: duplicate and replacement rules, ERC-7562 per-entity limits and reputation,
//! paymaster deposits. Operations live in the database ([`crate::store`]), so a restart loses nothing.
//!
//! Replacement: an operation with the sender and nonce of a pending one replaces it only if both
//! `maxFeePerGas` and `maxPriorityFeePerGas` are at least 10% higher (rounded up). On a zero-fee chain
//! 10% of zero is zero, so a sender may replace its own pending operation at equal (zero) fees: only the
//! sender's key can sign it, an operation already in a bundle transaction cannot be replaced, and each
//! replacement counts as an `opsSeen` of the sender, so a sender that keeps replacing gets throttled.

use alloy::primitives::{Address, B256, U256};
use custody_contracts::{EntryPointVersion, UserOperation};

use crate::error::BundlerError;
use crate::reputation::{ReputationBook, ReputationStatus, SAME_SENDER_MEMPOOL_COUNT, THROTTLED_ENTITY_MEMPOOL_COUNT};
use crate::store::{EntityColumn, OpStatus, Store, StoredOp, now_millis};
use crate::validation::{Entity, RpcErrorCode, ValidatedOp, ValidationError};

/// What the mempool says before validation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Precheck {
    /// A new sender/nonce.
    New,
    /// The same operation is already live: nothing to do.
    Known,
    /// Replaces this pending operation (fees checked).
    Replaces(B256),
}

/// Whether `new` may replace `old` (same sender and nonce).
pub fn replacement_allowed(old: &UserOperation, new: &UserOperation) -> bool {
    let bumped = |old: U256, new: U256| new >= old + old.div_ceil(U256::from(10));
    bumped(old.max_fee_per_gas, new.max_fee_per_gas)
        && bumped(old.max_priority_fee_per_gas, new.max_priority_fee_per_gas)
}

fn reject(code: RpcErrorCode, message: String) -> ValidationError {
    ValidationError::new(code, message)
}

/// The admission side of the mempool.
#[derive(Clone, Debug)]
pub(crate) struct Mempool {
    store: Store,
    reputation: ReputationBook,
    /// Exempt from reputation and count limits.
    trusted: Vec<Address>,
}

impl Mempool {
    pub(crate) fn new(store: Store, reputation: ReputationBook, trusted: Vec<Address>) -> Self {
        Self { store, reputation, trusted }
    }

    /// Cheap checks before validation: duplicates, replacement fees, banned entities.
    pub(crate) async fn precheck(
        &self,
        entry_point: EntryPointVersion,
        hash: B256,
        op: &UserOperation,
    ) -> Result<Precheck, ValidationError> {
        for (entity, address) in entities(op) {
            if !self.trusted.contains(&address)
                && self.reputation.get(address).await?.status() == ReputationStatus::Banned
            {
                return Err(reject(
                    RpcErrorCode::Banned,
                    format!("{entity:?} {address} is banned by reputation (ERC-7562 GREP-010); try again later"),
                )
                .with_data(serde_json::json!({ entity_key(entity): address })));
            }
        }
        let Some(live) = self.store.live_op(entry_point, op.sender, op.nonce).await? else {
            return Ok(Precheck::New);
        };
        if live.hash == hash {
            return Ok(Precheck::Known);
        }
        if live.status == OpStatus::Submitted {
            return Err(reject(
                RpcErrorCode::InvalidParams,
                format!(
                    "operation {:#x} with this sender and nonce is already in a bundle transaction and cannot be replaced",
                    live.hash
                ),
            ));
        }
        if !replacement_allowed(&live.op, op) {
            return Err(reject(
                RpcErrorCode::InvalidParams,
                format!(
                    "replacement underpriced: operation {:#x} has the same sender and nonce; raise maxFeePerGas and \
                     maxPriorityFeePerGas by at least 10% (to at least {} and {})",
                    live.hash,
                    live.op.max_fee_per_gas + live.op.max_fee_per_gas.div_ceil(U256::from(10)),
                    live.op.max_priority_fee_per_gas + live.op.max_priority_fee_per_gas.div_ceil(U256::from(10)),
                ),
            ));
        }
        Ok(Precheck::Replaces(live.hash))
    }

    /// Admits a validated operation: per-entity limits, paymaster deposit, then stores it and counts
    /// it as seen. `paymaster_deposit` is the paymaster's EntryPoint deposit when it has one.
    pub(crate) async fn admit(
        &self,
        entry_point: EntryPointVersion,
        hash: B256,
        op: UserOperation,
        validated: ValidatedOp,
        replaces: Option<B256>,
        paymaster_deposit: Option<U256>,
    ) -> Result<(), ValidationError> {
        let staked = |e: Entity| validated.staked.iter().any(|(x, s)| *x == e && *s);
        let others = |ops: Vec<StoredOp>| ops.into_iter().filter(|o| Some(o.hash) != replaces).collect::<Vec<_>>();

        for (entity, address) in entities(&op) {
            let column = match entity {
                Entity::Sender => EntityColumn::Sender,
                Entity::Factory => EntityColumn::Factory,
                Entity::Paymaster => EntityColumn::Paymaster,
                Entity::Aggregator => continue,
            };
            let live = others(self.store.live_ops_of(column, address).await?);
            let rep = self.reputation.get(address).await?;
            let limit = if self.trusted.contains(&address) {
                None
            } else if rep.status() == ReputationStatus::Throttled {
                Some((THROTTLED_ENTITY_MEMPOOL_COUNT as u64, "throttled by reputation (ERC-7562 GREP-020)"))
            } else if staked(entity) {
                None
            } else if entity == Entity::Sender {
                Some((SAME_SENDER_MEMPOOL_COUNT as u64, "an unstaked sender (ERC-7562 SAME_SENDER_MEMPOOL_COUNT)"))
            } else {
                Some((rep.unstaked_entity_allowance(), "an unstaked entity (ERC-7562 UREP-020)"))
            };
            if let Some((max, why)) = limit
                && live.len() as u64 >= max
            {
                return Err(reject(
                    RpcErrorCode::Banned,
                    format!(
                        "{entity:?} {address} already has {} operations in the mempool, the limit for {why}; wait for \
                         them to be included or stake the entity",
                        live.len()
                    ),
                )
                .with_data(serde_json::json!({ entity_key(entity): address })));
            }
            if entity == Entity::Paymaster
                && let Some(deposit) = paymaster_deposit
            {
                let committed: U256 = live.iter().map(|o| o.validated.prefund).sum();
                let needed = committed + validated.prefund;
                if needed > deposit {
                    return Err(reject(
                        RpcErrorCode::PaymasterDepositTooLow,
                        format!(
                            "paymaster {address} deposit {deposit} wei does not cover its pending operations ({needed} \
                             wei); deposit more to the EntryPoint"
                        ),
                    )
                    .with_data(serde_json::json!({ "paymaster": address })));
                }
            }
        }

        self.check_roles(&op, &validated, replaces).await?;

        let stored = StoredOp {
            hash,
            entry_point,
            op,
            validated,
            status: OpStatus::Pending,
            reason: None,
            tx_hash: None,
            block_number: None,
            block_hash: None,
            received_at: now_millis(),
        };
        if !self.store.insert_op(&stored, replaces).await? {
            return Err(reject(
                RpcErrorCode::InvalidParams,
                "another operation with this sender and nonce was accepted at the same time; resend".to_owned(),
            ));
        }
        for (entity, address) in reputation_entities(&stored) {
            self.reputation.seen(address).await?;
            // GREP-010: an entity this count bans leaves the mempool with every operation naming it.
            if !self.trusted.contains(&address)
                && self.reputation.get(address).await?.status() == ReputationStatus::Banned
            {
                self.drop_entity(address).await?;
                return Err(reject(
                    RpcErrorCode::Banned,
                    format!(
                        "{entity:?} {address} is now banned by reputation (ERC-7562 GREP-010): its operations, this one \
                         included, left the mempool; try again later"
                    ),
                )
                .with_data(serde_json::json!({ entity_key(entity): address })));
            }
        }
        Ok(())
    }

    /// STO-040: an address is a sender or an entity (factory, paymaster) in the mempool, never both;
    /// STO-041: an operation does not touch the storage of another pending operation's sender. (The other
    /// side of STO-041, a new sender whose storage a pending operation touched, is kept out of the same
    /// bundle by the builder.)
    async fn check_roles(
        &self,
        op: &UserOperation,
        validated: &ValidatedOp,
        replaces: Option<B256>,
    ) -> Result<(), ValidationError> {
        let others = |ops: Vec<StoredOp>| ops.into_iter().any(|o| Some(o.hash) != replaces && o.op.sender != op.sender);
        let refuse = |rule: &str, why: String| {
            reject(RpcErrorCode::BannedOpcode, format!("ERC-7562 {rule}: {why}"))
                .with_data(serde_json::json!({ "rule": rule }))
        };
        for (entity, address) in entities(op).into_iter().skip(1) {
            if others(self.store.live_ops_of(EntityColumn::Sender, address).await?) {
                let why = format!("{entity:?} {address} is the sender of another operation in the mempool");
                return Err(refuse("STO-040", why));
            }
        }
        for column in [EntityColumn::Factory, EntityColumn::Paymaster] {
            if others(self.store.live_ops_of(column, op.sender).await?) {
                let why =
                    format!("the sender {} is a {} of another operation in the mempool", op.sender, column.as_str());
                return Err(refuse("STO-040", why));
            }
        }
        for address in validated.accessed_addresses.iter().filter(|a| **a != op.sender) {
            if others(self.store.live_ops_of(EntityColumn::Sender, *address).await?) {
                let why =
                    format!("validation touched the storage of {address}, the sender of another pending operation");
                return Err(refuse("STO-041", why));
            }
        }
        Ok(())
    }

    /// Drops the live operations naming `address` (GREP-010: a banned entity's operations leave).
    pub(crate) async fn drop_entity(&self, address: Address) -> Result<u64, BundlerError> {
        let mut hashes = Vec::new();
        for column in [EntityColumn::Sender, EntityColumn::Factory, EntityColumn::Paymaster] {
            hashes.extend(self.store.live_ops_of(column, address).await?.into_iter().map(|o| o.hash));
        }
        self.store.set_status(&hashes, &[OpStatus::Pending], OpStatus::Dropped, Some("entity banned"), None).await
    }
}

/// The entities whose reputation an operation counts: its factory and paymaster, and its sender only when
/// staked (ERC-7562 UREP-010: an unstaked sender is held to SAME_SENDER_MEMPOOL_COUNT, not to reputation).
pub(crate) fn reputation_entities(op: &StoredOp) -> Vec<(Entity, Address)> {
    let staked_sender = op.validated.staked.iter().any(|(e, s)| *e == Entity::Sender && *s);
    entities(&op.op).into_iter().filter(|(e, _)| *e != Entity::Sender || staked_sender).collect()
}

/// The entities an operation names: sender, factory, paymaster.
pub(crate) fn entities(op: &UserOperation) -> Vec<(Entity, Address)> {
    let mut out = vec![(Entity::Sender, op.sender)];
    out.extend(op.factory.map(|f| (Entity::Factory, f)));
    out.extend(op.paymaster.map(|p| (Entity::Paymaster, p)));
    out
}

fn entity_key(e: Entity) -> &'static str {
    match e {
        Entity::Sender => "sender",
        Entity::Factory => "factory",
        Entity::Paymaster => "paymaster",
        Entity::Aggregator => "aggregator",
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::Address;
    use sqlx::any::AnyPoolOptions;

    use super::*;
    use crate::reputation::Reputation;
    use crate::store::RepRow;
    use crate::validation::StakeInfo;

    fn op(fee: u64, tip: u64) -> UserOperation {
        UserOperation {
            max_fee_per_gas: U256::from(fee),
            max_priority_fee_per_gas: U256::from(tip),
            ..Default::default()
        }
    }

    async fn mempool() -> (Mempool, Store) {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new().max_connections(1).connect("sqlite::memory:").await.expect("sqlite");
        let store = Store::open(pool).await.expect("migrates");
        let trusted = vec![Address::repeat_byte(0x77)];
        (Mempool::new(store.clone(), ReputationBook::new(store.clone()), trusted), store)
    }

    fn validated(hash: B256, sender: Address, prefund: u64, staked: bool) -> ValidatedOp {
        ValidatedOp {
            user_op_hash: hash,
            entry_point: EntryPointVersion::V08,
            block_number: 1,
            prefund: U256::from(prefund),
            valid_after: 0,
            valid_until: u64::MAX,
            sender: StakeInfo { address: sender, ..Default::default() },
            factory: None,
            paymaster: None,
            aggregator: None,
            staked: vec![(Entity::Sender, staked)],
            code_hashes: Vec::new(),
            accessed_addresses: Vec::new(),
            validation_gas_used: 0,
        }
    }

    /// Runs precheck and admit as the service does.
    async fn add(
        pool: &Mempool,
        op: &UserOperation,
        prefund: u64,
        staked: bool,
        deposit: Option<u64>,
    ) -> Result<B256, ValidationError> {
        let hash = op.hash(EntryPointVersion::V08, EntryPointVersion::V08.address(), 1337).expect("hash");
        let replaces = match pool.precheck(EntryPointVersion::V08, hash, op).await? {
            Precheck::Known => return Ok(hash),
            Precheck::New => None,
            Precheck::Replaces(old) => Some(old),
        };
        let v = validated(hash, op.sender, prefund, staked);
        pool.admit(EntryPointVersion::V08, hash, op.clone(), v, replaces, deposit.map(U256::from)).await?;
        Ok(hash)
    }

    #[test]
    fn replacement_needs_ten_percent_on_both_fees() {
        assert!(replacement_allowed(&op(100, 10), &op(110, 11)));
        assert!(!replacement_allowed(&op(100, 10), &op(109, 11)));
        assert!(!replacement_allowed(&op(100, 10), &op(200, 10)));
        // Rounded up: 10% of 5 is 1.
        assert!(!replacement_allowed(&op(5, 5), &op(5, 6)));
        assert!(replacement_allowed(&op(5, 5), &op(6, 6)));
        // Zero-fee chain: equal zero fees replace.
        assert!(replacement_allowed(&op(0, 0), &op(0, 0)));
    }

    /// STO-040: an address is a sender or an entity in the mempool, never both (either order); STO-041: a
    /// new operation touching the storage of another pending sender is refused; its own sender is fine.
    #[tokio::test]
    async fn an_address_has_one_role_and_no_operation_touches_another_pending_sender() {
        let (pool, _) = mempool().await;
        let (s1, s2, pm) = (Address::repeat_byte(0x11), Address::repeat_byte(0x12), Address::repeat_byte(0x13));
        add(&pool, &UserOperation { sender: s1, paymaster: Some(pm), ..op(0, 0) }, 0, false, None).await.expect("s1");
        // The paymaster of a pending operation cannot be a sender, nor a pending sender a paymaster.
        let e = add(&pool, &UserOperation { sender: pm, ..op(0, 0) }, 0, false, None).await.expect_err("STO-040");
        assert_eq!(
            (e.code, e.data.as_ref().map(|d| d["rule"].clone())),
            (RpcErrorCode::BannedOpcode, Some("STO-040".into()))
        );
        let e = add(&pool, &UserOperation { sender: s2, paymaster: Some(s1), ..op(0, 0) }, 0, false, None).await;
        assert!(e.expect_err("STO-040").message.contains("STO-040"));
        // STO-041: touching s1's storage while s1 has a pending operation.
        let touching = UserOperation { sender: s2, ..op(0, 0) };
        let hash = touching.hash(EntryPointVersion::V08, EntryPointVersion::V08.address(), 1337).expect("hash");
        let mut v = validated(hash, s2, 0, false);
        v.accessed_addresses = vec![s2, s1];
        let e = pool.admit(EntryPointVersion::V08, hash, touching.clone(), v.clone(), None, None).await;
        let e = e.expect_err("STO-041");
        assert!(e.message.contains("STO-041") && e.message.contains(&s1.to_string()), "{e}");
        // Its own storage, or a contract no pending operation sends from, is fine.
        v.accessed_addresses = vec![s2, Address::repeat_byte(0x14)];
        pool.admit(EntryPointVersion::V08, hash, touching, v, None, None).await.expect("no other sender touched");
        // A replacement of s1's own operation is no conflict with itself.
        let again = UserOperation { sender: s1, paymaster: Some(pm), ..op(0, 0) };
        add(
            &pool,
            &UserOperation { max_fee_per_gas: U256::from(1), max_priority_fee_per_gas: U256::from(1), ..again },
            0,
            false,
            None,
        )
        .await
        .expect("replaces its own");
    }

    /// GREP-010 reached by counting: the operation whose opsSeen bans its (staked) sender is refused, and
    /// the sender's pending operations leave with it. An unstaked sender has no reputation (UREP-010).
    #[tokio::test]
    async fn an_entity_banned_by_its_counts_leaves_the_mempool() {
        let (pool, store) = mempool().await;
        let sender = Address::repeat_byte(2);
        // 508 seen, none included: one more keeps it under BAN_SLACK, two more ban it (510 / 10 > 0 + 50).
        let hour = crate::reputation::current_hour();
        store
            .put_reputation(&RepRow { address: sender, ops_seen: 508, ops_included: 0, decayed_hour: hour })
            .await
            .expect("reputation set");
        let at = |key: u64| UserOperation { sender, nonce: U256::from(key) << 64, ..op(0, 0) };
        let unstaked = Address::repeat_byte(3);
        add(&pool, &UserOperation { sender: unstaked, ..op(0, 0) }, 0, false, None).await.expect("admitted");
        assert_eq!(store.reputation(unstaked).await.expect("read"), None, "no reputation for an unstaked sender");
        let first = add(&pool, &at(1), 0, true, None).await.expect("still ok");
        let e = add(&pool, &at(2), 0, true, None).await.expect_err("the op that bans it");
        assert_eq!(e.code, RpcErrorCode::Banned, "{e}");
        assert!(e.message.contains("GREP-010"), "{e}");
        assert_eq!(
            store.op(first).await.expect("read").expect("kept").status,
            OpStatus::Dropped,
            "the pending one left"
        );
        assert!(store.live_op(EntryPointVersion::V08, sender, at(2).nonce).await.expect("read").is_none());
        let e = add(&pool, &at(3), 0, true, None).await.expect_err("banned");
        assert_eq!(e.code, RpcErrorCode::Banned);
    }

    #[tokio::test]
    async fn sender_limits_replacement_and_reputation() {
        let (pool, store) = mempool().await;
        let sender = Address::repeat_byte(1);
        let at = |nonce: u64, fee: u64| UserOperation { sender, nonce: U256::from(nonce), ..op(fee, fee) };
        let mut hashes = Vec::new();
        for nonce in 0..4 {
            hashes.push(add(&pool, &at(nonce, 10), 0, false, None).await.expect("admitted"));
        }
        let e = add(&pool, &at(4, 10), 0, false, None).await.expect_err("fifth refused");
        assert_eq!(e.code, RpcErrorCode::Banned);
        // Replacing does not count twice; underpriced is refused.
        let e = add(&pool, &at(0, 10).clone(), 0, false, None).await.map(|h| h == hashes[0]);
        assert_eq!(e, Ok(true), "the same operation is known");
        let mut cheap = at(0, 10);
        cheap.call_data = vec![1u8].into();
        assert_eq!(
            add(&pool, &cheap, 0, false, None).await.expect_err("underpriced").code,
            RpcErrorCode::InvalidParams
        );
        let mut bumped = at(0, 11);
        bumped.call_data = vec![1u8].into();
        let new = add(&pool, &bumped, 0, false, None).await.expect("replacement");
        assert_eq!(store.op(hashes[0]).await.expect("db").map(|o| o.status), Some(OpStatus::Replaced));
        assert_eq!(store.op(new).await.expect("db").map(|o| o.status), Some(OpStatus::Pending));
        // A staked sender has no count limit.
        let staked = Address::repeat_byte(2);
        for nonce in 0..6 {
            add(&pool, &UserOperation { sender: staked, nonce: U256::from(nonce), ..op(1, 1) }, 0, true, None)
                .await
                .expect("staked sender");
        }
        // The staked sender's admissions were seen; the unstaked one has no reputation (UREP-010).
        let rep = ReputationBook::new(store.clone());
        assert_eq!(rep.get(staked).await.expect("rep"), Reputation { ops_seen: 6, ops_included: 0 });
        assert_eq!(rep.get(sender).await.expect("rep"), Reputation { ops_seen: 0, ops_included: 0 });
        // Banned: refused before validation, and its live operations dropped.
        rep.set(sender, Reputation { ops_seen: 1_000, ops_included: 0 }).await.expect("set");
        assert_eq!(add(&pool, &at(9, 10), 0, false, None).await.expect_err("banned").code, RpcErrorCode::Banned);
        assert_eq!(pool.drop_entity(sender).await.expect("drop"), 4);
    }

    #[tokio::test]
    async fn paymaster_deposit_and_throttling() {
        let (pool, store) = mempool().await;
        let paymaster = Address::repeat_byte(9);
        let with_pm =
            |sender: u8| UserOperation { sender: Address::repeat_byte(sender), paymaster: Some(paymaster), ..op(0, 0) };
        add(&pool, &with_pm(1), 10, false, Some(15)).await.expect("covered");
        let e = add(&pool, &with_pm(2), 10, false, Some(15)).await.expect_err("not covered");
        assert_eq!(e.code, RpcErrorCode::PaymasterDepositTooLow);
        add(&pool, &with_pm(2), 5, false, Some(15)).await.expect("exactly covered");
        // Throttled paymaster: at most THROTTLED_ENTITY_MEMPOOL_COUNT live operations.
        ReputationBook::new(store.clone())
            .set(paymaster, Reputation { ops_seen: 200, ops_included: 0 })
            .await
            .expect("set");
        add(&pool, &with_pm(3), 0, false, None).await.expect("third");
        add(&pool, &with_pm(4), 0, false, None).await.expect("fourth");
        assert_eq!(add(&pool, &with_pm(5), 0, false, None).await.expect_err("throttled").code, RpcErrorCode::Banned);
        // A trusted entity is exempt, even banned.
        let trusted = Address::repeat_byte(0x77);
        ReputationBook::new(store.clone())
            .set(trusted, Reputation { ops_seen: 10_000, ops_included: 0 })
            .await
            .expect("set");
        for sender in 10..30 {
            let op = UserOperation { paymaster: Some(trusted), ..with_pm(sender) };
            add(&pool, &op, 0, false, None).await.expect("trusted paymaster");
        }
    }
}
