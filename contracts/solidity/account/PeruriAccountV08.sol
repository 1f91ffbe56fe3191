// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IAccount} from "@account-abstraction/contracts-v08/interfaces/IAccount.sol";
import {IEntryPoint} from "@account-abstraction/contracts-v08/interfaces/IEntryPoint.sol";
import {PackedUserOperation} from "@account-abstraction/contracts-v08/interfaces/PackedUserOperation.sol";
import {PeruriAccountCore} from "./PeruriAccountCore.sol";
import {PeruriAccountFactoryCore} from "./PeruriAccountFactoryCore.sol";

/// @title PeruriAccountV08
/// @notice Peruri smart account for EntryPoint v0.8: the owner signs the userOpHash as is (it is already an
/// EIP-712 digest), as SimpleAccount v0.8 does.
contract PeruriAccountV08 is PeruriAccountCore, IAccount {
    constructor(address anEntryPoint) PeruriAccountCore(anEntryPoint) {}

    function validateUserOp(PackedUserOperation calldata userOp, bytes32 userOpHash, uint256 missingAccountFunds)
        external
        onlyEntryPoint
        returns (uint256 validationData)
    {
        validationData =
            _isOwnerSignature(userOpHash, userOp.signature) ? SIG_VALIDATION_SUCCESS : SIG_VALIDATION_FAILED;
        _payPrefund(missingAccountFunds);
    }
}

/// @title PeruriAccountFactoryV08
/// @notice Factory of PeruriAccountV08; the SenderCreator comes from the EntryPoint's `senderCreator()`.
contract PeruriAccountFactoryV08 is PeruriAccountFactoryCore {
    constructor(address anEntryPoint)
        PeruriAccountFactoryCore(
            address(new PeruriAccountV08(anEntryPoint)), address(IEntryPoint(anEntryPoint).senderCreator())
        )
    {}
}
