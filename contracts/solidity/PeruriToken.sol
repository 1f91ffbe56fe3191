// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Burnable} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Burnable.sol";
import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";

/// @title PeruriToken (PTKN)
/// @notice ERC-20 minted by holders of ISSUER_ROLE and burned only by its holders (`burn`, or `burnFrom`
/// within an allowance the holder gave): no role can take a user's tokens. Batch mints carry a batch id
/// that the contract refuses twice, so a retried issuance can never mint twice. The admin role moves in
/// two steps after a delay (`AccessControlDefaultAdminRules`) and is never zero.
contract PeruriToken is ERC20Burnable, AccessControlDefaultAdminRules {
    bytes32 public constant ISSUER_ROLE = keccak256("ISSUER_ROLE");

    /// Batch ids already minted.
    mapping(bytes32 batchId => bool) public batchUsed;

    event BatchMinted(bytes32 indexed batchId, uint256 recipients, uint256 total);

    error BatchAlreadyUsed(bytes32 batchId);
    error LengthMismatch();
    error InvalidIssuer();

    /// `adminDelay`: seconds between `beginDefaultAdminTransfer` and its acceptance.
    constructor(uint48 adminDelay, address admin, address issuer)
        ERC20("Peruri Token", "PTKN")
        AccessControlDefaultAdminRules(adminDelay, admin)
    {
        if (issuer == address(0)) revert InvalidIssuer();
        _grantRole(ISSUER_ROLE, issuer);
    }

    function mint(address to, uint256 amount) external onlyRole(ISSUER_ROLE) {
        _mint(to, amount);
    }

    /// Mint `amounts[i]` to `recipients[i]` for every i, once per `batchId`.
    function batchMint(bytes32 batchId, address[] calldata recipients, uint256[] calldata amounts)
        external
        onlyRole(ISSUER_ROLE)
    {
        if (batchUsed[batchId]) revert BatchAlreadyUsed(batchId);
        uint256 n = recipients.length;
        if (n != amounts.length) revert LengthMismatch();
        batchUsed[batchId] = true;
        uint256 total = 0;
        for (uint256 i = 0; i < n; ++i) {
            _mint(recipients[i], amounts[i]);
            total += amounts[i];
        }
        emit BatchMinted(batchId, n, total);
    }
}
