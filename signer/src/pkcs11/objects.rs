//! Object templates and single-session PKCS#11 operations.
//!
//! Every function here runs on one borrowed session and is pure PKCS#11: no
//! caching, no retry (those live in [`super::Hsm`]).

use cryptoki::{
    error::Result,
    mechanism::Mechanism,
    object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle},
    session::Session,
};
use k256::ecdsa::{Signature, VerifyingKey};

use crate::ecdsa::parse_point;

/// DER of the secp256k1 OID 1.3.132.0.10, the `CKA_EC_PARAMS` of every key here.
const SECP256K1_PARAMS: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];

/// An object's label as bytes.
fn label(l: &str) -> Attribute {
    Attribute::Label(l.as_bytes().to_vec())
}

/// The first object of `class` with `label`, if any.
pub(super) fn find(session: &Session, class: ObjectClass, l: &str) -> Result<Option<ObjectHandle>> {
    Ok(session.find_objects(&[Attribute::Class(class), label(l)])?.into_iter().next())
}

/// A versioned KEK: AES-256, on the token, sensitive, never extractable, wrap and unwrap only.
pub(super) fn generate_kek(session: &Session, l: &str) -> Result<ObjectHandle> {
    session.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(32.into()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Wrap(true),
            Attribute::Unwrap(true),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
            Attribute::Derive(false),
            label(l),
        ],
    )
}

/// The pseudonym key: a 256-bit generic secret for HMAC-SHA256, never extractable.
pub(super) fn generate_hmac_key(session: &Session, l: &str) -> Result<ObjectHandle> {
    session.generate_key(
        &Mechanism::GenericSecretKeyGen,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::ValueLen(32.into()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Verify(true),
            label(l),
        ],
    )
}

/// A secp256k1 key pair. `persistent` keys are token objects that can never leave
/// the token; the others are session objects that may only leave it wrapped.
pub(super) fn generate_ec(session: &Session, l: &str, persistent: bool) -> Result<(ObjectHandle, ObjectHandle)> {
    let public = [
        Attribute::Token(persistent),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::EcParams(SECP256K1_PARAMS.to_vec()),
        label(l),
    ];
    let private = [
        Attribute::Token(persistent),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(!persistent),
        Attribute::Sign(true),
        Attribute::Derive(false),
        label(l),
    ];
    session.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
}

/// The public key of an EC public-key object.
pub(super) fn public_key(session: &Session, public: ObjectHandle) -> Result<Option<VerifyingKey>> {
    let attrs = session.get_attributes(public, &[AttributeType::EcPoint])?;
    Ok(attrs.into_iter().find_map(|a| match a {
        Attribute::EcPoint(point) => parse_point(&point),
        _ => None,
    }))
}

/// Wraps a private key under a KEK with CKM_AES_KEY_WRAP_PAD (RFC 5649).
pub(super) fn wrap(session: &Session, kek: ObjectHandle, key: ObjectHandle) -> Result<Vec<u8>> {
    session.wrap_key(&Mechanism::AesKeyWrapPad, kek, key)
}

/// Unwraps a blob into a session object that can sign; `extractable` only for re-wrapping.
pub(super) fn unwrap(session: &Session, kek: ObjectHandle, blob: &[u8], extractable: bool) -> Result<ObjectHandle> {
    session.unwrap_key(
        &Mechanism::AesKeyWrapPad,
        kek,
        blob,
        &[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(KeyType::EC),
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(extractable),
            Attribute::Sign(true),
        ],
    )
}

/// Raw CKM_ECDSA over a 32-byte digest: `r ‖ s`.
pub(super) fn sign(session: &Session, key: ObjectHandle, digest: &[u8; 32]) -> Result<Option<Signature>> {
    let raw = session.sign(&Mechanism::Ecdsa, key, digest)?;
    Ok(Signature::from_slice(&raw).ok())
}

/// HMAC-SHA256 with a secret key object.
pub(super) fn hmac(session: &Session, key: ObjectHandle, data: &[u8]) -> Result<Vec<u8>> {
    session.sign(&Mechanism::Sha256Hmac, key, data)
}
