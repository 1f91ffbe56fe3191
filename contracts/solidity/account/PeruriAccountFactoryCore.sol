// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";
import {PeruriAccountDispatcher} from "./PeruriAccountDispatcher.sol";

/// @title PeruriAccountFactoryCore
/// @notice Deploys Peruri accounts as ERC-1167 clones whose immutable argument is the initial owner. Every
/// clone delegates to one `PeruriAccountDispatcher` (this factory's second CREATE), which runs the account's
/// upgraded logic (its ERC-1967 slot) or else the factory's logic (its first CREATE).
///
/// `createAccount(owner, salt)` and `getAddress(owner, salt)` have SimpleAccountFactory's ABI. Anyone may
/// call `createAccount` (a UserOperation's initCode through the SenderCreator, or an ERC-6492 verifier
/// deploying a counterfactual account to check its signature): the owner is part of the CREATE2 address, so
/// nobody can deploy a user's address with any other owner.
abstract contract PeruriAccountFactoryCore {
    /// The code every clone delegates to: the dispatcher.
    address public immutable accountImplementation;
    /// The logic of a never-upgraded account.
    address public immutable accountLogic;
    /// The EntryPoint's SenderCreator (kept for callers that read it).
    address public immutable senderCreator;

    event AccountCreated(address indexed account, address indexed owner, uint256 salt);

    error InvalidOwner();

    constructor(address logic, address creator) {
        accountLogic = logic;
        accountImplementation = address(new PeruriAccountDispatcher(logic));
        senderCreator = creator;
    }

    /// Deploy the account of `owner` and `salt` (once), returning its address either way.
    function createAccount(address owner, uint256 salt) external returns (address account) {
        if (owner == address(0)) revert InvalidOwner();
        account = getAddress(owner, salt);
        if (account.code.length == 0) {
            Clones.cloneDeterministicWithImmutableArgs(accountImplementation, abi.encodePacked(owner), bytes32(salt));
            emit AccountCreated(account, owner, salt);
        }
    }

    /// The counterfactual address of the account of `owner` and `salt`.
    function getAddress(address owner, uint256 salt) public view returns (address) {
        return Clones.predictDeterministicAddressWithImmutableArgs(
            accountImplementation, abi.encodePacked(owner), bytes32(salt)
        );
    }
}
