// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ERC1155} from "@openzeppelin/contracts/token/ERC1155/ERC1155.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title PeruriBadge (PBADGE)
/// @notice Soulbound ERC-1155 badges: minted (one per recipient and id) and revoked (burned) by holders of
/// ISSUER_ROLE; every transfer and approval path reverts. Batch mints carry a batch id refused twice.
contract PeruriBadge is ERC1155, AccessControl {
    bytes32 public constant ISSUER_ROLE = keccak256("ISSUER_ROLE");

    /// Batch ids already minted.
    mapping(bytes32 batchId => bool) public batchUsed;

    event BatchMinted(bytes32 indexed batchId, uint256 recipients);

    error Soulbound();
    error BatchAlreadyUsed(bytes32 batchId);
    error LengthMismatch();

    constructor(address admin, address issuer, string memory uri_) ERC1155(uri_) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(ISSUER_ROLE, issuer);
    }

    /// Every badge is locked (non-transferable), whatever its id.
    function locked(uint256) external pure returns (bool) {
        return true;
    }

    function mint(address to, uint256 id) external onlyRole(ISSUER_ROLE) {
        _mint(to, id, 1, "");
    }

    /// Mint badge `ids[i]` to `recipients[i]` for every i, once per `batchId`.
    function batchMint(bytes32 batchId, address[] calldata recipients, uint256[] calldata ids)
        external
        onlyRole(ISSUER_ROLE)
    {
        if (batchUsed[batchId]) revert BatchAlreadyUsed(batchId);
        uint256 n = recipients.length;
        if (n != ids.length) revert LengthMismatch();
        batchUsed[batchId] = true;
        for (uint256 i = 0; i < n; ++i) {
            _mint(recipients[i], ids[i], 1, "");
        }
        emit BatchMinted(batchId, n);
    }

    /// Revoke (burn) one badge `id` of `from`.
    function revoke(address from, uint256 id) external onlyRole(ISSUER_ROLE) {
        _burn(from, id, 1);
    }

    function setURI(string calldata newUri) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setURI(newUri);
    }

    function setApprovalForAll(address, bool) public pure override {
        revert Soulbound();
    }

    function safeTransferFrom(address, address, uint256, uint256, bytes memory) public pure override {
        revert Soulbound();
    }

    function safeBatchTransferFrom(address, address, uint256[] memory, uint256[] memory, bytes memory)
        public
        pure
        override
    {
        revert Soulbound();
    }

    /// Only mints (from zero) and burns (to zero, reachable through `revoke` only) move badges.
    function _update(address from, address to, uint256[] memory ids, uint256[] memory values) internal override {
        if (from != address(0) && to != address(0)) revert Soulbound();
        super._update(from, to, ids, values);
    }

    function supportsInterface(bytes4 interfaceId) public view override(ERC1155, AccessControl) returns (bool) {
        return super.supportsInterface(interfaceId);
    }
}
