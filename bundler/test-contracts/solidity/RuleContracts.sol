// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

// ERC-7562 rule-test contracts for the bundler's simulator (bundler/tests/sim). Each account breaks
// exactly one rule in validateUserOp; the helper address, when one is needed, is abi-encoded in the
// UserOperation's signature. Accounts, RuleFactory and RulePaymaster can stake on an EntryPoint, for the
// rules that staked entities are exempt from. None of this is deployed anywhere but the local test chain.

struct PackedUserOperation {
    address sender;
    uint256 nonce;
    bytes initCode;
    bytes callData;
    bytes32 accountGasLimits;
    uint256 preVerificationGas;
    bytes32 gasFees;
    bytes paymasterAndData;
    bytes signature;
}

interface INonces {
    function getNonce(address sender, uint192 key) external view returns (uint256);
}

interface IStakeManager {
    function addStake(uint32 unstakeDelaySec) external payable;
}

/// An entity that stakes on an EntryPoint itself (a stake belongs to the caller of addStake).
abstract contract Stakeable {
    function addStake(IStakeManager entryPoint, uint32 unstakeDelaySec) external payable {
        entryPoint.addStake{value: msg.value}(unstakeDelaySec);
    }
}

/// A target with an associated mapping, an unassociated slot and a gas burner.
contract RuleStore {
    mapping(address => uint256) public balances;
    uint256 public total;

    function set(address a, uint256 v) external {
        balances[a] = v;
        total += v;
    }

    /// Writes only the slot associated with `a`.
    function put(address a, uint256 v) external {
        balances[a] = v;
    }

    function burn() external pure {
        while (true) {}
    }
}

/// Base: validateUserOp runs `_probe(helper)` and returns `_validationData()`.
abstract contract RuleAccount is Stakeable {
    function validateUserOp(PackedUserOperation calldata op, bytes32, uint256) external returns (uint256) {
        address helper = op.signature.length >= 32 ? abi.decode(op.signature, (address)) : address(0);
        _probe(helper);
        return _validationData();
    }

    function _probe(address helper) internal virtual {}

    function _validationData() internal view virtual returns (uint256) {
        return 0;
    }

    receive() external payable {}
}

/// Breaks nothing.
contract ValidAccount is RuleAccount {}

/// OP-011: TIMESTAMP.
contract TimestampAccount is RuleAccount {
    function _probe(address) internal view override {
        require(block.timestamp != 0, "never");
    }
}

/// OP-012: GAS not followed by a call.
contract GasAccount is RuleAccount {
    function _probe(address) internal view override {
        require(gasleft() != 0, "never");
    }
}

/// OP-080: BALANCE by an unstaked entity.
contract BalanceAccount is RuleAccount {
    function _probe(address helper) internal view override {
        require(helper.balance != 1, "never");
    }
}

/// OP-041: a call to an address without code.
contract CodelessCallAccount is RuleAccount {
    function _probe(address helper) internal override {
        (bool ok,) = helper.call("");
        ok;
    }
}

/// OP-013: a call into code made of an unassigned opcode (the helper's), with little gas: the halt
/// consumes what the call was given, not the account's validation gas.
contract UnassignedOpcodeAccount is RuleAccount {
    function _probe(address helper) internal override {
        (bool ok,) = helper.call{gas: 1000}("");
        ok;
    }
}

/// OP-041: EXTCODESIZE of an address without code.
contract ExtCodeAccount is RuleAccount {
    function _probe(address helper) internal view override {
        require(helper.code.length != 12345, "never");
    }
}

/// OP-061: a call with value to someone other than the EntryPoint.
contract ValueCallAccount is RuleAccount {
    function _probe(address helper) internal override {
        (bool ok,) = payable(helper).call{value: 1}("");
        ok;
    }
}

/// OP-054: any EntryPoint call other than depositTo / the fallback.
contract EntryPointCallAccount is RuleAccount {
    function _probe(address) internal view override {
        require(INonces(msg.sender).getNonce(address(this), 1) != type(uint256).max, "never");
    }
}

/// OP-054: a direct call to the SenderCreator (the EntryPoint's first CREATE), which only the EntryPoint
/// may call: its frame is infrastructure, so what it ran would escape the rules.
contract SenderCreatorCallAccount is RuleAccount {
    function _probe(address) internal override {
        address senderCreator = address(
            uint160(uint256(keccak256(abi.encodePacked(bytes1(0xd6), bytes1(0x94), msg.sender, bytes1(0x01)))))
        );
        (bool ok,) = senderCreator.call(abi.encodeWithSignature("createSender(bytes)", bytes("")));
        ok;
    }
}

/// OP-054: the EntryPoint's code run in the account's own context (DELEGATECALL), where the tracer would
/// otherwise take it for the EntryPoint itself.
contract EntryPointDelegateAccount is RuleAccount {
    function _probe(address) internal override {
        (bool ok,) = msg.sender.delegatecall(abi.encodeCall(INonces.getNonce, (address(this), 1)));
        ok;
    }
}

/// OP-054: the same through CALLCODE.
contract EntryPointCallCodeAccount is RuleAccount {
    function _probe(address) internal override {
        bytes memory input = abi.encodeCall(INonces.getNonce, (address(this), 1));
        address entryPoint = msg.sender;
        assembly ("memory-safe") {
            pop(callcode(gas(), entryPoint, 0, add(input, 0x20), mload(input), 0, 0))
        }
    }
}

/// OP-051: EXTCODESIZE of the EntryPoint followed by ISZERO (an existence check) is allowed. (The result
/// goes through memory: `if iszero(...)` would be compiled to a bare JUMPI, without the ISZERO.)
contract EntryPointExistsAccount is RuleAccount {
    function _probe(address) internal view override {
        address entryPoint = msg.sender;
        assembly ("memory-safe") {
            mstore(0, iszero(extcodesize(entryPoint)))
            if mload(0) { revert(0, 0) }
        }
    }
}

/// OP-054: EXTCODESIZE of the EntryPoint used for anything but ISZERO.
contract EntryPointCodeSizeAccount is RuleAccount {
    function _probe(address) internal view override {
        address entryPoint = msg.sender;
        assembly ("memory-safe") {
            if lt(extcodesize(entryPoint), 100) { revert(0, 0) }
        }
    }
}

/// OP-031: CREATE2 outside the factory.
contract Create2Account is RuleAccount {
    function _probe(address) internal override {
        new RuleStore{salt: bytes32(uint256(1))}();
    }
}

/// OP-020: an inner call that runs out of gas.
contract OutOfGasAccount is RuleAccount {
    function _probe(address helper) internal override {
        (bool ok,) = helper.call{gas: 10000}(abi.encodeCall(RuleStore.burn, ()));
        ok;
    }
}

/// STO-033: reads a slot of another contract not associated with the sender (unstaked).
contract UnassociatedStorageAccount is RuleAccount {
    function _probe(address helper) internal view override {
        require(RuleStore(helper).total() != type(uint256).max, "never");
    }
}

/// STO-021: reads the sender's entry in another contract's mapping: allowed for a deployed sender.
contract AssociatedStorageAccount is RuleAccount {
    function _probe(address helper) internal view override {
        require(RuleStore(helper).balances(address(this)) != type(uint256).max, "never");
    }
}

/// Returns validUntil = 1 (long expired).
contract ExpiredAccount is RuleAccount {
    function _validationData() internal pure override returns (uint256) {
        return uint256(1) << 160;
    }
}

/// A paymaster that reads TIMESTAMP (OP-011, attributed to the paymaster).
contract TimestampPaymaster {
    function validatePaymasterUserOp(PackedUserOperation calldata, bytes32, uint256)
        external
        view
        returns (bytes memory context, uint256 validationData)
    {
        require(block.timestamp != 0, "never");
        return ("", 0);
    }

    function postOp(uint8, bytes calldata, uint256, uint256) external {}
}

/// A factory deploying a ValidAccount (with `associated`, an AssociatedStorageAccount) by CREATE2 at `salt`;
/// with `count` it also writes its own storage (STO-031).
contract RuleFactory is Stakeable {
    uint256 public created;

    function createAccount(bytes32 salt, bool associated, bool count) external returns (address) {
        if (count) created += 1;
        if (associated) return address(new AssociatedStorageAccount{salt: salt}());
        return address(new ValidAccount{salt: salt}());
    }
}

/// A paymaster whose validation runs the probe named in its paymaster data, abi.encode(Probe, helper).
contract RulePaymaster is Stakeable {
    enum Probe {
        None,
        OwnStorage, // STO-031
        OwnTransientStorage, // OP-070, as STO-031
        Balance, // OP-080
        Context, // a non-empty context (EREP-050, removed from ERC-7562)
        ReadExternal, // STO-033, read
        WriteExternal, // STO-033, write: refused even when staked
        WriteOwnAssociated, // STO-032
        ReadSenderAssociated // STO-021/022, or STO-033 when staked
    }

    uint256 public validations;

    function validatePaymasterUserOp(PackedUserOperation calldata op, bytes32, uint256)
        external
        returns (bytes memory context, uint256 validationData)
    {
        (Probe probe, address helper) = abi.decode(op.paymasterAndData[52:], (Probe, address));
        if (probe == Probe.OwnStorage) {
            validations += 1;
        } else if (probe == Probe.OwnTransientStorage) {
            uint256 t;
            assembly {
                t := tload(0)
            }
            require(t != 1, "never");
        } else if (probe == Probe.Balance) {
            require(address(this).balance != 1, "never");
        } else if (probe == Probe.Context) {
            context = abi.encode(op.sender);
        } else if (probe == Probe.ReadExternal) {
            require(RuleStore(helper).total() != type(uint256).max, "never");
        } else if (probe == Probe.WriteExternal) {
            RuleStore(helper).set(address(1), 1);
        } else if (probe == Probe.WriteOwnAssociated) {
            RuleStore(helper).put(address(this), 1);
        } else if (probe == Probe.ReadSenderAssociated) {
            require(RuleStore(helper).balances(op.sender) != type(uint256).max, "never");
        }
        return (context, 0);
    }

    function postOp(uint8, bytes calldata, uint256, uint256) external {}
}
