//! The ERC-7562 inspector: attributes every opcode, storage access and call made during
//! `simulateValidation` to the entity whose validation is running (factory, sender, paymaster),
//! flags the opcode and call rules on the spot, and records what the storage and stake rules
//! ([`super::rules`]) need afterwards.
//!
//! Phases: every call the EntryPoint makes from its top frame opens one. A call to the
//! `SenderCreator` is the factory's phase, to the sender the account's, to the paymaster the
//! paymaster's; nested frames inherit their parent's entity. Code that runs at the EntryPoint or the
//! `SenderCreator` itself is infrastructure and exempt.

use std::collections::{BTreeMap, BTreeSet};

use alloy::primitives::{Address, B256, U256, keccak256};
use revm::Inspector;
use revm::bytecode::opcode;
use revm::context_interface::ContextTr;
use revm::interpreter::interpreter_types::{InputsTr, InterpreterTypes, Jumps, MemoryTr, StackTr};
use revm::interpreter::{
    CallInputs, CallOutcome, CallScheme, CreateInputs, CreateOutcome, CreateScheme, InstructionResult, Interpreter,
};

use crate::config::Hardfork;
use crate::validation::Entity;

/// `depositTo(address)`.
const DEPOSIT_TO: [u8; 4] = [0xb7, 0x60, 0xfa, 0xf9];
/// RIP-7212 P-256 verification, allowed beside the core precompiles (OP-062).
const P256_VERIFY: u64 = 0x100;

/// OP-062: whether an entity may call precompile `n` on a chain at `hardfork`: the core ones (none of
/// them reads state or the environment) and P-256.
fn precompile_allowed(n: U256, hardfork: Hardfork) -> bool {
    n >= U256::from(1) && n <= U256::from(hardfork.last_core_precompile()) || n == U256::from(P256_VERIFY)
}

/// One broken rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Violation {
    pub(crate) entity: Entity,
    /// ERC-7562 rule id, e.g. "OP-011".
    pub(crate) rule: &'static str,
    pub(crate) detail: String,
}

/// A storage access by an entity's phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StorageAccess {
    pub(crate) entity: Entity,
    pub(crate) address: Address,
    pub(crate) slot: U256,
    pub(crate) write: bool,
}

/// The addresses whose validation phases are traced.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Parties {
    pub(crate) entry_point: Address,
    pub(crate) sender_creator: Address,
    pub(crate) sender: Address,
    pub(crate) factory: Option<Address>,
    pub(crate) paymaster: Option<Address>,
}

#[derive(Clone, Copy, Debug)]
struct Frame {
    entity: Option<Entity>,
    /// Runs EntryPoint or SenderCreator code.
    exempt: bool,
}

/// What one traced simulation saw.
#[derive(Debug)]
pub(crate) struct Tracer {
    parties: Parties,
    /// The chain's hardfork: which precompiles exist (OP-062).
    hardfork: Hardfork,
    frames: Vec<Frame>,
    gas_pending: bool,
    /// The last opcode was EXTCODESIZE of the EntryPoint: only ISZERO may follow (OP-051).
    entry_point_size_pending: bool,
    create2_seen: bool,
    /// Rules broken regardless of stake.
    pub(crate) violations: Vec<Violation>,
    /// BALANCE / SELFBALANCE uses (allowed to staked entities only, OP-080).
    pub(crate) balance_uses: Vec<Entity>,
    /// SLOAD/SSTORE and TLOAD/TSTORE (OP-070) accesses.
    pub(crate) storage: Vec<StorageAccess>,
    /// keccak256 results whose preimage starts with a padded address: (address, hash).
    pub(crate) keccak: Vec<(Address, U256)>,
    /// Code hashes of contracts whose code ran.
    pub(crate) code_hashes: BTreeMap<Address, B256>,
    /// Addresses inspected with EXTCODE*, and by whom (code presence and hash are read from the
    /// final state).
    pub(crate) ext_code_targets: BTreeMap<Address, Entity>,
    /// Contracts created during validation (not on chain yet: no code-hash check for them).
    pub(crate) created: BTreeSet<Address>,
}

impl Tracer {
    pub(crate) fn new(parties: Parties, hardfork: Hardfork) -> Self {
        Self {
            parties,
            hardfork,
            frames: Vec::new(),
            gas_pending: false,
            entry_point_size_pending: false,
            create2_seen: false,
            violations: Vec::new(),
            balance_uses: Vec::new(),
            storage: Vec::new(),
            keccak: Vec::new(),
            code_hashes: BTreeMap::new(),
            ext_code_targets: BTreeMap::new(),
            created: BTreeSet::new(),
        }
    }

    fn violation(&mut self, entity: Entity, rule: &'static str, detail: impl Into<String>) {
        self.violations.push(Violation { entity, rule, detail: detail.into() });
    }

    /// The entity of the frame running now, unless it is exempt infrastructure code.
    fn current(&self) -> Option<Entity> {
        self.frames.last().filter(|f| !f.exempt).and_then(|f| f.entity)
    }

    fn is_interesting_address(&self, a: Address) -> bool {
        a == self.parties.sender || Some(a) == self.parties.factory || Some(a) == self.parties.paymaster
    }

    fn enter(&mut self, caller: Address, target: Address, code_address: Address) -> Option<Entity> {
        let p = self.parties;
        let entity = match self.frames.last() {
            // The EntryPoint's own top frame opens a phase per call.
            Some(top) if self.frames.len() == 1 && caller == p.entry_point && top.entity.is_none() => {
                if target == p.sender_creator {
                    Some(Entity::Factory)
                } else if target == p.sender {
                    Some(Entity::Sender)
                } else if Some(target) == p.paymaster {
                    Some(Entity::Paymaster)
                } else {
                    None
                }
            }
            Some(parent) => parent.entity,
            None => None,
        };
        // Only the EntryPoint's and SenderCreator's own frames are theirs: their code run in another
        // account's context (DELEGATECALL, CALLCODE) is that account's, and OP-054 refuses it.
        let infrastructure = code_address == p.entry_point || code_address == p.sender_creator;
        let exempt = infrastructure && target == code_address;
        self.frames.push(Frame { entity, exempt });
        entity
    }

    fn check_call(&mut self, entity: Entity, inputs: &CallInputs) {
        let p = self.parties;
        let target = inputs.target_address;
        let value = inputs.transfer_value().unwrap_or_default();
        if !value.is_zero() {
            self.violation(entity, "OP-061", format!("CALL with value {value} to {target}"));
        }
        let code_address = inputs.bytecode_address;
        if inputs.known_bytecode.1.is_empty() {
            let n = U256::from_be_slice(code_address.as_slice());
            if precompile_allowed(n, self.hardfork) {
                return;
            }
            if n <= U256::from(0xffff) {
                self.violation(entity, "OP-062", format!("call to precompile {code_address}"));
            } else if !(code_address == p.sender && entity == Entity::Factory) {
                self.violation(entity, "OP-041", format!("call to {code_address}, which has no code"));
            }
        } else {
            self.code_hashes.insert(code_address, inputs.known_bytecode.0);
        }
    }

    fn check_entry_point_call(&mut self, entity: Entity, input: &[u8], value: U256) {
        let deposit = input.get(..4) == Some(&DEPOSIT_TO[..]);
        let ok = (deposit && matches!(entity, Entity::Sender | Entity::Factory))
            || (input.is_empty() && entity == Entity::Sender);
        if !ok {
            let what =
                input.get(..4).map_or_else(|| "its fallback".to_owned(), |s| format!("0x{}", alloy::hex::encode(s)));
            self.violation(entity, "OP-054", format!("call to the EntryPoint ({what}, value {value}) is not allowed"));
        }
    }

    fn exit(&mut self, result: InstructionResult) {
        if let Some(frame) = self.frames.pop()
            && let Some(entity) = frame.entity
            && is_out_of_gas(result)
        {
            self.violation(entity, "OP-020", "a call ran out of gas");
        }
    }
}

fn is_out_of_gas(result: InstructionResult) -> bool {
    matches!(
        result,
        InstructionResult::OutOfGas
            | InstructionResult::MemoryOOG
            | InstructionResult::MemoryLimitOOG
            | InstructionResult::PrecompileOOG
            | InstructionResult::InvalidOperandOOG
    )
}

/// Opcodes banned outright in validation (OP-011); BALANCE/SELFBALANCE (OP-080) and
/// GAS/CREATE/CREATE2 have their own rules.
fn banned(op: u8) -> bool {
    matches!(
        op,
        opcode::ORIGIN
            | opcode::GASPRICE
            | opcode::BLOCKHASH
            | opcode::COINBASE
            | opcode::TIMESTAMP
            | opcode::NUMBER
            | opcode::DIFFICULTY
            | opcode::GASLIMIT
            | opcode::BASEFEE
            | opcode::BLOBHASH
            | opcode::BLOBBASEFEE
            | opcode::INVALID
            | opcode::SELFDESTRUCT
    )
}

fn is_call(op: u8) -> bool {
    matches!(op, opcode::CALL | opcode::CALLCODE | opcode::DELEGATECALL | opcode::STATICCALL)
}

fn stack_top<S: StackTr>(stack: &S, n: usize) -> Option<U256> {
    let data = stack.data();
    data.len().checked_sub(n + 1).map(|i| data[i])
}

impl<CTX: ContextTr, INTR: InterpreterTypes> Inspector<CTX, INTR> for Tracer {
    fn step(&mut self, interp: &mut Interpreter<INTR>, _context: &mut CTX) {
        let Some(entity) = self.current() else {
            self.gas_pending = false;
            self.entry_point_size_pending = false;
            return;
        };
        let op = interp.bytecode.opcode();
        if std::mem::take(&mut self.gas_pending) && !is_call(op) {
            self.violation(entity, "OP-012", "GAS not followed immediately by a call");
        }
        if std::mem::take(&mut self.entry_point_size_pending) && op != opcode::ISZERO {
            self.violation(entity, "OP-054", "EXTCODESIZE of the EntryPoint used other than by ISZERO (OP-051)");
        }
        let here = interp.input.target_address();
        match op {
            op if banned(op) => {
                let name = opcode::OpCode::new(op).map_or("?", |o| o.as_str());
                self.violation(entity, "OP-011", format!("banned opcode {name}"));
            }
            op if opcode::OpCode::new(op).is_none() => {
                self.violation(entity, "OP-013", format!("unassigned opcode 0x{op:02x}"));
            }
            opcode::GAS => self.gas_pending = true,
            opcode::BALANCE | opcode::SELFBALANCE => self.balance_uses.push(entity),
            opcode::CREATE if !(entity == Entity::Sender && self.parties.factory.is_some()) => {
                self.violation(entity, "OP-032", "CREATE is only allowed to a sender being deployed");
            }
            opcode::CREATE2 => {
                if entity != Entity::Factory || self.create2_seen {
                    self.violation(entity, "OP-031", "CREATE2 is allowed once, by the factory, to deploy the sender");
                }
                self.create2_seen = true;
            }
            // OP-070: transient storage is held to the same rules as storage.
            opcode::SLOAD | opcode::SSTORE | opcode::TLOAD | opcode::TSTORE => {
                if let Some(slot) = stack_top(&interp.stack, 0) {
                    let write = matches!(op, opcode::SSTORE | opcode::TSTORE);
                    self.storage.push(StorageAccess { entity, address: here, slot, write });
                }
            }
            opcode::KECCAK256 => {
                if let (Some(offset), Some(len)) = (stack_top(&interp.stack, 0), stack_top(&interp.stack, 1))
                    && len >= U256::from(32)
                    && len <= U256::from(256)
                    && let (Ok(offset), Ok(len)) = (usize::try_from(offset), usize::try_from(len))
                    && offset.saturating_add(len) <= interp.memory.size()
                {
                    let preimage = interp.memory.slice_len(offset, len);
                    if preimage[..12].iter().all(|b| *b == 0) {
                        let address = Address::from_slice(&preimage[12..32]);
                        if self.is_interesting_address(address) {
                            let hash = keccak256(&*preimage);
                            self.keccak.push((address, U256::from_be_bytes(hash.0)));
                        }
                    }
                }
            }
            opcode::EXTCODESIZE | opcode::EXTCODEHASH | opcode::EXTCODECOPY => {
                if let Some(target) = stack_top(&interp.stack, 0) {
                    let target = Address::from_word(B256::from(target));
                    if target == self.parties.entry_point {
                        if op == opcode::EXTCODESIZE {
                            self.entry_point_size_pending = true;
                        } else {
                            self.violation(entity, "OP-054", "EXTCODEHASH/EXTCODECOPY of the EntryPoint");
                        }
                    } else {
                        self.ext_code_targets.entry(target).or_insert(entity);
                    }
                }
            }
            _ => {}
        }
    }

    fn call(&mut self, context: &mut CTX, inputs: &mut CallInputs) -> Option<CallOutcome> {
        let caller_entity = self.current();
        let entity = self.enter(inputs.caller, inputs.target_address, inputs.bytecode_address);
        let (ep, sc) = (self.parties.entry_point, self.parties.sender_creator);
        match caller_entity {
            Some(entity)
                if (inputs.bytecode_address == ep || inputs.bytecode_address == sc)
                    && inputs.target_address != inputs.bytecode_address =>
            {
                let whose = if inputs.bytecode_address == ep { "EntryPoint" } else { "SenderCreator" };
                let how = if inputs.scheme == CallScheme::CallCode { "CALLCODE" } else { "DELEGATECALL" };
                self.violation(entity, "OP-054", format!("{how} into the {whose}'s code"));
            }
            Some(entity) if inputs.target_address == sc => {
                self.violation(entity, "OP-054", "call to the SenderCreator (only the EntryPoint calls it)");
            }
            Some(entity) if inputs.target_address == self.parties.entry_point => {
                let input = inputs.input.bytes(context);
                let value = inputs.transfer_value().unwrap_or_default();
                self.check_entry_point_call(entity, &input, value);
            }
            Some(entity) => self.check_call(entity, inputs),
            None => {
                if entity.is_some() && !inputs.known_bytecode.1.is_empty() {
                    self.code_hashes.insert(inputs.bytecode_address, inputs.known_bytecode.0);
                }
            }
        }
        None
    }

    fn call_end(&mut self, _context: &mut CTX, _inputs: &CallInputs, outcome: &mut CallOutcome) {
        self.exit(*outcome.instruction_result());
    }

    fn create(&mut self, _context: &mut CTX, _inputs: &mut CreateInputs) -> Option<CreateOutcome> {
        let entity = self.frames.last().and_then(|f| f.entity);
        self.frames.push(Frame { entity, exempt: false });
        None
    }

    fn create_end(&mut self, _context: &mut CTX, inputs: &CreateInputs, outcome: &mut CreateOutcome) {
        let entity = self.frames.last().and_then(|f| f.entity);
        if let Some(address) = outcome.address
            && outcome.instruction_result().is_ok()
        {
            self.created.insert(address);
            if let (Some(entity), CreateScheme::Create2 { .. }) = (entity, inputs.scheme())
                && address != self.parties.sender
            {
                self.violation(entity, "OP-031", format!("CREATE2 deployed {address}, not the sender"));
            }
        }
        self.exit(*outcome.instruction_result());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_062_allows_the_hardforks_core_precompiles_and_p256() {
        let allowed = |n: u64, fork| precompile_allowed(U256::from(n), fork);
        for n in 1..=0x0a {
            assert!(allowed(n, Hardfork::Cancun) && allowed(n, Hardfork::Prague), "{n:#x}");
        }
        for n in 0x0b..=0x11 {
            assert!(!allowed(n, Hardfork::Cancun) && allowed(n, Hardfork::Prague), "BLS12-381 {n:#x}: Prague only");
        }
        assert!(allowed(0x100, Hardfork::Cancun) && allowed(0x100, Hardfork::Prague), "P-256");
        for n in [0, 0x12, 0xff, 0x101, 0xffff] {
            assert!(!allowed(n, Hardfork::Cancun) && !allowed(n, Hardfork::Prague), "{n:#x}");
        }
    }
}
