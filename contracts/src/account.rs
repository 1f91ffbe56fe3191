//! PeruriAccount: counterfactual addresses, initCode and call data, ERC-1271 digests.

use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::sol_types::{SolCall, SolValue};

use crate::bindings::peruri_account_factory_v07::PeruriAccountFactoryV07;
use crate::bindings::peruri_account_v08::{PeruriAccountCore::Call, PeruriAccountV08};

/// Init code of an OpenZeppelin `Clones` ERC-1167 proxy with immutable args (`implementation`, args = `owner`).
pub fn clone_init_code(implementation: Address, owner: Address) -> Bytes {
    let args = owner.as_slice();
    let mut code = Vec::with_capacity(55 + args.len());
    code.push(0x61);
    code.extend_from_slice(&u16::try_from(45 + args.len()).unwrap_or(u16::MAX).to_be_bytes());
    code.extend_from_slice(&[0x3d, 0x81, 0x60, 0x0a, 0x3d, 0x39, 0xf3]);
    code.extend_from_slice(&[0x36, 0x3d, 0x3d, 0x37, 0x3d, 0x3d, 0x3d, 0x36, 0x3d, 0x73]);
    code.extend_from_slice(implementation.as_slice());
    code.extend_from_slice(&[0x5a, 0xf4, 0x3d, 0x82, 0x80, 0x3e, 0x90, 0x3d, 0x91, 0x60, 0x2b, 0x57, 0xfd, 0x5b, 0xf3]);
    code.extend_from_slice(args);
    code.into()
}

/// The counterfactual address of the account of `owner` and `salt` made by `factory` (whose implementation
/// is `implementation`, see [`crate::Contracts::account_implementation`]); equals `factory.getAddress`.
pub fn account_address(factory: Address, implementation: Address, owner: Address, salt: U256) -> Address {
    factory.create2(B256::from(salt), keccak256(clone_init_code(implementation, owner)))
}

/// `createAccount(owner, salt)` call data: the `factoryData` of a first UserOperation.
pub fn factory_data(owner: Address, salt: U256) -> Bytes {
    PeruriAccountFactoryV07::createAccountCall { owner, salt }.abi_encode().into()
}

/// `execute(target, value, data)` call data.
pub fn execute(target: Address, value: U256, data: Bytes) -> Bytes {
    PeruriAccountV08::executeCall { target, value, data }.abi_encode().into()
}

/// `executeBatch((address,uint256,bytes)[])` call data.
pub fn execute_batch(calls: impl IntoIterator<Item = (Address, U256, Bytes)>) -> Bytes {
    let calls = calls.into_iter().map(|(target, value, data)| Call { target, value, data }).collect();
    PeruriAccountV08::executeBatch_0Call { calls }.abi_encode().into()
}

/// Call data of the UserOperation that rotates `account`'s owner to `new_owner`
/// (`execute(account, 0, changeOwner(new_owner))`).
pub fn change_owner(account: Address, new_owner: Address) -> Bytes {
    execute(account, U256::ZERO, PeruriAccountV08::changeOwnerCall { newOwner: new_owner }.abi_encode().into())
}

/// Call data of the UserOperation that makes `account` run `logic` from now on, then delegates `data` to it
/// (`execute(account, 0, upgradeToAndCall(logic, data))`; UUPS over ERC-1967).
pub fn upgrade(account: Address, logic: Address, data: Bytes) -> Bytes {
    let call = PeruriAccountV08::upgradeToAndCallCall { newImplementation: logic, data };
    execute(account, U256::ZERO, call.abi_encode().into())
}

/// The digest the owner signs so that `account.isValidSignature(hash, sig)` accepts: `hash` re-hashed under
/// the account's EIP-712 domain {"PeruriAccount", "1", chainId, account} as `PeruriMessage(bytes32 hash)`.
pub fn replay_safe_hash(account: Address, chain_id: u64, hash: B256) -> B256 {
    let domain = alloy::sol_types::eip712_domain! {
        name: "PeruriAccount",
        version: "1",
        chain_id: chain_id,
        verifying_contract: account,
    };
    let struct_hash = keccak256((keccak256("PeruriMessage(bytes32 hash)"), hash).abi_encode());
    crate::userop::eip712_digest(&domain, struct_hash)
}

/// The ERC-6492 magic suffix of a signature by a not-yet-deployed contract.
pub const ERC6492_MAGIC: B256 =
    alloy::primitives::b256!("0x6492649264926492649264926492649264926492649264926492649264926492");

/// An ERC-6492 signature of a counterfactual account: `abi.encode(factory, factoryCalldata, signature)`
/// followed by [`ERC6492_MAGIC`]. A verifier calls `factory` with `factoryCalldata` (deploying the account),
/// then the account's ERC-1271 `isValidSignature` with `signature`.
pub fn erc6492_wrap(factory: Address, factory_calldata: Bytes, signature: Bytes) -> Bytes {
    let mut out = (factory, factory_calldata, signature).abi_encode_params();
    out.extend_from_slice(ERC6492_MAGIC.as_slice());
    out.into()
}

#[cfg(test)]
mod tests {
    use alloy::primitives::address;

    use super::*;

    #[test]
    fn clone_code_layout() {
        let implementation = address!("0x1111111111111111111111111111111111111111");
        let owner = address!("0x2222222222222222222222222222222222222222");
        let code = clone_init_code(implementation, owner);
        // 10 bytes of creation prefix, 45 bytes of ERC-1167 runtime, 20 bytes of args.
        assert_eq!(code.len(), 75);
        assert_eq!(&code[..3], &[0x61, 0x00, 0x41]);
        assert_eq!(&code[20..40], implementation.as_slice());
        assert_eq!(&code[55..], owner.as_slice());
    }

    #[test]
    fn both_batch_overloads_exist() {
        use crate::bindings::peruri_account_v07::PeruriAccountV07;
        let selectors =
            [PeruriAccountV07::executeBatch_0Call::SELECTOR, PeruriAccountV07::executeBatch_1Call::SELECTOR];
        // SimpleAccount v0.7: executeBatch(address[],uint256[],bytes[]) = 0x47e1da2a
        assert!(selectors.contains(&[0x47, 0xe1, 0xda, 0x2a]));
        // SimpleAccount v0.8: executeBatch((address,uint256,bytes)[]) = 0x34fcd5be
        assert!(selectors.contains(&[0x34, 0xfc, 0xd5, 0xbe]));
        assert_eq!(PeruriAccountV08::executeCall::SELECTOR, [0xb6, 0x1d, 0x27, 0xf6]);
    }
}
