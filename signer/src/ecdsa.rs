//! Turning a backend's raw `(r, s)` into an Ethereum signature, checked.
//!
//! One verification-style multiplication `R = u1·G + u2·Q` (with
//! `u1 = z/s`, `u2 = r/s`) both proves that the signature belongs to `Q` and gives
//! the recovery id: the parity of `R.y`. No trial recovery is needed.

use alloy_primitives::{Address, B256, U256};
use k256::{
    AffinePoint, ProjectivePoint, Scalar, U256 as KU256,
    ecdsa::{Signature, VerifyingKey},
    elliptic_curve::{
        PrimeField,
        ops::{LinearCombination, Reduce},
        point::AffineCoordinates,
    },
};

/// Why a raw signature could not be finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FinishError {
    /// It does not verify against the public key.
    Mismatch,
    /// `R.x` overflows the group order: no Ethereum `v` expresses it.
    Unrepresentable,
}

/// Normalises `s` to the lower half, checks the signature against `key` and
/// returns it with its `y` parity (EIP-2 / Ethereum form).
pub(crate) fn finish(
    key: &VerifyingKey,
    digest: &B256,
    raw: &Signature,
) -> Result<alloy_primitives::Signature, FinishError> {
    let sig = raw.normalize_s().unwrap_or(*raw);
    let (r, s) = (sig.r(), sig.s());
    let z = <Scalar as Reduce<KU256>>::reduce_bytes(digest.as_slice().into());
    let s_inv = Option::<Scalar>::from(s.invert()).ok_or(FinishError::Mismatch)?;
    let u1 = z * s_inv;
    let u2 = *r * s_inv;
    let big_r: AffinePoint =
        ProjectivePoint::lincomb(&ProjectivePoint::GENERATOR, &u1, &key.as_affine().into(), &u2).to_affine();
    if bool::from(k256::elliptic_curve::Group::is_identity(&ProjectivePoint::from(big_r))) {
        return Err(FinishError::Mismatch);
    }
    let x = big_r.x();
    if <Scalar as Reduce<KU256>>::reduce_bytes(&x) != *r {
        return Err(FinishError::Mismatch);
    }
    if Scalar::from_repr(x).into_option() != Some(*r) {
        // x ≥ n: recovery id 2 or 3, which a 27/28 `v` cannot carry.
        return Err(FinishError::Unrepresentable);
    }
    let y_odd = bool::from(big_r.y_is_odd());
    Ok(alloy_primitives::Signature::new(U256::from_be_slice(&r.to_bytes()), U256::from_be_slice(&s.to_bytes()), y_odd))
}

/// The Ethereum address of a secp256k1 public key.
pub fn address_of(key: &VerifyingKey) -> Address {
    let point = key.to_encoded_point(false);
    Address::from_raw_public_key(&point.as_bytes()[1..])
}

/// Parses an uncompressed or compressed SEC1 point, also when wrapped in the DER
/// OCTET STRING that PKCS#11 `CKA_EC_POINT` uses.
pub(crate) fn parse_point(bytes: &[u8]) -> Option<VerifyingKey> {
    if let Ok(key) = VerifyingKey::from_sec1_bytes(bytes) {
        return Some(key);
    }
    // DER OCTET STRING: 0x04, length (short or 0x81 long form), point.
    match bytes {
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() => VerifyingKey::from_sec1_bytes(rest).ok(),
        [0x04, 0x81, len, rest @ ..] if usize::from(*len) == rest.len() => VerifyingKey::from_sec1_bytes(rest).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::ecdsa::{SigningKey, signature::hazmat::PrehashSigner};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32].into()).expect("valid scalar")
    }

    #[test]
    fn matches_alloy_recovery_for_low_and_high_s() {
        let mut high_seen = false;
        for i in 0u8..64 {
            let sk = key(i.wrapping_add(1));
            let digest = alloy_primitives::keccak256([i]);
            let raw: Signature = sk.sign_prehash(digest.as_slice()).expect("sign");
            // Force both halves: flip s to its negation every other round.
            let raw = if i % 2 == 0 {
                raw
            } else {
                high_seen = true;
                Signature::from_scalars(raw.r(), -*raw.s()).expect("scalars")
            };
            let sig = finish(sk.verifying_key(), &digest, &raw).expect("finish");
            assert!(sig.s() <= U256::from_be_slice(&(Scalar::ZERO - Scalar::ONE).to_bytes()) >> 1);
            let recovered = sig.recover_address_from_prehash(&digest).expect("recover");
            assert_eq!(recovered, address_of(sk.verifying_key()));
        }
        assert!(high_seen);
    }

    #[test]
    fn rejects_signature_of_another_key() {
        let digest = alloy_primitives::keccak256(b"x");
        let raw: Signature = key(1).sign_prehash(digest.as_slice()).expect("sign");
        assert_eq!(finish(key(2).verifying_key(), &digest, &raw), Err(FinishError::Mismatch));
        let other = alloy_primitives::keccak256(b"y");
        assert_eq!(finish(key(1).verifying_key(), &other, &raw), Err(FinishError::Mismatch));
    }

    #[test]
    fn address_matches_known_vector() {
        // Private key 1: address 0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf.
        let mut one = [0u8; 32];
        one[31] = 1;
        let sk = SigningKey::from_bytes(&one.into()).expect("valid");
        assert_eq!(
            address_of(sk.verifying_key()),
            "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf".parse::<Address>().expect("address")
        );
    }

    #[test]
    fn parses_der_wrapped_point() {
        let sk = key(7);
        let point = sk.verifying_key().to_encoded_point(false);
        let mut der = vec![0x04, 65];
        der.extend_from_slice(point.as_bytes());
        assert_eq!(parse_point(&der), Some(*sk.verifying_key()));
        assert_eq!(parse_point(point.as_bytes()), Some(*sk.verifying_key()));
        assert_eq!(parse_point(&[0x04, 3, 1, 2, 3]), None);
    }
}
