//! Bearer JWT authentication and roles.
//!
//! Each configured key has an algorithm allow-list; a token is accepted only if
//! its header's `alg` is on the list of the key that verifies it (so `none`, or
//! HS256 "signed" with a public key, never passes), and `iss`, `aud`, `exp` and
//! `nbf` check out.

use std::{
    fmt,
    num::NonZeroUsize,
    sync::{Arc, Mutex},
};

use axum::{extract::FromRequestParts, http::request::Parts};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use lru::LruCache;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{AppState, error::ApiError};

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    /// The app backend.
    App,
    /// A security officer.
    Officer,
    /// Reads the audit trail.
    Auditor,
    /// A user, about themself (`sub` = user id).
    User,
}

/// One verification key.
pub(crate) struct VerifierKey {
    pub(crate) kid: Option<String>,
    pub(crate) key: DecodingKey,
    pub(crate) algorithms: Vec<Algorithm>,
}

/// Verified tokens remembered (by SHA-256), so a client reusing its token pays one signature check.
const VERIFIED_CACHE: usize = 10_000;

/// Seconds of clock skew allowed on `exp` and `nbf`.
const LEEWAY: i64 = 30;

/// The token verifier.
pub(crate) struct Auth {
    keys: Vec<VerifierKey>,
    issuer: String,
    audience: String,
    /// The longest lifetime (`exp` minus `iat`, or minus now without `iat`) a token may have, in seconds.
    max_lifetime: i64,
    /// SHA-256 of a token that verified → its caller and validity window.
    verified: Mutex<LruCache<[u8; 32], Verified>>,
}

#[derive(Clone)]
struct Verified {
    caller: Caller,
    nbf: i64,
    exp: i64,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("keys", &self.keys.len())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    roles: Vec<Role>,
    /// Required (the validation refuses a token without it); optional here so that
    /// its absence is reported as a missing claim.
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) sub: String,
    pub(crate) roles: Vec<Role>,
}

impl Caller {
    /// `Ok` if the caller holds `role`.
    pub(crate) fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.roles.contains(&role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("this call needs the {role:?} role").to_lowercase()))
        }
    }

    /// A label for the audit trail: the role(s) and subject.
    pub(crate) fn actor(&self) -> String {
        let roles: Vec<_> = self.roles.iter().map(|r| format!("{r:?}").to_lowercase()).collect();
        format!("{}:{}", roles.join("+"), self.sub)
    }
}

impl Auth {
    /// A verifier of tokens from `issuer` for `audience`, signed by one of `keys`, living at most
    /// `max_lifetime_secs`.
    pub(crate) fn new(keys: Vec<VerifierKey>, issuer: String, audience: String, max_lifetime_secs: u64) -> Self {
        let capacity = NonZeroUsize::new(VERIFIED_CACHE).unwrap_or(NonZeroUsize::MIN);
        let max_lifetime = i64::try_from(max_lifetime_secs).unwrap_or(i64::MAX);
        Self { keys, issuer, audience, max_lifetime, verified: Mutex::new(LruCache::new(capacity)) }
    }

    /// Verifies a compact JWS and returns its caller. A token seen before is
    /// answered from the cache while the clock is inside its `nbf`..`exp` window.
    pub(crate) fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        self.verify_at(token, unix_now())
    }

    fn verify_at(&self, token: &str, now: i64) -> Result<Caller, ApiError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = self.cache().get(&digest).cloned();
        if let Some(v) = cached {
            if now > v.exp.saturating_add(LEEWAY) {
                self.cache().pop(&digest);
                return Err(ApiError::unauthorized("token expired"));
            }
            if now.saturating_add(LEEWAY) >= v.nbf {
                return Ok(v.caller);
            }
        }
        let (caller, claims) = self.verify_signature(token)?;
        let exp = claims.exp.unwrap_or(i64::MIN);
        let issued = claims.iat.map_or(now, |iat| iat.min(now));
        if exp.saturating_sub(issued) > self.max_lifetime {
            return Err(ApiError::unauthorized(format!(
                "token lifetime exceeds the maximum of {} s this service accepts",
                self.max_lifetime
            )));
        }
        let entry = Verified { caller: caller.clone(), nbf: claims.nbf.unwrap_or(i64::MIN), exp };
        self.cache().put(digest, entry);
        Ok(caller)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, LruCache<[u8; 32], Verified>> {
        self.verified.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The full check: key and algorithm allow-list, signature, `iss`, `aud`, `exp`, `nbf`.
    fn verify_signature(&self, token: &str) -> Result<(Caller, Claims), ApiError> {
        let header = decode_header(token).map_err(|_| ApiError::unauthorized("malformed bearer token"))?;
        let candidates = self.keys.iter().filter(|k| {
            k.algorithms.contains(&header.alg) && (header.kid.is_none() || k.kid.is_none() || header.kid == k.kid)
        });
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY.unsigned_abs();
        let mut last = ApiError::unauthorized("token algorithm or key not accepted");
        for key in candidates {
            match decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => {
                    let caller = Caller { sub: data.claims.sub.clone(), roles: data.claims.roles.clone() };
                    return Ok((caller, data.claims));
                }
                Err(e) => last = ApiError::unauthorized(describe(&e)),
            }
        }
        Err(last)
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn describe(e: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "token expired",
        K::ImmatureSignature => "token not yet valid",
        K::InvalidIssuer => "token issuer not accepted",
        K::InvalidAudience => "token audience not accepted",
        K::InvalidSignature => "token signature invalid",
        K::MissingRequiredClaim(_) => "token lacks a required claim",
        _ => "token invalid",
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer token"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))?;
        state.auth.verify(token.trim())
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode};

    use super::*;

    const PRIVATE: &str = include_str!("../../tests/keys/es256-private.pem");
    const PUBLIC: &str = include_str!("../../tests/keys/es256-public.pem");

    fn auth() -> Auth {
        auth_with_lifetime(3600)
    }

    fn auth_with_lifetime(max_lifetime_secs: u64) -> Auth {
        let key = VerifierKey {
            kid: None,
            key: DecodingKey::from_ec_pem(PUBLIC.as_bytes()).expect("key"),
            algorithms: vec![Algorithm::ES256],
        };
        Auth::new(vec![key], "iss".into(), "aud".into(), max_lifetime_secs)
    }

    fn token(exp: i64) -> String {
        let claims = serde_json::json!({"sub": "s", "roles": ["app"], "iss": "iss", "aud": "aud", "exp": exp});
        let key = EncodingKey::from_ec_pem(PRIVATE.as_bytes()).expect("key");
        encode(&Header::new(Algorithm::ES256), &claims, &key).expect("token")
    }

    #[test]
    fn a_cached_token_still_expires() {
        let auth = auth();
        let now = unix_now();
        let token = token(now + 60);
        assert_eq!(auth.verify_at(&token, now).expect("valid").roles, vec![Role::App]);
        assert!(auth.verify_at(&token, now + 60).is_ok(), "answered from the cache inside the window");
        let err = auth.verify_at(&token, now + 60 + LEEWAY + 1).expect_err("expired");
        assert!(format!("{err:?}").contains("token expired"), "{err:?}");
        let tampered = format!("{}x", &token[..token.len() - 1]);
        assert!(auth.verify_at(&tampered, now).is_err(), "another string is verified afresh");
    }

    #[test]
    fn a_token_living_longer_than_the_maximum_is_refused() {
        let now = unix_now();
        for exp in [now + 3601, i64::MAX] {
            let err = auth().verify_at(&token(exp), now).expect_err("too long");
            assert!(format!("{err:?}").contains("lifetime exceeds the maximum of 3600 s"), "{err:?}");
        }
        assert!(auth().verify_at(&token(now + 3500), now).is_ok());
    }

    #[test]
    fn a_huge_exp_saturates_instead_of_overflowing() {
        let auth = auth_with_lifetime(u64::MAX);
        let token = token(i64::MAX);
        let now = unix_now();
        assert!(auth.verify_at(&token, now).is_ok());
        assert!(auth.verify_at(&token, i64::MAX - 1).is_ok(), "the cached window check saturates");
    }
}
