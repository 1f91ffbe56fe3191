//! The ERC-7562 rule-test contracts (bundler/test-contracts): installing them on the local chain, staking
//! them on an EntryPoint for real, and operations of rule-test accounts, RuleFactory and RulePaymaster.
//! Shared by the `sim` and `bundler` test binaries.

use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolValue};
use custody_contracts::entry_point::IEntryPointSimulations;
use custody_contracts::test_utils::LocalChain;
use custody_contracts::{EntryPointVersion, UserOperation};

alloy::sol! {
    /// RuleAccount, RuleFactory and RulePaymaster: the entity stakes itself.
    #[sol(rpc)]
    interface IStakeable {
        function addStake(address entryPoint, uint32 unstakeDelaySec) external payable;
    }

    interface IRuleFactory {
        function createAccount(bytes32 salt, bool associated, bool count) external returns (address);
    }
}

/// What RulePaymaster's validation does (its `Probe` enum, in order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Probe {
    None,
    OwnStorage,
    OwnTransientStorage,
    Balance,
    Context,
    ReadExternal,
    WriteExternal,
    WriteOwnAssociated,
    ReadSenderAssociated,
}

impl Probe {
    /// RulePaymaster's paymaster data: abi.encode(probe, helper).
    pub(crate) fn paymaster_data(self, helper: Address) -> Bytes {
        (U256::from(self as u8), helper).abi_encode_params().into()
    }
}

fn artifact(name: &str) -> serde_json::Value {
    let path = format!("{}/test-contracts/artifacts/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text =
        std::fs::read_to_string(&path).expect("rule-test artifact exists (node bundler/test-contracts/build.mjs)");
    serde_json::from_str(&text).expect("artifact parses")
}

fn hex_field(name: &str, field: &str) -> Bytes {
    artifact(name)[field].as_str().expect("bytecode field").parse().expect("hex")
}

/// Runtime code of a rule-test contract.
pub(crate) fn code(name: &str) -> Bytes {
    hex_field(name, "deployedBytecode")
}

/// Installs a rule-test contract at a fresh address.
pub(crate) async fn install(chain: &LocalChain, name: &str) -> Address {
    let address = PrivateKeySigner::random().address();
    chain.set_code(address, code(name)).await.expect("setCode");
    address
}

/// Stakes `amount` wei with `delay` seconds of unstake delay for `entity` (a Stakeable rule-test
/// contract) on `version`'s EntryPoint, paid by dev account 0, and checks the EntryPoint recorded it.
pub(crate) async fn stake(chain: &LocalChain, version: EntryPointVersion, entity: Address, amount: U256, delay: u64) {
    let provider = chain.provider();
    let delay = u32::try_from(delay).expect("delay fits addStake's uint32");
    let receipt = IStakeable::new(entity, provider.clone())
        .addStake(version.address(), delay)
        .value(amount)
        .send()
        .await
        .expect("addStake sent")
        .get_receipt()
        .await
        .expect("addStake receipt");
    assert!(receipt.status(), "addStake succeeded");
    // The EntryPoint's own getDepositInfo, through the binding of its simulation code (the same function).
    let entry_point = IEntryPointSimulations::new(version.address(), provider);
    let info = entry_point.getDepositInfo(entity).call().await.expect("info");
    assert_eq!((U256::from(info.stake), info.unstakeDelaySec), (amount, delay), "{version}: stake recorded");
}

/// A zero-fee operation of rule-test account `sender`, whose helper (`account_helper`) is abi-encoded in
/// the signature.
pub(crate) fn op_of(sender: Address, account_helper: Address) -> UserOperation {
    UserOperation {
        sender,
        call_gas_limit: U256::from(100_000),
        verification_gas_limit: U256::from(1_000_000),
        pre_verification_gas: U256::from(50_000),
        signature: account_helper.abi_encode().into(),
        ..Default::default()
    }
}

/// `op` with its sender deployed by RuleFactory `factory` at a fresh salt: an AssociatedStorageAccount if
/// `associated`, else a ValidAccount; the factory also writes its own storage if `count`.
pub(crate) fn deployed_by(op: UserOperation, factory: Address, associated: bool, count: bool) -> UserOperation {
    let salt = B256::from(rand::random::<[u8; 32]>());
    let account = if associated { "AssociatedStorageAccount" } else { "ValidAccount" };
    let sender = factory.create2(salt, keccak256(hex_field(account, "bytecode")));
    let data = IRuleFactory::createAccountCall { salt, associated, count }.abi_encode();
    UserOperation { sender, factory: Some(factory), factory_data: Some(data.into()), ..op }
}

/// `op` sponsored by RulePaymaster `paymaster` running `probe` on `helper`.
pub(crate) fn sponsored(op: UserOperation, paymaster: Address, probe: Probe, helper: Address) -> UserOperation {
    UserOperation {
        paymaster: Some(paymaster),
        paymaster_verification_gas_limit: Some(U256::from(200_000)),
        paymaster_post_op_gas_limit: Some(U256::from(50_000)),
        paymaster_data: Some(probe.paymaster_data(helper)),
        ..op
    }
}
