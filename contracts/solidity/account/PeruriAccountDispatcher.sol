// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title PeruriAccountDispatcher
/// @notice The code every Peruri account clone delegates to: it delegates on to the account's logic, the
/// ERC-1967 implementation slot of the account when the account was upgraded (`upgradeToAndCall`, UUPS),
/// else the logic this dispatcher was made with. Undeployed and never-upgraded accounts write no storage.
///
/// It has no function of its own (anything it declared would shadow the logic's): only the fallback.
contract PeruriAccountDispatcher {
    /// ERC-1967: `bytes32(uint256(keccak256("eip1967.proxy.implementation")) - 1)`.
    bytes32 private constant IMPLEMENTATION_SLOT = 0x360894a13ba1a3210667c828492db98dca3e2076cc3735a920a3ca505d382bbc;

    /// The logic of an account that was never upgraded.
    address private immutable _initialLogic;

    constructor(address initialLogic) {
        _initialLogic = initialLogic;
    }

    fallback() external payable {
        address logic = _initialLogic;
        assembly ("memory-safe") {
            let upgraded := sload(IMPLEMENTATION_SLOT)
            if upgraded { logic := upgraded }
            calldatacopy(0x00, 0x00, calldatasize())
            let ok := delegatecall(gas(), logic, 0x00, calldatasize(), 0x00, 0x00)
            returndatacopy(0x00, 0x00, returndatasize())
            if iszero(ok) { revert(0x00, returndatasize()) }
            return(0x00, returndatasize())
        }
    }
}
