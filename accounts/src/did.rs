//! `did:peruri` identifiers and their W3C DID Core documents.
//!
//! A DID is `did:peruri:<id>` where `<id>` is the first 20 bytes (160 bits) of
//! `HMAC-SHA256(pseudonym key, "did:peruri:" ‖ user_id)`, computed inside the HSM, written in
//! lowercase RFC 4648 base32 without padding: exactly 32 characters of `a-z2-7`. It is URL-safe,
//! fixed-length, and reveals nothing about the user id without the HSM's pseudonym key.

use std::{fmt, str::FromStr};

use alloy::primitives::Address;
use serde::{Serialize, Serializer};

use crate::Error;

/// The DID prefix of this method.
const PREFIX: &str = "did:peruri:";
/// Bytes of the pseudonym kept in a DID.
const ID_BYTES: usize = 20;
/// Characters of the method-specific id (160 bits / 5 bits per character).
const ID_CHARS: usize = ID_BYTES * 8 / 5;
/// RFC 4648 base32 alphabet, lowercase.
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A well-formed `did:peruri:<id>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Did(String);

impl Did {
    /// The pseudonym input for `user_id`: domain-separated so that the HMAC of a bare user id, should
    /// another feature ever publish one, cannot be linked to a DID.
    pub(crate) fn pseudonym_input(user_id: &str) -> Vec<u8> {
        [PREFIX.as_bytes(), user_id.as_bytes()].concat()
    }

    /// The DID of a pseudonym (the HMAC output).
    pub(crate) fn from_pseudonym(pseudonym: &[u8; 32]) -> Self {
        Self(format!("{PREFIX}{}", base32(&pseudonym[..ID_BYTES])))
    }

    /// The DID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The method-specific id (the 32 base32 characters).
    pub fn id(&self) -> &str {
        &self.0[PREFIX.len()..]
    }
}

impl FromStr for Did {
    type Err = Error;

    /// Accepts only the canonical form; the error says what is wrong without repeating the input.
    fn from_str(s: &str) -> Result<Self, Error> {
        let Some(rest) = s.strip_prefix("did:") else {
            return Err(Error::MalformedDid("not a DID (expected did:peruri:<id>)"));
        };
        let Some(id) = rest.strip_prefix("peruri:") else {
            return Err(Error::MalformedDid("unsupported DID method (expected did:peruri:<id>)"));
        };
        if !id.bytes().all(|b| BASE32.contains(&b)) {
            return Err(Error::MalformedDid(
                "the id must be lowercase base32 (a-z, 2-7) without path, query or fragment",
            ));
        }
        if id.len() != ID_CHARS {
            return Err(Error::MalformedDid("the id must be 32 characters"));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Did {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// RFC 4648 base32, lowercase, no padding.
fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity((bytes.len() * 8).div_ceil(5));
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8 | u32::from(byte)) & 0xfff;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[(buffer >> bits & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32[(buffer << (5 - bits) & 31) as usize]));
    }
    out
}

/// A W3C DID Core document with one `EcdsaSecp256k1RecoveryMethod2020` verification method: the
/// smart account, as a CAIP-10 `blockchainAccountId`, used for authentication and assertions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DidDocument {
    /// JSON-LD contexts: DID v1 and the secp256k1 recovery suite.
    #[serde(rename = "@context")]
    #[schema(value_type = Vec<String>)]
    pub context: [&'static str; 2],
    /// The DID.
    pub id: Did,
    /// The account's verification method.
    pub verification_method: Vec<VerificationMethod>,
    /// Verification methods for authentication (by reference).
    pub authentication: Vec<String>,
    /// Verification methods for assertions, e.g. credentials (by reference).
    pub assertion_method: Vec<String>,
}

/// A verification method bound to a blockchain account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMethod {
    /// `<did>#controller`.
    pub id: String,
    /// `EcdsaSecp256k1RecoveryMethod2020`.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// The DID.
    pub controller: Did,
    /// CAIP-10: `eip155:<chainId>:<checksummed address>`.
    pub blockchain_account_id: String,
}

impl DidDocument {
    /// The document of `did` whose smart account is `account` on chain `chain_id`.
    pub fn new(did: &Did, chain_id: u64, account: Address) -> Self {
        let method = format!("{did}#controller");
        Self {
            context: ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/suites/secp256k1recovery-2020/v2"],
            id: did.clone(),
            verification_method: vec![VerificationMethod {
                id: method.clone(),
                kind: "EcdsaSecp256k1RecoveryMethod2020",
                controller: did.clone(),
                blockchain_account_id: format!("eip155:{chain_id}:{}", account.to_checksum(None)),
            }],
            authentication: vec![method.clone()],
            assertion_method: vec![method],
        }
    }
}

/// A DID resolution result as a Universal Resolver driver returns it (`GET /1.0/identifiers/{did}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DidResolution {
    /// `https://w3id.org/did-resolution/v1`.
    #[serde(rename = "@context")]
    #[schema(value_type = String)]
    pub context: &'static str,
    /// The document.
    pub did_document: DidDocument,
    /// About the resolution.
    pub did_resolution_metadata: ResolutionMetadata,
    /// About the document.
    pub did_document_metadata: DocumentMetadata,
}

/// DID resolution metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolutionMetadata {
    /// The document's media type: [`DidResolution::DOCUMENT_MEDIA_TYPE`].
    #[schema(value_type = String)]
    pub content_type: &'static str,
}

/// DID document metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DocumentMetadata {
    /// When the DID was created (XML datetime in UTC, whole seconds: `2026-01-02T03:04:05Z`).
    pub created: String,
    /// Whether the DID is deactivated.
    pub deactivated: bool,
}

impl DidResolution {
    /// Media type of the whole resolution result (the HTTP `Content-Type`).
    pub const MEDIA_TYPE: &'static str = "application/ld+json;profile=\"https://w3id.org/did-resolution\"";
    /// Media type of the DID document inside.
    pub const DOCUMENT_MEDIA_TYPE: &'static str = "application/did+ld+json";

    /// The resolution of `document`, created at `created_at` (Unix milliseconds).
    pub fn new(document: DidDocument, created_at: i64, deactivated: bool) -> Self {
        Self {
            context: "https://w3id.org/did-resolution/v1",
            did_document: document,
            did_resolution_metadata: ResolutionMetadata { content_type: Self::DOCUMENT_MEDIA_TYPE },
            did_document_metadata: DocumentMetadata { created: xml_datetime(created_at), deactivated },
        }
    }
}

/// Unix milliseconds as an XML datetime in UTC with whole seconds (proleptic Gregorian calendar).
fn xml_datetime(millis: i64) -> String {
    let secs = millis.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (H. Hinnant): eras of 400 years starting 0000-03-01.
    let z = days + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use alloy::primitives::address;
    use serde_json::json;

    use super::*;

    #[test]
    fn base32_rfc4648_vectors() {
        let vectors =
            [("", ""), ("f", "my"), ("fo", "mzxq"), ("foo", "mzxw6"), ("foob", "mzxw6yq"), ("fooba", "mzxw6ytb")];
        for (input, output) in vectors {
            assert_eq!(base32(input.as_bytes()), output, "base32({input:?})");
        }
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
        // Python: base64.b32encode(bytes(range(20))).lower()
        assert_eq!(base32(&(0..20).collect::<Vec<u8>>()), "aaaqeayeaudaocajbifqydiob4ibceqt");
        assert_eq!(base32(&[0xff; 20]), "77777777777777777777777777777777");
    }

    #[test]
    fn did_from_pseudonym_is_fixed_length_and_drops_the_tail() {
        let mut pseudonym = [0u8; 32];
        pseudonym[..20].copy_from_slice(&(0..20).collect::<Vec<u8>>());
        pseudonym[20..].fill(0xee);
        let did = Did::from_pseudonym(&pseudonym);
        assert_eq!(did.as_str(), "did:peruri:aaaqeayeaudaocajbifqydiob4ibceqt");
        assert_eq!(did.id(), "aaaqeayeaudaocajbifqydiob4ibceqt");
        assert_eq!(did.as_str().parse::<Did>().unwrap(), did);
        assert_eq!(Did::from_pseudonym(&[0xff; 32]).id().len(), 32);
    }

    #[test]
    fn pseudonym_input_is_domain_separated() {
        assert_eq!(Did::pseudonym_input("alice"), b"did:peruri:alice");
    }

    #[test]
    fn malformed_dids_are_rejected_with_a_reason() {
        let ok = "did:peruri:aaaqeayeaudaocajbifqydiob4ibceqt";
        assert!(ok.parse::<Did>().is_ok());
        let cases = [
            ("", "not a DID"),
            ("peruri:aaaqeayeaudaocajbifqydiob4ibceqt", "not a DID"),
            ("DID:peruri:aaaqeayeaudaocajbifqydiob4ibceqt", "not a DID"),
            ("did:web:aaaqeayeaudaocajbifqydiob4ibceqt", "unsupported DID method"),
            ("did:PERURI:aaaqeayeaudaocajbifqydiob4ibceqt", "unsupported DID method"),
            ("did:peruri:", "32 characters"),
            ("did:peruri:aaaqeayeaudaocajbifqydiob4ibceq", "32 characters"),
            ("did:peruri:aaaqeayeaudaocajbifqydiob4ibceqta", "32 characters"),
            ("did:peruri:AAAQEAYEAUDAOCAJBIFQYDIOB4IBCEQT", "lowercase base32"),
            ("did:peruri:aaaqeayeaudaocajbifqydiob4ibceq1", "lowercase base32"),
            ("did:peruri:aaaqeayeaudaocajbifqydiob4ibceqt#controller", "lowercase base32"),
            ("did:peruri:aaaqeayeaudaocajbifqydiob4ibceqt/x", "lowercase base32"),
            ("did:peruri:aaaqeayeaudaocajbifqydiob4ibceqt?q", "lowercase base32"),
            ("did:peruri:aaaqeayeaudaocajbifqydiob4ibce=", "lowercase base32"),
            ("did:peruri: aaqeayeaudaocajbifqydiob4ibceqt", "lowercase base32"),
            ("did:peruri:aaaqeayeaudaocajbifqydiob4ibceqé", "lowercase base32"),
        ];
        for (input, reason) in cases {
            match input.parse::<Did>() {
                Err(Error::MalformedDid(message)) => assert!(message.contains(reason), "{input:?}: {message}"),
                other => panic!("{input:?} gave {other:?}"),
            }
        }
        let err = "did:web:secret-user".parse::<Did>().unwrap_err().to_string();
        assert!(!err.contains("secret-user"), "the input is not repeated: {err}");
    }

    #[test]
    fn xml_datetime_vectors() {
        // Python: datetime.fromtimestamp(ms // 1000, timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
        let vectors = [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400_000, "2000-02-29T00:00:00Z"),
            (1_767_225_600_000, "2026-01-01T00:00:00Z"),
            (1_767_323_045_123, "2026-01-02T03:04:05Z"),
            (-1000, "1969-12-31T23:59:59Z"),
            (253_402_300_799_000, "9999-12-31T23:59:59Z"),
        ];
        for (millis, text) in vectors {
            assert_eq!(xml_datetime(millis), text, "{millis}");
        }
    }

    fn fixture() -> (Did, Address) {
        let did: Did = "did:peruri:aaaqeayeaudaocajbifqydiob4ibceqt".parse().unwrap();
        (did, address!("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"))
    }

    #[test]
    fn document_json() {
        let (did, account) = fixture();
        let json = serde_json::to_value(DidDocument::new(&did, 1337, account)).unwrap();
        assert_eq!(
            json,
            json!({
                "@context": [
                    "https://www.w3.org/ns/did/v1",
                    "https://w3id.org/security/suites/secp256k1recovery-2020/v2"
                ],
                "id": "did:peruri:aaaqeayeaudaocajbifqydiob4ibceqt",
                "verificationMethod": [{
                    "id": "did:peruri:aaaqeayeaudaocajbifqydiob4ibceqt#controller",
                    "type": "EcdsaSecp256k1RecoveryMethod2020",
                    "controller": "did:peruri:aaaqeayeaudaocajbifqydiob4ibceqt",
                    // EIP-55's own example address.
                    "blockchainAccountId": "eip155:1337:0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
                }],
                "authentication": ["did:peruri:aaaqeayeaudaocajbifqydiob4ibceqt#controller"],
                "assertionMethod": ["did:peruri:aaaqeayeaudaocajbifqydiob4ibceqt#controller"]
            })
        );
    }

    #[test]
    fn resolution_json() {
        let (did, account) = fixture();
        let document = DidDocument::new(&did, 1337, account);
        let json = serde_json::to_value(DidResolution::new(document.clone(), 1_767_323_045_123, false)).unwrap();
        assert_eq!(
            json,
            json!({
                "@context": "https://w3id.org/did-resolution/v1",
                "didDocument": serde_json::to_value(&document).unwrap(),
                "didResolutionMetadata": { "contentType": "application/did+ld+json" },
                "didDocumentMetadata": { "created": "2026-01-02T03:04:05Z", "deactivated": false }
            })
        );
        let deactivated = serde_json::to_value(DidResolution::new(document, 0, true)).unwrap();
        assert_eq!(
            deactivated["didDocumentMetadata"],
            json!({ "created": "1970-01-01T00:00:00Z", "deactivated": true })
        );
    }
}
