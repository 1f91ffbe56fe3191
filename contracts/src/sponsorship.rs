//! PeruriPaymaster's `paymasterAndData`: layout, the hash its signers sign, and assembly.
//!
//! ```text
//! paymasterAndData = paymaster (20) ‖ paymasterVerificationGasLimit (16) ‖ postOpGasLimit (16)
//!                  ‖ validUntil (6) ‖ validAfter (6) ‖ signature (65)
//! ```

use alloy::primitives::{Address, B256, Bytes, U256, eip191_hash_message, keccak256};
use alloy::sol_types::SolValue;

use crate::entry_point::PackedUserOperation;
use crate::userop::{PAYMASTER_DATA_OFFSET, pack_u128s};

/// Length of PeruriPaymaster's `paymasterAndData`.
pub const PAYMASTER_AND_DATA_LEN: usize = PAYMASTER_DATA_OFFSET + 6 + 6 + 65;

/// The largest value of a 48-bit timestamp.
pub const MAX_U48: u64 = (1 << 48) - 1;

/// A sponsorship: which paymaster, its gas limits and the validity window (`valid_until` never 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sponsorship {
    pub paymaster: Address,
    pub verification_gas_limit: u128,
    pub post_op_gas_limit: u128,
    /// Last second the sponsorship is valid (48 bits; PeruriPaymaster refuses 0, the EntryPoint's "forever").
    pub valid_until: u64,
    /// First second it is valid (48 bits).
    pub valid_after: u64,
}

impl Sponsorship {
    /// `paymasterAndData` with `signature` (65 bytes; a zero stub for gas estimation).
    pub fn paymaster_and_data(&self, signature: &[u8; 65]) -> Bytes {
        let mut out = Vec::with_capacity(PAYMASTER_AND_DATA_LEN);
        out.extend_from_slice(self.paymaster.as_slice());
        out.extend_from_slice(pack_u128s(self.verification_gas_limit, self.post_op_gas_limit).as_slice());
        out.extend_from_slice(&(self.valid_until & MAX_U48).to_be_bytes()[2..]);
        out.extend_from_slice(&(self.valid_after & MAX_U48).to_be_bytes()[2..]);
        out.extend_from_slice(signature);
        out.into()
    }

    /// `PeruriPaymaster.getHash(op, validUntil, validAfter)` on `chain_id`. Only the static part of
    /// `op.paymasterAndData` (its gas limits) is covered, so `op` may carry a stub signature.
    pub fn hash(&self, op: &PackedUserOperation, chain_id: u64) -> B256 {
        keccak256(
            (
                op.sender,
                op.nonce,
                keccak256(&op.initCode),
                keccak256(&op.callData),
                op.accountGasLimits,
                pack_u128s(self.verification_gas_limit, self.post_op_gas_limit),
                op.preVerificationGas,
                op.gasFees,
                U256::from(chain_id),
                self.paymaster,
                U256::from(self.valid_until & MAX_U48),
                U256::from(self.valid_after & MAX_U48),
            )
                .abi_encode(),
        )
    }

    /// The digest a paymaster signer signs: EIP-191 prefixed [`Self::hash`].
    pub fn signing_digest(&self, op: &PackedUserOperation, chain_id: u64) -> B256 {
        eip191_hash_message(self.hash(op, chain_id))
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::address;

    use super::*;

    #[test]
    fn layout() {
        let s = Sponsorship {
            paymaster: address!("0x1111111111111111111111111111111111111111"),
            verification_gas_limit: 0x10,
            post_op_gas_limit: 0x20,
            valid_until: 0x0102_0304_0506,
            valid_after: 7,
        };
        let pmd = s.paymaster_and_data(&[0xab; 65]);
        assert_eq!(pmd.len(), PAYMASTER_AND_DATA_LEN);
        assert_eq!(pmd[35], 0x10);
        assert_eq!(pmd[51], 0x20);
        assert_eq!(&pmd[52..58], &[1, 2, 3, 4, 5, 6]);
        assert_eq!(&pmd[58..64], &[0, 0, 0, 0, 0, 7]);
        assert_eq!(pmd[64..], [0xab; 65]);
    }
}
