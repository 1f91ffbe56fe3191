//! UserOperations for EntryPoint v0.7 and v0.8: the packed on-chain form, the unpacked ERC-7769 JSON form,
//! and the userOpHash (one implementation, used everywhere).
//!
//! ```text
//! UserOperation (JSON, ERC-7769) --pack--> PackedUserOperation --hash(version, entryPoint, chainId)--> userOpHash
//!                                                                  --signing_digest(version)--> owner signs
//! ```

use alloy::primitives::{Address, B256, Bytes, U256, eip191_hash_message, keccak256};
use alloy::sol_types::SolValue;
use serde::{Deserialize, Serialize};

pub use crate::entry_point::{EntryPointVersion, PackedUserOperation};
use crate::error::UserOpError;

/// `keccak256("PackedUserOperation(address sender,uint256 nonce,bytes initCode,bytes callData,bytes32 accountGasLimits,uint256 preVerificationGas,bytes32 gasFees,bytes paymasterAndData)")`,
/// the EIP-712 type hash of EntryPoint v0.8.
pub const PACKED_USEROP_TYPEHASH: B256 =
    alloy::primitives::b256!("0x29a0bca4af4be3421398da00295e58e6d7de38cb492214754cb6a47507dd6f8e");

/// Offset of the paymaster data in `paymasterAndData` (paymaster 20 ‖ verification gas 16 ‖ postOp gas 16).
pub const PAYMASTER_DATA_OFFSET: usize = 52;

/// EIP-7702 initCode marker of EntryPoint v0.8 (`0x7702` padded to 20 bytes).
const EIP7702_MARKER: [u8; 20] = {
    let mut m = [0u8; 20];
    m[0] = 0x77;
    m[1] = 0x02;
    m
};

/// A UserOperation in the unpacked ERC-7769 JSON form (v0.7 and v0.8): camelCase fields, hex quantities.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserOperation {
    pub sender: Address,
    pub nonce: U256,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factory: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factory_data: Option<Bytes>,
    pub call_data: Bytes,
    pub call_gas_limit: U256,
    pub verification_gas_limit: U256,
    pub pre_verification_gas: U256,
    pub max_fee_per_gas: U256,
    pub max_priority_fee_per_gas: U256,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paymaster: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paymaster_verification_gas_limit: Option<U256>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paymaster_post_op_gas_limit: Option<U256>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paymaster_data: Option<Bytes>,
    pub signature: Bytes,
}

/// Pack two 128-bit values into one word, `high ‖ low` (accountGasLimits, gasFees, paymaster gas limits).
pub fn pack_u128s(high: u128, low: u128) -> B256 {
    let mut word = [0u8; 32];
    word[..16].copy_from_slice(&high.to_be_bytes());
    word[16..].copy_from_slice(&low.to_be_bytes());
    B256::from(word)
}

/// Split a word packed by [`pack_u128s`].
pub fn unpack_u128s(word: B256) -> (u128, u128) {
    let mut high = [0u8; 16];
    let mut low = [0u8; 16];
    high.copy_from_slice(&word[..16]);
    low.copy_from_slice(&word[16..]);
    (u128::from_be_bytes(high), u128::from_be_bytes(low))
}

fn to_u128(value: U256, field: &'static str) -> Result<u128, UserOpError> {
    u128::try_from(value).map_err(|_| UserOpError::FieldTooLarge { field })
}

impl UserOperation {
    /// The most gas the operation may use: all its gas limits summed (saturating at `u64::MAX`).
    pub fn max_gas(&self) -> u64 {
        let sum = self
            .verification_gas_limit
            .saturating_add(self.call_gas_limit)
            .saturating_add(self.pre_verification_gas)
            .saturating_add(self.paymaster_verification_gas_limit.unwrap_or_default())
            .saturating_add(self.paymaster_post_op_gas_limit.unwrap_or_default());
        u64::try_from(sum).unwrap_or(u64::MAX)
    }

    /// The packed form the EntryPoint takes.
    pub fn pack(&self) -> Result<PackedUserOperation, UserOpError> {
        let init_code = match (self.factory, &self.factory_data) {
            (Some(factory), data) => {
                let mut code = factory.to_vec();
                code.extend_from_slice(data.as_ref().map_or(&[][..], |d| d.as_ref()));
                Bytes::from(code)
            }
            (None, Some(data)) if !data.is_empty() => return Err(UserOpError::FactoryDataWithoutFactory),
            (None, _) => Bytes::new(),
        };
        let paymaster_and_data = match self.paymaster {
            Some(paymaster) => {
                let mut pmd = paymaster.to_vec();
                let verification = self.paymaster_verification_gas_limit.unwrap_or_default();
                let post_op = self.paymaster_post_op_gas_limit.unwrap_or_default();
                pmd.extend_from_slice(
                    pack_u128s(
                        to_u128(verification, "paymasterVerificationGasLimit")?,
                        to_u128(post_op, "paymasterPostOpGasLimit")?,
                    )
                    .as_slice(),
                );
                pmd.extend_from_slice(self.paymaster_data.as_ref().map_or(&[][..], |d| d.as_ref()));
                Bytes::from(pmd)
            }
            None if self.paymaster_data.as_ref().is_some_and(|d| !d.is_empty()) => {
                return Err(UserOpError::PaymasterDataWithoutPaymaster);
            }
            None => Bytes::new(),
        };
        Ok(PackedUserOperation {
            sender: self.sender,
            nonce: self.nonce,
            initCode: init_code,
            callData: self.call_data.clone(),
            accountGasLimits: pack_u128s(
                to_u128(self.verification_gas_limit, "verificationGasLimit")?,
                to_u128(self.call_gas_limit, "callGasLimit")?,
            ),
            preVerificationGas: self.pre_verification_gas,
            gasFees: pack_u128s(
                to_u128(self.max_priority_fee_per_gas, "maxPriorityFeePerGas")?,
                to_u128(self.max_fee_per_gas, "maxFeePerGas")?,
            ),
            paymasterAndData: paymaster_and_data,
            signature: self.signature.clone(),
        })
    }

    /// The userOpHash of this operation for an EntryPoint of `version` at `entry_point` on `chain_id`.
    pub fn hash(&self, version: EntryPointVersion, entry_point: Address, chain_id: u64) -> Result<B256, UserOpError> {
        Ok(self.pack()?.hash(version, entry_point, chain_id))
    }
}

impl TryFrom<&PackedUserOperation> for UserOperation {
    type Error = UserOpError;

    fn try_from(op: &PackedUserOperation) -> Result<Self, UserOpError> {
        let (factory, factory_data) = match op.initCode.len() {
            0 => (None, None),
            n if n < 20 => return Err(UserOpError::ShortInitCode(n)),
            _ => (Some(Address::from_slice(&op.initCode[..20])), Some(op.initCode.slice(20..))),
        };
        let (paymaster, verification, post_op, data) = match op.paymasterAndData.len() {
            0 => (None, None, None, None),
            n if n < PAYMASTER_DATA_OFFSET => return Err(UserOpError::ShortPaymasterAndData(n)),
            _ => {
                let pmd = &op.paymasterAndData;
                let (v, p) = unpack_u128s(B256::from_slice(&pmd[20..PAYMASTER_DATA_OFFSET]));
                (
                    Some(Address::from_slice(&pmd[..20])),
                    Some(U256::from(v)),
                    Some(U256::from(p)),
                    Some(pmd.slice(PAYMASTER_DATA_OFFSET..)),
                )
            }
        };
        let (verification_gas_limit, call_gas_limit) = unpack_u128s(op.accountGasLimits);
        let (max_priority_fee_per_gas, max_fee_per_gas) = unpack_u128s(op.gasFees);
        Ok(Self {
            sender: op.sender,
            nonce: op.nonce,
            factory,
            factory_data,
            call_data: op.callData.clone(),
            call_gas_limit: U256::from(call_gas_limit),
            verification_gas_limit: U256::from(verification_gas_limit),
            pre_verification_gas: op.preVerificationGas,
            max_fee_per_gas: U256::from(max_fee_per_gas),
            max_priority_fee_per_gas: U256::from(max_priority_fee_per_gas),
            paymaster,
            paymaster_verification_gas_limit: verification,
            paymaster_post_op_gas_limit: post_op,
            paymaster_data: data,
            signature: op.signature.clone(),
        })
    }
}

impl PackedUserOperation {
    /// The userOpHash for an EntryPoint of `version` at `entry_point` on `chain_id`, as
    /// `EntryPoint.getUserOpHash` computes it.
    ///
    /// For v0.8 operations whose initCode carries the EIP-7702 marker, the hash depends on the sender's
    /// delegate (on-chain state): use [`Self::hash_v08_eip7702`] for those.
    pub fn hash(&self, version: EntryPointVersion, entry_point: Address, chain_id: u64) -> B256 {
        match version {
            EntryPointVersion::V07 => self.hash_v07(entry_point, chain_id),
            EntryPointVersion::V08 => self.hash_v08(entry_point, chain_id),
        }
    }

    /// v0.7: `keccak256(abi.encode(keccak256(pack(op)), entryPoint, chainId))`.
    pub fn hash_v07(&self, entry_point: Address, chain_id: u64) -> B256 {
        let inner = keccak256(self.encoded_fields(keccak256(&self.initCode)));
        keccak256((inner, entry_point, U256::from(chain_id)).abi_encode())
    }

    /// v0.8: the EIP-712 digest of the operation, domain {"ERC4337", "1", chainId, entryPoint}.
    pub fn hash_v08(&self, entry_point: Address, chain_id: u64) -> B256 {
        self.eip712_digest(keccak256(&self.initCode), entry_point, chain_id)
    }

    /// v0.8 for an EIP-7702 operation (initCode starting with the `0x7702` marker): the initCode hash is
    /// replaced by the hash of `delegate ‖ initCode[20..]`, where `delegate` is the sender's current
    /// EIP-7702 delegate. Equals [`Self::hash_v08`] for other operations.
    pub fn hash_v08_eip7702(&self, entry_point: Address, chain_id: u64, delegate: Address) -> B256 {
        let init_code_hash = if self.is_eip7702() {
            let mut preimage = delegate.to_vec();
            if self.initCode.len() > 20 {
                preimage.extend_from_slice(&self.initCode[20..]);
            }
            keccak256(preimage)
        } else {
            keccak256(&self.initCode)
        };
        self.eip712_digest(init_code_hash, entry_point, chain_id)
    }

    /// Whether the initCode carries EntryPoint v0.8's EIP-7702 marker.
    pub fn is_eip7702(&self) -> bool {
        self.initCode.len() >= 2 && {
            let mut head = [0u8; 20];
            let n = self.initCode.len().min(20);
            head[..n].copy_from_slice(&self.initCode[..n]);
            head == EIP7702_MARKER
        }
    }

    /// `abi.encode` of the operation's fields with the dynamic ones hashed, as both versions hash them
    /// (v0.8 puts its type hash in front: every field is one static word, so that is concatenation).
    fn encoded_fields(&self, init_code_hash: B256) -> Vec<u8> {
        (
            self.sender,
            self.nonce,
            init_code_hash,
            keccak256(&self.callData),
            self.accountGasLimits,
            self.preVerificationGas,
            self.gasFees,
            keccak256(&self.paymasterAndData),
        )
            .abi_encode()
    }

    fn eip712_digest(&self, init_code_hash: B256, entry_point: Address, chain_id: u64) -> B256 {
        let struct_hash = keccak256([PACKED_USEROP_TYPEHASH.as_slice(), &self.encoded_fields(init_code_hash)].concat());
        let domain = alloy::sol_types::eip712_domain! {
            name: "ERC4337",
            version: "1",
            chain_id: chain_id,
            verifying_contract: entry_point,
        };
        eip712_digest(&domain, struct_hash)
    }
}

/// The EIP-712 digest `keccak256(0x1901 ‖ domainSeparator ‖ structHash)`.
pub(crate) fn eip712_digest(domain: &alloy::sol_types::Eip712Domain, struct_hash: B256) -> B256 {
    let mut preimage = [0u8; 66];
    preimage[..2].copy_from_slice(&[0x19, 0x01]);
    preimage[2..34].copy_from_slice(domain.separator().as_slice());
    preimage[34..].copy_from_slice(struct_hash.as_slice());
    keccak256(preimage)
}

/// The 32-byte digest the account owner signs for `user_op_hash`: EIP-191 prefixed for v0.7 (as
/// SimpleAccount v0.7 and PeruriAccountV07 expect), the hash itself for v0.8 (already EIP-712).
pub fn signing_digest(version: EntryPointVersion, user_op_hash: B256) -> B256 {
    match version {
        EntryPointVersion::V07 => eip191_hash_message(user_op_hash),
        EntryPointVersion::V08 => user_op_hash,
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{address, bytes};

    use super::*;

    #[test]
    fn typehash_matches_the_type_string() {
        assert_eq!(
            PACKED_USEROP_TYPEHASH,
            keccak256(
                "PackedUserOperation(address sender,uint256 nonce,bytes initCode,bytes callData,bytes32 accountGasLimits,uint256 preVerificationGas,bytes32 gasFees,bytes paymasterAndData)"
            )
        );
    }

    fn sample() -> UserOperation {
        UserOperation {
            sender: address!("0x1111111111111111111111111111111111111111"),
            nonce: U256::from(7),
            factory: Some(address!("0x2222222222222222222222222222222222222222")),
            factory_data: Some(bytes!("0xdeadbeef")),
            call_data: bytes!("0xb61d27f6"),
            call_gas_limit: U256::from(100_000),
            verification_gas_limit: U256::from(200_000),
            pre_verification_gas: U256::from(50_000),
            max_fee_per_gas: U256::from(3),
            max_priority_fee_per_gas: U256::from(1),
            paymaster: Some(address!("0x3333333333333333333333333333333333333333")),
            paymaster_verification_gas_limit: Some(U256::from(60_000)),
            paymaster_post_op_gas_limit: Some(U256::from(1)),
            paymaster_data: Some(bytes!("0x0102")),
            signature: bytes!("0x99"),
        }
    }

    /// Vectors computed by the canonical EntryPoints' `getUserOpHash` (chain id 1) for [`sample`].
    #[test]
    fn hashes_match_entry_point_vectors() {
        let op = sample().pack().expect("packs");
        assert_eq!(
            op.hash(EntryPointVersion::V07, EntryPointVersion::V07.address(), 1),
            alloy::primitives::b256!("0xe61fce898e6a0746ec3fc30487bd8db7ee11589d97b67d6c08e99ce321ae2dc1")
        );
        assert_eq!(
            op.hash(EntryPointVersion::V08, EntryPointVersion::V08.address(), 1),
            alloy::primitives::b256!("0x8186b221c49558687adb9e5788eb73f05575c20f1cae60ff52c8567453944916")
        );
        // The signature is not hashed.
        let unsigned = PackedUserOperation { signature: Bytes::new(), ..op.clone() };
        assert_eq!(unsigned.hash_v07(Address::ZERO, 1), op.hash_v07(Address::ZERO, 1));
        // v0.7 accounts sign the EIP-191 prefixed hash, v0.8 accounts the hash itself.
        let h = op.hash_v08(EntryPointVersion::V08.address(), 1);
        assert_eq!(signing_digest(EntryPointVersion::V08, h), h);
        assert_eq!(signing_digest(EntryPointVersion::V07, h), eip191_hash_message(h));
    }

    #[test]
    fn pack_unpack_round_trip() {
        let op = sample();
        let packed = op.pack().expect("packs");
        assert_eq!(packed.initCode, bytes!("0x2222222222222222222222222222222222222222deadbeef"));
        assert_eq!(packed.accountGasLimits, pack_u128s(200_000, 100_000));
        assert_eq!(packed.gasFees, pack_u128s(1, 3));
        assert_eq!(packed.paymasterAndData.len(), PAYMASTER_DATA_OFFSET + 2);
        assert_eq!(UserOperation::try_from(&packed).expect("unpacks"), op);
    }

    #[test]
    fn json_is_erc7769() {
        let json = serde_json::to_value(sample()).expect("serializes");
        assert_eq!(json["sender"], "0x1111111111111111111111111111111111111111");
        assert_eq!(json["nonce"], "0x7");
        assert_eq!(json["factoryData"], "0xdeadbeef");
        assert_eq!(json["callGasLimit"], "0x186a0");
        assert_eq!(json["paymasterPostOpGasLimit"], "0x1");
        let back: UserOperation = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, sample());
        let minimal = UserOperation { factory: None, factory_data: None, paymaster: None, ..sample() };
        let minimal = UserOperation {
            paymaster_verification_gas_limit: None,
            paymaster_post_op_gas_limit: None,
            paymaster_data: None,
            ..minimal
        };
        let json = serde_json::to_value(&minimal).expect("serializes");
        assert!(json.get("factory").is_none() && json.get("paymaster").is_none());
        assert!(minimal.pack().expect("packs").initCode.is_empty());
    }

    #[test]
    fn rejects_inconsistent_fields() {
        let op = UserOperation { factory: None, ..sample() };
        assert!(matches!(op.pack(), Err(UserOpError::FactoryDataWithoutFactory)));
        let op = UserOperation { call_gas_limit: U256::MAX, ..sample() };
        assert!(matches!(op.pack(), Err(UserOpError::FieldTooLarge { field: "callGasLimit" })));
        let packed = PackedUserOperation { initCode: bytes!("0x01"), ..Default::default() };
        assert!(matches!(UserOperation::try_from(&packed), Err(UserOpError::ShortInitCode(1))));
    }

    #[test]
    fn eip7702_marker() {
        let mut op = PackedUserOperation { initCode: bytes!("0x7702"), ..Default::default() };
        assert!(op.is_eip7702());
        let ep = EntryPointVersion::V08.address();
        let delegate = address!("0x4444444444444444444444444444444444444444");
        assert_ne!(op.hash_v08_eip7702(ep, 1, delegate), op.hash_v08(ep, 1));
        op.initCode = bytes!("0x2222222222222222222222222222222222222222");
        assert!(!op.is_eip7702());
        assert_eq!(op.hash_v08_eip7702(ep, 1, delegate), op.hash_v08(ep, 1));
    }
}
