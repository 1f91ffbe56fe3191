// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// @title PeruriLog (PLOG)
/// @notice Anchors the merkle roots of activity batches (OpenZeppelin StandardMerkleTree shape:
/// double-hashed leaves, sorted pairs). A batch id is anchored once; anyone can check a leaf's proof. The
/// admin role moves in two steps after a delay and is never zero.
contract PeruriLog is AccessControlDefaultAdminRules {
    bytes32 public constant ANCHOR_ROLE = keccak256("ANCHOR_ROLE");

    struct Batch {
        bytes32 root;
        uint64 leafCount;
        uint64 anchoredAt;
        string uri;
    }

    mapping(bytes32 batchId => Batch) private _batches;

    event BatchAnchored(bytes32 indexed batchId, bytes32 indexed root, uint64 leafCount, string uri);

    error BatchAlreadyAnchored(bytes32 batchId);
    error InvalidBatch();
    error InvalidAnchorer();

    /// `adminDelay`: seconds between `beginDefaultAdminTransfer` and its acceptance.
    constructor(uint48 adminDelay, address admin, address anchorer) AccessControlDefaultAdminRules(adminDelay, admin) {
        if (anchorer == address(0)) revert InvalidAnchorer();
        _grantRole(ANCHOR_ROLE, anchorer);
    }

    /// Record the root of batch `batchId` (`leafCount` leaves, details at `uri`).
    function anchor(bytes32 batchId, bytes32 root, uint64 leafCount, string calldata uri)
        external
        onlyRole(ANCHOR_ROLE)
    {
        if (root == bytes32(0) || leafCount == 0) revert InvalidBatch();
        Batch storage batch = _batches[batchId];
        if (batch.root != bytes32(0)) revert BatchAlreadyAnchored(batchId);
        batch.root = root;
        batch.leafCount = leafCount;
        batch.anchoredAt = uint64(block.timestamp);
        batch.uri = uri;
        emit BatchAnchored(batchId, root, leafCount, uri);
    }

    /// The anchored batch (all zero if unknown).
    function getBatch(bytes32 batchId) external view returns (Batch memory) {
        return _batches[batchId];
    }

    /// Whether `leaf` (already hashed: keccak256(bytes.concat(keccak256(abi.encode(values))))) belongs to
    /// the batch, given its merkle `proof`. False for an unknown batch. An inner node of the tree with a
    /// shortened proof passes too: to check an activity, use `verifyActivity`, which hashes its values.
    function verify(bytes32 batchId, bytes32[] calldata proof, bytes32 leaf) public view returns (bool) {
        bytes32 root = _batches[batchId].root;
        return root != bytes32(0) && MerkleProof.verifyCalldata(proof, root, leaf);
    }

    /// Whether the activity (`id`, `kind`, `occurredAt`, as `GET /activity/{id}` shows them) belongs to the
    /// batch: its leaf is hashed here from the values, so nothing but a real leaf can pass.
    function verifyActivity(
        bytes32 batchId,
        bytes32[] calldata proof,
        bytes32 id,
        string calldata kind,
        uint64 occurredAt
    ) external view returns (bool) {
        return verify(batchId, proof, keccak256(bytes.concat(keccak256(abi.encode(id, kind, occurredAt)))));
    }
}
