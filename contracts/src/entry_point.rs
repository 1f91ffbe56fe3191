//! The canonical ERC-4337 EntryPoints (v0.7 and v0.8): versions, addresses, bytecode and the ABI we use.
//!
//! The interface is written by hand because the npm artifacts' ABIs reference `PackedUserOperation` in a
//! way `sol!` cannot resolve; a unit test checks every function, event and error here against the
//! artifacts, so the two cannot drift.
#![allow(missing_docs, missing_debug_implementations, unreachable_pub)]

use alloy::primitives::{Address, B256, Bytes, address, b256};
use serde::{Deserialize, Serialize};

use crate::artifacts::Artifact;

alloy::sol! {
    /// ERC-4337 v0.7/v0.8 packed UserOperation, as the EntryPoint takes it.
    #[derive(Debug, Default, PartialEq, Eq)]
    struct PackedUserOperation {
        address sender;
        uint256 nonce;
        bytes initCode;
        bytes callData;
        bytes32 accountGasLimits;
        uint256 preVerificationGas;
        bytes32 gasFees;
        bytes paymasterAndData;
        bytes signature;
    }

    /// The part of the EntryPoint (identical in v0.7 and v0.8) that Peruri Custody uses.
    #[sol(rpc)]
    #[derive(Debug)]
    interface IEntryPoint {
        event UserOperationEvent(
            bytes32 indexed userOpHash,
            address indexed sender,
            address indexed paymaster,
            uint256 nonce,
            bool success,
            uint256 actualGasCost,
            uint256 actualGasUsed
        );
        event AccountDeployed(bytes32 indexed userOpHash, address indexed sender, address factory, address paymaster);
        event UserOperationRevertReason(
            bytes32 indexed userOpHash,
            address indexed sender,
            uint256 nonce,
            bytes revertReason
        );
        event BeforeExecution();
        event Deposited(address indexed account, uint256 totalDeposit);

        error FailedOp(uint256 opIndex, string reason);
        error FailedOpWithRevert(uint256 opIndex, string reason, bytes inner);
        error SenderAddressResult(address sender);

        function handleOps(PackedUserOperation[] calldata ops, address payable beneficiary) external;
        function getUserOpHash(PackedUserOperation calldata userOp) external view returns (bytes32);
        function getNonce(address sender, uint192 key) external view returns (uint256 nonce);
        function getSenderAddress(bytes calldata initCode) external;
        function balanceOf(address account) external view returns (uint256);
        function depositTo(address account) external payable;
    }

    /// EntryPoint v0.8 only.
    #[sol(rpc)]
    #[derive(Debug)]
    interface IEntryPointV08 {
        function senderCreator() external view returns (address);
        function getDomainSeparatorV4() external view returns (bytes32);
    }

    /// `EntryPointSimulations` (v0.7 and v0.8): never deployed; a bundler places its runtime code at the
    /// EntryPoint's address in a simulated state and calls it there.
    #[sol(rpc)]
    #[derive(Debug)]
    interface IEntryPointSimulations {
        struct ReturnInfo {
            uint256 preOpGas;
            uint256 prefund;
            uint256 accountValidationData;
            uint256 paymasterValidationData;
            bytes paymasterContext;
        }
        struct StakeInfo {
            uint256 stake;
            uint256 unstakeDelaySec;
        }
        struct AggregatorStakeInfo {
            address aggregator;
            StakeInfo stakeInfo;
        }
        struct ValidationResult {
            ReturnInfo returnInfo;
            StakeInfo senderInfo;
            StakeInfo factoryInfo;
            StakeInfo paymasterInfo;
            AggregatorStakeInfo aggregatorInfo;
        }
        struct ExecutionResult {
            uint256 preOpGas;
            uint256 paid;
            uint256 accountValidationData;
            uint256 paymasterValidationData;
            bool targetSuccess;
            bytes targetResult;
        }
        struct DepositInfo {
            uint256 deposit;
            bool staked;
            uint112 stake;
            uint32 unstakeDelaySec;
            uint48 withdrawTime;
        }

        function simulateValidation(PackedUserOperation calldata userOp) external returns (ValidationResult memory);
        function simulateHandleOp(PackedUserOperation calldata op, address target, bytes calldata targetCallData)
            external
            returns (ExecutionResult memory);
        function getDepositInfo(address account) external view returns (DepositInfo memory info);
    }
}

/// The deterministic-deployment salt of the canonical EntryPoint v0.7.
pub const ENTRY_POINT_V07_SALT: B256 = b256!("0x90d8084deab30c2a37c45e8d47f49f2f7965183cb6990a98943ef94940681de3");
/// The deterministic-deployment salt of the canonical EntryPoint v0.8.
pub const ENTRY_POINT_V08_SALT: B256 = b256!("0x0a59dbff790c23c976a548690c27297883cc66b4c67024f9117b0238995e35e9");

/// An ERC-4337 EntryPoint version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EntryPointVersion {
    /// v0.7 (userOpHash is a plain keccak; accounts sign it EIP-191 prefixed).
    #[serde(rename = "v0.7")]
    V07,
    /// v0.8 (userOpHash is an EIP-712 digest; accounts sign it as is).
    #[serde(rename = "v0.8")]
    V08,
}

impl EntryPointVersion {
    /// Both versions.
    pub const ALL: [Self; 2] = [Self::V07, Self::V08];

    /// The canonical address (the same on every chain).
    pub const fn address(self) -> Address {
        match self {
            Self::V07 => address!("0x0000000071727De22E5E9d8BAf0edAc6f37da032"),
            Self::V08 => address!("0x4337084D9E255Ff0702461CF8895CE9E3b5Ff108"),
        }
    }

    /// The salt under which the deterministic deployment proxy deploys it.
    pub const fn salt(self) -> B256 {
        match self {
            Self::V07 => ENTRY_POINT_V07_SALT,
            Self::V08 => ENTRY_POINT_V08_SALT,
        }
    }

    /// The canonical init code (from the `@account-abstraction/contracts` npm artifact).
    pub fn init_code(self) -> Bytes {
        self.artifact().bytecode.clone()
    }

    /// The committed artifact.
    pub fn artifact(self) -> &'static Artifact {
        match self {
            Self::V07 => Artifact::entry_point_v07(),
            Self::V08 => Artifact::entry_point_v08(),
        }
    }

    /// The committed `EntryPointSimulations` artifact (its runtime code goes at [`Self::address`] in a
    /// simulated state).
    pub fn simulations_artifact(self) -> &'static Artifact {
        match self {
            Self::V07 => Artifact::entry_point_simulations_v07(),
            Self::V08 => Artifact::entry_point_simulations_v08(),
        }
    }

    /// The version of an EntryPoint at `address`, if it is a canonical one.
    pub fn from_address(address: Address) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.address() == address)
    }

    /// Human name, "v0.7" or "v0.8".
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::V07 => "v0.7",
            Self::V08 => "v0.8",
        }
    }
}

impl std::fmt::Display for EntryPointVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use alloy::json_abi::JsonAbi;
    use alloy::sol_types::{SolCall, SolError, SolEvent, SolInterface};

    use super::*;

    fn abi(version: EntryPointVersion) -> &'static JsonAbi {
        &version.artifact().abi
    }

    #[test]
    fn canonical_addresses_come_from_the_artifacts() {
        for v in EntryPointVersion::ALL {
            let address = crate::deploy::create2_address(v.salt(), &v.init_code());
            assert_eq!(address, v.address(), "{v}");
        }
    }

    #[test]
    fn hand_written_interface_matches_the_artifacts() {
        for v in EntryPointVersion::ALL {
            let abi = abi(v);
            for selector in IEntryPoint::IEntryPointCalls::selectors() {
                assert!(abi.functions().any(|f| f.selector() == selector), "{v}: function {selector:?} missing");
            }
            for (name, selector) in [
                (IEntryPoint::FailedOp::SIGNATURE, IEntryPoint::FailedOp::SELECTOR),
                (IEntryPoint::FailedOpWithRevert::SIGNATURE, IEntryPoint::FailedOpWithRevert::SELECTOR),
                (IEntryPoint::SenderAddressResult::SIGNATURE, IEntryPoint::SenderAddressResult::SELECTOR),
            ] {
                assert!(abi.errors().any(|e| e.selector() == selector), "{v}: error {name} missing");
            }
            for (name, topic) in [
                (IEntryPoint::UserOperationEvent::SIGNATURE, IEntryPoint::UserOperationEvent::SIGNATURE_HASH),
                (IEntryPoint::AccountDeployed::SIGNATURE, IEntryPoint::AccountDeployed::SIGNATURE_HASH),
                (
                    IEntryPoint::UserOperationRevertReason::SIGNATURE,
                    IEntryPoint::UserOperationRevertReason::SIGNATURE_HASH,
                ),
                (IEntryPoint::BeforeExecution::SIGNATURE, IEntryPoint::BeforeExecution::SIGNATURE_HASH),
                (IEntryPoint::Deposited::SIGNATURE, IEntryPoint::Deposited::SIGNATURE_HASH),
            ] {
                assert!(abi.events().any(|e| e.selector() == topic), "{v}: event {name} missing");
            }
        }
        for v in EntryPointVersion::ALL {
            let sim = &v.simulations_artifact().abi;
            for selector in IEntryPointSimulations::IEntryPointSimulationsCalls::selectors() {
                assert!(sim.functions().any(|f| f.selector() == selector), "{v}: simulation {selector:?} missing");
            }
        }
        let v08 = abi(EntryPointVersion::V08);
        for selector in
            [IEntryPointV08::senderCreatorCall::SELECTOR, IEntryPointV08::getDomainSeparatorV4Call::SELECTOR]
        {
            assert!(v08.functions().any(|f| f.selector() == selector));
        }
    }
}
