// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ERC1155} from "@openzeppelin/contracts/token/ERC1155/ERC1155.sol";
import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";

/// @title PeruriBadge (PBADGE)
/// @notice Soulbound ERC-1155 badges: minted (one per recipient and id: a second `mint` reverts, a batch
/// skips a recipient who already holds the id) and revoked (burned) by holders of ISSUER_ROLE; every
/// transfer and approval path reverts. Batch mints carry a batch id refused twice. `locked(id)` is
/// ERC-5192's, advertised through ERC-165. The admin role moves in two steps after a delay and is never zero.
contract PeruriBadge is ERC1155, AccessControlDefaultAdminRules {
    bytes32 public constant ISSUER_ROLE = keccak256("ISSUER_ROLE");

    /// Batch ids already minted.
    mapping(bytes32 batchId => bool) public batchUsed;

    event BatchMinted(bytes32 indexed batchId, uint256 recipients);

    error Soulbound();
    error BatchAlreadyUsed(bytes32 batchId);
    error LengthMismatch();
    error AlreadyHeld(address holder, uint256 id);
    error InvalidIssuer();

    /// ERC-5192's interface id (`locked(uint256)`).
    bytes4 private constant ERC5192_INTERFACE_ID = 0xb45a3c0e;

    /// `adminDelay`: seconds between `beginDefaultAdminTransfer` and its acceptance.
    constructor(uint48 adminDelay, address admin, address issuer, string memory uri_)
        ERC1155(uri_)
        AccessControlDefaultAdminRules(adminDelay, admin)
    {
        if (issuer == address(0)) revert InvalidIssuer();
        _grantRole(ISSUER_ROLE, issuer);
    }

    /// Every badge is locked (non-transferable), whatever its id.
    function locked(uint256) external pure returns (bool) {
        return true;
    }

    /// Mint badge `id` to `to`, who must not hold it yet.
    function mint(address to, uint256 id) external onlyRole(ISSUER_ROLE) {
        if (balanceOf(to, id) != 0) revert AlreadyHeld(to, id);
        _mint(to, id, 1, "");
    }

    /// Mint badge `ids[i]` to `recipients[i]` for every i who does not hold it yet, once per `batchId`
    /// (skipping rather than reverting, so one re-issued badge cannot block the batch's other recipients).
    function batchMint(bytes32 batchId, address[] calldata recipients, uint256[] calldata ids)
        external
        onlyRole(ISSUER_ROLE)
    {
        if (batchUsed[batchId]) revert BatchAlreadyUsed(batchId);
        uint256 n = recipients.length;
        if (n != ids.length) revert LengthMismatch();
        batchUsed[batchId] = true;
        for (uint256 i = 0; i < n; ++i) {
            if (balanceOf(recipients[i], ids[i]) == 0) {
                _mint(recipients[i], ids[i], 1, "");
            }
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

    function supportsInterface(bytes4 interfaceId) public view override(ERC1155, AccessControlDefaultAdminRules)
        returns (bool) {
        return interfaceId == ERC5192_INTERFACE_ID || super.supportsInterface(interfaceId);
    }
}
