//! Bearer JWT authentication and roles.
//!
//! Each configured key has an algorithm allow-list; a token is accepted only if
//! its header's `alg` is on the list of the key that verifies it (so `none`, or
//! HS256 "signed" with a public key, never passes), and `iss`, `aud`, `exp` and
//! `nbf` check out.

use std::{fmt, sync::Arc};

use axum::{extract::FromRequestParts, http::request::Parts};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;

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

/// The token verifier.
pub(crate) struct Auth {
    pub(crate) keys: Vec<VerifierKey>,
    pub(crate) issuer: String,
    pub(crate) audience: String,
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
    /// Verifies a compact JWS and returns its caller.
    pub(crate) fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let header = decode_header(token).map_err(|_| ApiError::unauthorized("malformed bearer token"))?;
        let candidates = self.keys.iter().filter(|k| {
            k.algorithms.contains(&header.alg) && (header.kid.is_none() || k.kid.is_none() || header.kid == k.kid)
        });
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        let mut last = ApiError::unauthorized("token algorithm or key not accepted");
        for key in candidates {
            match decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => return Ok(Caller { sub: data.claims.sub, roles: data.claims.roles }),
                Err(e) => last = ApiError::unauthorized(describe(&e)),
            }
        }
        Err(last)
    }
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
