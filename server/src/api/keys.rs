//! `GET /v1/admin/keys` (officer): every key, a page at a time, as `custody keys list` shows them.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Query, State, rejection::QueryRejection},
};
use custody_accounts::AddressText;
use custody_signer::{KeyClass, KeyRecord};
use serde::{Deserialize, Serialize};

use super::{
    AppState,
    auth::{Caller, Role},
    doc::Reads,
    error::ApiError,
};

/// A page query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct KeysQuery {
    /// Only this class.
    #[param(inline)]
    class: Option<ClassFilter>,
    /// Keys with ids after this one (the previous page's `nextAfter`).
    #[param(max_length = 128)]
    after: Option<String>,
    /// Keys per page (1 to 1000; 100 by default).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// Key classes.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum ClassFilter {
    Kek,
    Pseudonym,
    Infra,
    User,
}

/// One key version, without its material.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct KeyView {
    id: String,
    /// `kek`, `pseudonym`, `infra` or `user`.
    class: String,
    /// The infrastructure name, or the user id of a user's owner key.
    name: String,
    version: i64,
    /// `pkcs11` or `kms`.
    backend: String,
    #[schema(value_type = Option<AddressText>)]
    address: Option<String>,
    /// The KEK version a wrapped key is under.
    kek_version: Option<i64>,
    /// `active`, `retired` or `destroyed`.
    state: String,
    /// Unix milliseconds.
    created_at: i64,
    /// Last change (rotation, retirement, re-wrap), Unix milliseconds.
    updated_at: i64,
}

impl From<&KeyRecord> for KeyView {
    fn from(key: &KeyRecord) -> Self {
        Self {
            id: key.id.clone(),
            class: key.class.as_str().to_owned(),
            name: key.name.clone(),
            version: key.version,
            backend: key.backend.as_str().to_owned(),
            address: key.address().map(|a| a.to_checksum(None)),
            kek_version: key.kek_version,
            state: key.state.as_str().to_owned(),
            created_at: key.created_at,
            updated_at: key.updated_at,
        }
    }
}

/// A page of keys.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct KeysPage {
    keys: Vec<KeyView>,
    /// Pass as `after` for the next page; null on the last.
    next_after: Option<String>,
}

/// `GET /v1/admin/keys`.
#[utoipa::path(
    get, path = "/v1/admin/keys", tag = "officers", security(("bearer" = [])),
    description = "Role officer. Every key version with class, name or user, version, address, state, created and \
        last changed times, in id order, a page at a time. No key material.",
    params(KeysQuery),
    responses((status = 200, description = "A page.", body = KeysPage), Reads),
)]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<KeysQuery>, QueryRejection>,
) -> Result<Json<KeysPage>, ApiError> {
    caller.require(Role::Officer)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) || q.after.as_ref().is_some_and(|a| a.chars().count() > 128) {
        return Err(ApiError::bad_request("invalid_query", "limit must be 1 to 1000 and after at most 128 characters"));
    }
    let class = q.class.map(|c| match c {
        ClassFilter::Kek => KeyClass::Kek,
        ClassFilter::Pseudonym => KeyClass::Pseudonym,
        ClassFilter::Infra => KeyClass::Infra,
        ClassFilter::User => KeyClass::User,
    });
    let after = q.after.unwrap_or_default();
    let keys = state.keyring.store().page(class, &after, i64::from(limit)).await.map_err(|e| ApiError::internal(&e))?;
    let full = keys.len() == limit as usize;
    let next_after = keys.last().filter(|_| full).map(|k| k.id.clone());
    Ok(Json(KeysPage { keys: keys.iter().map(KeyView::from).collect(), next_after }))
}
