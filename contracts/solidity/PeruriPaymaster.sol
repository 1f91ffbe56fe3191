// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IPaymaster} from "@account-abstraction/contracts-v08/interfaces/IPaymaster.sol";
import {PackedUserOperation} from "@account-abstraction/contracts-v08/interfaces/PackedUserOperation.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";

/// The staking part of the EntryPoint (identical in v0.7 and v0.8).
interface IEntryPointStake {
    function balanceOf(address account) external view returns (uint256);
    function depositTo(address account) external payable;
    function withdrawTo(address payable withdrawAddress, uint256 withdrawAmount) external;
    function addStake(uint32 unstakeDelaySec) external payable;
    function unlockStake() external;
    function withdrawStake(address payable withdrawAddress) external;
}

/// @title PeruriPaymaster
/// @notice Verifying paymaster whose signer *set* the owner can change, so the sponsorship key can rotate
/// with an overlap. Works with EntryPoint v0.7 and v0.8 (same PackedUserOperation and IPaymaster ABI);
/// deploy one per EntryPoint.
///
/// paymasterAndData = paymaster (20) ‖ paymasterVerificationGasLimit (16) ‖ postOpGasLimit (16)
///                  ‖ validUntil (6) ‖ validAfter (6) ‖ signature (65)
///
/// The signature is an ECDSA signature by a signer of the set over the EIP-191 prefixed `getHash(...)`.
contract PeruriPaymaster is IPaymaster, Ownable2Step {
    uint256 private constant PAYMASTER_DATA_OFFSET = 52;
    uint256 private constant VALID_UNTIL_OFFSET = PAYMASTER_DATA_OFFSET;
    uint256 private constant VALID_AFTER_OFFSET = PAYMASTER_DATA_OFFSET + 6;
    uint256 private constant SIGNATURE_OFFSET = PAYMASTER_DATA_OFFSET + 12;
    uint256 private constant SIGNATURE_LENGTH = 65;

    address public immutable entryPoint;

    /// Whether an address may sign sponsorships.
    mapping(address signer => bool) public isSigner;

    event SignerAdded(address indexed signer);
    event SignerRemoved(address indexed signer);

    error NotFromEntryPoint();
    error InvalidPaymasterData(uint256 length);
    error InvalidSigner(address signer);
    /// `validUntil = 0` would mean "never expires" to the EntryPoint: a sponsorship always has an end.
    error UnboundedSponsorship();
    /// Renouncing would lock the deposit, the stake and the signer set for good.
    error RenounceDisabled();

    /// Staked at deployment with the value sent (`unstakeDelaySec` of unstake delay): validation reads the
    /// signer set from this contract's storage, which ERC-7562 (STO-031) allows a staked paymaster only.
    constructor(address anEntryPoint, address initialOwner, address[] memory signers, uint32 unstakeDelaySec)
        payable
        Ownable(initialOwner)
    {
        entryPoint = anEntryPoint;
        for (uint256 i = 0; i < signers.length; ++i) {
            _addSigner(signers[i]);
        }
        IEntryPointStake(anEntryPoint).addStake{value: msg.value}(unstakeDelaySec);
    }

    modifier onlyEntryPoint() {
        if (msg.sender != entryPoint) revert NotFromEntryPoint();
        _;
    }

    function addSigner(address signer) external onlyOwner {
        _addSigner(signer);
    }

    function removeSigner(address signer) external onlyOwner {
        if (!isSigner[signer]) revert InvalidSigner(signer);
        isSigner[signer] = false;
        emit SignerRemoved(signer);
    }

    /// The hash a signer signs (EIP-191 prefixed) to sponsor `userOp` between `validAfter` and `validUntil`.
    /// It covers every field but the signatures, the chain and this paymaster.
    function getHash(PackedUserOperation calldata userOp, uint48 validUntil, uint48 validAfter)
        public
        view
        returns (bytes32)
    {
        return keccak256(
            abi.encode(
                userOp.sender,
                userOp.nonce,
                keccak256(userOp.initCode),
                keccak256(userOp.callData),
                userOp.accountGasLimits,
                uint256(bytes32(userOp.paymasterAndData[20:PAYMASTER_DATA_OFFSET])),
                userOp.preVerificationGas,
                userOp.gasFees,
                block.chainid,
                address(this),
                validUntil,
                validAfter
            )
        );
    }

    /// Split the paymaster data of `paymasterAndData`.
    function parsePaymasterAndData(bytes calldata paymasterAndData)
        public
        pure
        returns (uint48 validUntil, uint48 validAfter, bytes calldata signature)
    {
        if (paymasterAndData.length != SIGNATURE_OFFSET + SIGNATURE_LENGTH) {
            revert InvalidPaymasterData(paymasterAndData.length);
        }
        validUntil = uint48(bytes6(paymasterAndData[VALID_UNTIL_OFFSET:VALID_AFTER_OFFSET]));
        validAfter = uint48(bytes6(paymasterAndData[VALID_AFTER_OFFSET:SIGNATURE_OFFSET]));
        signature = paymasterAndData[SIGNATURE_OFFSET:];
    }

    /// @inheritdoc IPaymaster
    /// @dev Reverts for `validUntil = 0` (UnboundedSponsorship): every sponsorship expires.
    function validatePaymasterUserOp(PackedUserOperation calldata userOp, bytes32, uint256)
        external
        view
        onlyEntryPoint
        returns (bytes memory context, uint256 validationData)
    {
        (uint48 validUntil, uint48 validAfter, bytes calldata signature) =
            parsePaymasterAndData(userOp.paymasterAndData);
        if (validUntil == 0) revert UnboundedSponsorship();
        bytes32 digest = MessageHashUtils.toEthSignedMessageHash(getHash(userOp, validUntil, validAfter));
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        uint256 sigFailed = (err == ECDSA.RecoverError.NoError && isSigner[recovered]) ? 0 : 1;
        validationData = sigFailed | (uint256(validUntil) << 160) | (uint256(validAfter) << 208);
        context = "";
    }

    /// @notice Never called: validation returns an empty context.
    function postOp(PostOpMode, bytes calldata, uint256, uint256) external view onlyEntryPoint {}

    /// Ownership moves in two steps (`transferOwnership`, then `acceptOwnership` by the new owner) and is
    /// never renounced.
    function renounceOwnership() public view override onlyOwner {
        revert RenounceDisabled();
    }

    /// Deposit for this paymaster in the EntryPoint.
    function getDeposit() external view returns (uint256) {
        return IEntryPointStake(entryPoint).balanceOf(address(this));
    }

    function deposit() external payable {
        IEntryPointStake(entryPoint).depositTo{value: msg.value}(address(this));
    }

    function withdrawTo(address payable withdrawAddress, uint256 amount) external onlyOwner {
        IEntryPointStake(entryPoint).withdrawTo(withdrawAddress, amount);
    }

    function addStake(uint32 unstakeDelaySec) external payable onlyOwner {
        IEntryPointStake(entryPoint).addStake{value: msg.value}(unstakeDelaySec);
    }

    function unlockStake() external onlyOwner {
        IEntryPointStake(entryPoint).unlockStake();
    }

    function withdrawStake(address payable withdrawAddress) external onlyOwner {
        IEntryPointStake(entryPoint).withdrawStake(withdrawAddress);
    }

    function _addSigner(address signer) private {
        if (signer == address(0) || isSigner[signer]) revert InvalidSigner(signer);
        isSigner[signer] = true;
        emit SignerAdded(signer);
    }
}
