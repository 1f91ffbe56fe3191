// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IAccount} from "@account-abstraction/contracts-v07/interfaces/IAccount.sol";
import {PackedUserOperation} from "@account-abstraction/contracts-v07/interfaces/PackedUserOperation.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {PeruriAccountCore} from "./PeruriAccountCore.sol";
import {PeruriAccountFactoryCore} from "./PeruriAccountFactoryCore.sol";

/// @title PeruriAccountV07
/// @notice Peruri smart account for EntryPoint v0.7: the owner signs the EIP-191 prefixed userOpHash
/// (as SimpleAccount v0.7 does).
contract PeruriAccountV07 is PeruriAccountCore, IAccount {
    constructor(address anEntryPoint) PeruriAccountCore(anEntryPoint) {}

    function validateUserOp(PackedUserOperation calldata userOp, bytes32 userOpHash, uint256 missingAccountFunds)
        external
        onlyEntryPoint
        returns (uint256 validationData)
    {
        bytes32 digest = MessageHashUtils.toEthSignedMessageHash(userOpHash);
        validationData = _isOwnerSignature(digest, userOp.signature) ? SIG_VALIDATION_SUCCESS : SIG_VALIDATION_FAILED;
        _payPrefund(missingAccountFunds);
    }
}

/// @title PeruriAccountFactoryV07
/// @notice Factory of PeruriAccountV07. EntryPoint v0.7 has no `senderCreator()` getter: its SenderCreator
/// is the first contract the EntryPoint created, at CREATE address (entryPoint, nonce 1).
contract PeruriAccountFactoryV07 is PeruriAccountFactoryCore {
    constructor(address anEntryPoint)
        PeruriAccountFactoryCore(address(new PeruriAccountV07(anEntryPoint)), _firstCreate(anEntryPoint))
    {}

    function _firstCreate(address deployer) private pure returns (address) {
        return address(uint160(uint256(keccak256(abi.encodePacked(bytes2(0xd694), deployer, bytes1(0x01))))));
    }
}
