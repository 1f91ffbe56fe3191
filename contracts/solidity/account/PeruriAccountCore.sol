// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";
import {IERC721Receiver} from "@openzeppelin/contracts/token/ERC721/IERC721Receiver.sol";
import {IERC1155Receiver} from "@openzeppelin/contracts/token/ERC1155/IERC1155Receiver.sol";

/// The part of the EntryPoint (v0.7 and v0.8 alike) that the account calls.
interface IEntryPointDeposits {
    function getNonce(address sender, uint192 key) external view returns (uint256 nonce);
    function balanceOf(address account) external view returns (uint256);
    function depositTo(address account) external payable;
    function withdrawTo(address payable withdrawAddress, uint256 withdrawAmount) external;
}

/// @title PeruriAccountCore
/// @notice The version-independent part of a Peruri smart account.
///
/// Every account is an ERC-1167 minimal proxy *with immutable arguments* (OpenZeppelin `Clones`): the
/// 20-byte argument appended to the proxy code is the account's initial owner. Deploying an account is
/// therefore one CREATE2 of 65 bytes of code and no storage write at all. Rotating the owner writes the
/// new owner to storage slot 0, which from then on takes precedence over the initial owner; the address
/// never changes because it only depends on the factory, the implementation, the initial owner and the salt.
///
/// The account is upgradeable by itself only (UUPS over ERC-1967): `upgradeToAndCall`, reachable through
/// `execute` from the EntryPoint, i.e. a UserOperation signed by the owner, writes the new logic to the
/// ERC-1967 implementation slot, which the dispatcher the clone delegates to reads. A new logic must keep
/// this storage layout (slot 0: the rotated owner) and the clone layout (the initial owner in the code).
///
/// `execute` and `executeBatch` are ABI-compatible with eth-infinitism's SimpleAccount (both the v0.7
/// array form and the v0.8 `Call[]` form), but only the EntryPoint may call them: the owner acts through
/// UserOperations only, so rotation (`changeOwner`, callable by the account itself) always goes through
/// the EntryPoint.
abstract contract PeruriAccountCore is IERC1271, IERC165, IERC721Receiver, IERC1155Receiver {
    /// A call of `executeBatch((address,uint256,bytes)[])` (SimpleAccount v0.8 `BaseAccount.Call`).
    struct Call {
        address target;
        uint256 value;
        bytes data;
    }

    /// Size of an ERC-1167 proxy with a 20-byte immutable argument.
    uint256 private constant CLONE_CODE_SIZE = 65;
    /// Offset of the immutable argument (the initial owner) in the clone's code.
    uint256 private constant CLONE_ARGS_OFFSET = 45;

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant DOMAIN_NAME_HASH = keccak256("PeruriAccount");
    bytes32 private constant DOMAIN_VERSION_HASH = keccak256("1");
    /// ERC-1271 messages are re-hashed under the account's own EIP-712 domain so that one owner key
    /// controlling several accounts (or chains) cannot have a signature replayed from one to the other.
    bytes32 private constant MESSAGE_TYPEHASH = keccak256("PeruriMessage(bytes32 hash)");

    /// ERC-1967: `bytes32(uint256(keccak256("eip1967.proxy.implementation")) - 1)`.
    bytes32 private constant IMPLEMENTATION_SLOT = 0x360894a13ba1a3210667c828492db98dca3e2076cc3735a920a3ca505d382bbc;

    uint256 internal constant SIG_VALIDATION_SUCCESS = 0;
    uint256 internal constant SIG_VALIDATION_FAILED = 1;

    address private immutable _entryPoint;
    /// This logic's own address, to tell a call through an account from a direct one.
    address private immutable _self = address(this);

    /// Rotated owner; zero until the first rotation (then the clone argument is the owner).
    address private _rotatedOwner;

    event OwnerChanged(address indexed previousOwner, address indexed newOwner);
    /// ERC-1967's event: the account runs `implementation` from now on.
    event Upgraded(address indexed implementation);

    error NotFromEntryPoint();
    error NotFromSelf();
    error InvalidOwner();
    error LengthMismatch();
    error InvalidImplementation(address implementation);
    error NotThroughAccount();

    constructor(address anEntryPoint) {
        _entryPoint = anEntryPoint;
    }

    receive() external payable {}

    modifier onlyEntryPoint() {
        if (msg.sender != _entryPoint) revert NotFromEntryPoint();
        _;
    }

    modifier onlySelf() {
        if (msg.sender != address(this)) revert NotFromSelf();
        _;
    }

    /// The EntryPoint this account trusts.
    function entryPoint() public view returns (address) {
        return _entryPoint;
    }

    /// The current owner: the rotated owner if the account was ever rotated, else the initial owner.
    function owner() public view returns (address) {
        address rotated = _rotatedOwner;
        return rotated != address(0) ? rotated : _initialOwner();
    }

    /// The next sequential nonce (key 0).
    function getNonce() external view returns (uint256) {
        return IEntryPointDeposits(_entryPoint).getNonce(address(this), 0);
    }

    /// Replace the owner. Only the account itself may call this, i.e. through `execute` from the EntryPoint
    /// with a UserOperation signed by the current owner.
    function changeOwner(address newOwner) external onlySelf {
        if (newOwner == address(0) || newOwner == address(this)) revert InvalidOwner();
        address previous = owner();
        _rotatedOwner = newOwner;
        emit OwnerChanged(previous, newOwner);
    }

    /// The logic this account runs: its ERC-1967 slot once upgraded, else this logic.
    function implementation() external view returns (address logic) {
        assembly ("memory-safe") {
            logic := sload(IMPLEMENTATION_SLOT)
        }
        if (logic == address(0)) logic = _self;
    }

    /// ERC-1822: the slot an upgradeable logic keeps its address in; only on the logic itself (as
    /// OpenZeppelin's UUPSUpgradeable), so an account cannot be made the logic of another.
    function proxiableUUID() external view returns (bytes32) {
        if (address(this) != _self) revert NotThroughAccount();
        return IMPLEMENTATION_SLOT;
    }

    /// Run `newImplementation` from now on, then delegate `data` to it (if any). Only the account itself may
    /// call this (a UserOperation signed by the owner, through `execute`); `newImplementation` must answer
    /// `proxiableUUID` with the ERC-1967 slot, so an account is never pointed at code that cannot upgrade.
    function upgradeToAndCall(address newImplementation, bytes calldata data) external payable onlySelf {
        if (newImplementation.code.length == 0) revert InvalidImplementation(newImplementation);
        try PeruriAccountCore(payable(newImplementation)).proxiableUUID() returns (bytes32 slot) {
            if (slot != IMPLEMENTATION_SLOT) revert InvalidImplementation(newImplementation);
        } catch {
            revert InvalidImplementation(newImplementation);
        }
        assembly ("memory-safe") {
            sstore(IMPLEMENTATION_SLOT, newImplementation)
        }
        emit Upgraded(newImplementation);
        if (data.length != 0) {
            (bool success, bytes memory result) = newImplementation.delegatecall(data);
            if (!success) {
                assembly ("memory-safe") {
                    revert(add(result, 0x20), mload(result))
                }
            }
        }
    }

    /// Execute one call (SimpleAccount ABI).
    function execute(address target, uint256 value, bytes calldata data) external onlyEntryPoint {
        _call(target, value, data);
    }

    /// Execute several calls (SimpleAccount v0.7 ABI); an empty `value` array means no value.
    function executeBatch(address[] calldata target, uint256[] calldata value, bytes[] calldata data)
        external
        onlyEntryPoint
    {
        uint256 n = target.length;
        if (n != data.length || (value.length != 0 && value.length != n)) revert LengthMismatch();
        for (uint256 i = 0; i < n; ++i) {
            _call(target[i], value.length == 0 ? 0 : value[i], data[i]);
        }
    }

    /// Execute several calls (SimpleAccount v0.8 ABI).
    function executeBatch(Call[] calldata calls) external onlyEntryPoint {
        uint256 n = calls.length;
        for (uint256 i = 0; i < n; ++i) {
            _call(calls[i].target, calls[i].value, calls[i].data);
        }
    }

    /// The digest the owner signs for an ERC-1271 check of `hash` (EIP-712, domain "PeruriAccount" v1).
    function replaySafeHash(bytes32 hash) public view returns (bytes32) {
        bytes32 domainSeparator = keccak256(
            abi.encode(DOMAIN_TYPEHASH, DOMAIN_NAME_HASH, DOMAIN_VERSION_HASH, block.chainid, address(this))
        );
        bytes32 structHash = keccak256(abi.encode(MESSAGE_TYPEHASH, hash));
        bytes32 digest;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, hex"1901")
            mstore(add(ptr, 0x02), domainSeparator)
            mstore(add(ptr, 0x22), structHash)
            digest := keccak256(ptr, 0x42)
        }
        return digest;
    }

    /// ERC-1271: a 65-byte signature by the owner over `replaySafeHash(hash)`.
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        return _isOwnerSignature(replaySafeHash(hash), signature) ? this.isValidSignature.selector : bytes4(0xffffffff);
    }

    /// Deposit in the EntryPoint for this account.
    function getDeposit() external view returns (uint256) {
        return IEntryPointDeposits(_entryPoint).balanceOf(address(this));
    }

    /// Add to this account's deposit in the EntryPoint.
    function addDeposit() external payable {
        IEntryPointDeposits(_entryPoint).depositTo{value: msg.value}(address(this));
    }

    /// Withdraw from this account's deposit (through a UserOperation only).
    function withdrawDepositTo(address payable withdrawAddress, uint256 amount) external onlySelf {
        IEntryPointDeposits(_entryPoint).withdrawTo(withdrawAddress, amount);
    }

    function onERC721Received(address, address, uint256, bytes calldata) external pure returns (bytes4) {
        return IERC721Receiver.onERC721Received.selector;
    }

    function onERC1155Received(address, address, uint256, uint256, bytes calldata) external pure returns (bytes4) {
        return IERC1155Receiver.onERC1155Received.selector;
    }

    function onERC1155BatchReceived(address, address, uint256[] calldata, uint256[] calldata, bytes calldata)
        external
        pure
        returns (bytes4)
    {
        return IERC1155Receiver.onERC1155BatchReceived.selector;
    }

    function supportsInterface(bytes4 interfaceId) external pure returns (bool) {
        return interfaceId == type(IERC165).interfaceId || interfaceId == type(IERC721Receiver).interfaceId
            || interfaceId == type(IERC1155Receiver).interfaceId || interfaceId == type(IERC1271).interfaceId;
    }

    /// True if `signature` is a valid (low-s, 65-byte) ECDSA signature of `digest` by the owner.
    function _isOwnerSignature(bytes32 digest, bytes calldata signature) internal view returns (bool) {
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        return err == ECDSA.RecoverError.NoError && recovered == owner();
    }

    /// Pay the EntryPoint what it asks for (zero on a zero-gas-price chain or with a paymaster).
    function _payPrefund(uint256 missingAccountFunds) internal {
        if (missingAccountFunds != 0) {
            (bool success,) = payable(msg.sender).call{value: missingAccountFunds}("");
            (success); // the EntryPoint checks the deposit, not us
        }
    }

    /// The clone argument; zero when not running as a clone (e.g. the implementation itself).
    function _initialOwner() private view returns (address initial) {
        assembly ("memory-safe") {
            if eq(extcodesize(address()), CLONE_CODE_SIZE) {
                extcodecopy(address(), 0x00, CLONE_ARGS_OFFSET, 20)
                initial := shr(96, mload(0x00))
            }
        }
    }

    function _call(address target, uint256 value, bytes calldata data) private {
        (bool success, bytes memory result) = target.call{value: value}(data);
        if (!success) {
            assembly ("memory-safe") {
                revert(add(result, 0x20), mload(result))
            }
        }
    }
}
