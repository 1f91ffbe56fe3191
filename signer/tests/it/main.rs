//! Integration tests of the signing core against real parts: a fresh SoftHSM2
//! token per test, SQLite and PostgreSQL, and the moto KMS server.

#![allow(clippy::unwrap_used, clippy::print_stdout, unreachable_pub)]

mod alloy;
mod errors;
mod kms;
mod pkcs11;
mod store;

use alloy_primitives::{Address, B256, Signature, keccak256};

/// Recovers the signer of `digest` with k256 (through alloy) and compares.
pub(crate) fn assert_signed_by(sig: &Signature, digest: &B256, address: Address) {
    let recovered = sig.recover_address_from_prehash(digest).expect("recoverable signature");
    assert_eq!(recovered, address, "signature must recover to the key's address");
    // Low-s: s ≤ n/2, as EIP-2 and OpenZeppelin's ECDSA require.
    let half_n =
        alloy_primitives::U256::from_str_radix("7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0", 16)
            .unwrap();
    assert!(sig.s() <= half_n, "s must be in the lower half");
}

/// A deterministic digest for round `i`.
pub(crate) fn digest(i: u64) -> B256 {
    keccak256(i.to_be_bytes())
}
