//! Wallets and DID resolution.
//!
//! `POST /v1/wallets` (app, Idempotency-Key) · `GET /v1/wallets/{user_id}` (app) ·
//! `POST /v1/wallets/{user_id}/deactivate` (officer, Idempotency-Key) ·
//! `GET /wallet/status` (user, about `sub`) · `GET /1.0/identifiers/{did}` (public, a
//! Universal Resolver driver).

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, State, rejection::JsonRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use custody_accounts::{AddressText, Did, DidDocument, DidResolution, Error as AccountsError, UserId, Wallet};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    AppState, audit,
    auth::{Caller, Role},
    doc::{IdempotencyKey, Reads, Writes},
    error::ApiError,
    idempotency,
};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateWallet {
    #[schema(value_type = UserId)]
    user_id: String,
}

/// `GET /wallet/status`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct WalletStatus {
    /// The smart account, once the wallet exists.
    #[schema(value_type = Option<AddressText>)]
    wallet_address: Option<String>,
    /// Always `erc4337`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// Whether the wallet exists.
    ready: bool,
}

/// `POST /v1/wallets/{user_id}/deactivate`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Deactivated {
    did: Did,
    #[schema(value_type = AddressText)]
    address: String,
    deactivated: bool,
}

/// The API answer to an accounts error: 400 for bad input, else a 500.
pub(super) fn accounts_error(e: AccountsError) -> ApiError {
    match e {
        AccountsError::InvalidUserId(_) => ApiError::bad_request("invalid_user_id", e.to_string()),
        AccountsError::MalformedDid(_) => ApiError::bad_request("malformed_did", e.to_string()),
        other => ApiError::internal(&other),
    }
}

/// The wallet of `user_id` whose key the service holds: 404 without a wallet, 409 when it is not custodial
/// or its owner key is being rotated.
pub(super) async fn custodial(state: &AppState, user_id: &str) -> Result<Wallet, ApiError> {
    let wallet = state.wallets()?.get(user_id).await.map_err(accounts_error)?;
    let wallet = wallet.ok_or_else(|| ApiError::not_found("wallet_not_found", "no wallet for this user"))?;
    if wallet.custody != custody_accounts::Custody::Custodial {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_custodial",
            "this wallet's key is not held by the service",
        ));
    }
    if crate::owner_rotation::pending(&state.pool, user_id).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "owner_rotation_pending",
            "the wallet's owner key is being rotated; retry once the rotation is confirmed",
        ));
    }
    Ok(wallet)
}

/// `POST /v1/wallets`: 201 with the new wallet, 200 with the existing one.
#[utoipa::path(
    post, path = "/v1/wallets", tag = "wallets", security(("bearer" = [])),
    description = "Role app. The user's owner key (wrapped in the HSM), DID and counterfactual smart account.",
    params(IdempotencyKey), request_body = CreateWallet,
    responses(
        (status = 201, description = "Created.", body = Wallet),
        (status = 200, description = "The user already had it.", body = Wallet),
        Writes,
    ),
)]
pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<CreateWallet>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::App)?;
    let key = idempotency::key(&headers)?;
    let Json(req) = body?;
    let wallets = state.wallets()?;
    let fp = idempotency::fingerprint("POST /v1/wallets", &json!({"user_id": req.user_id}));
    idempotency::once(&state.pool, &caller.sub, &key, &fp, || async {
        // Refuse before any effect if the audit trail cannot be written.
        let did = wallets.did_of(&req.user_id).await.map_err(accounts_error)?;
        audit(&state, &caller, "wallet.create", &did.to_string(), &headers, "requested").await?;
        let (wallet, created) = wallets.create(&req.user_id).await.map_err(accounts_error)?;
        let outcome = if created { "created" } else { "existing" };
        audit(&state, &caller, "wallet.create", &wallet.did.to_string(), &headers, outcome).await?;
        let status = if created { StatusCode::CREATED } else { StatusCode::OK };
        Ok((status, serde_json::to_value(&wallet).map_err(|e| ApiError::internal(&e))?))
    })
    .await
}

/// `GET /v1/wallets/{user_id}`.
#[utoipa::path(
    get, path = "/v1/wallets/{user_id}", tag = "wallets", security(("bearer" = [])), description = "Role app.",
    params(("user_id" = UserId, Path)),
    responses((status = 200, description = "The wallet.", body = Wallet), Reads),
)]
pub(super) async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Role::App)?;
    let wallet = state.wallets()?.get(&user_id).await.map_err(accounts_error)?;
    let wallet = wallet.ok_or_else(|| ApiError::not_found("wallet_not_found", "no wallet for this user"))?;
    Ok(Json(serde_json::to_value(&wallet).map_err(|e| ApiError::internal(&e))?))
}

/// `POST /v1/wallets/{user_id}/deactivate` (officer, Idempotency-Key): the user's DID resolves as
/// deactivated (410) from now on. Audited; deactivating twice is harmless.
#[utoipa::path(
    post, path = "/v1/wallets/{user_id}/deactivate", tag = "wallets", security(("bearer" = [])),
    description = "Role officer. The DID resolves as deactivated (410) from then on; deactivating twice is harmless.",
    params(("user_id" = UserId, Path), IdempotencyKey),
    responses((status = 200, description = "Deactivated.", body = Deactivated), Writes),
)]
pub(super) async fn deactivate(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    Path(user_id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Role::Officer)?;
    let key = idempotency::key(&headers)?;
    let wallets = state.wallets()?;
    let fp = idempotency::fingerprint("POST /v1/wallets/{user_id}/deactivate", &json!({"user_id": user_id}));
    idempotency::once(&state.pool, &caller.sub, &key, &fp, || async {
        let did = wallets.did_of(&user_id).await.map_err(accounts_error)?;
        audit(&state, &caller, "did.deactivate", &did.to_string(), &headers, "requested").await?;
        let Some(wallet) = wallets.deactivate(&user_id).await.map_err(accounts_error)? else {
            audit(&state, &caller, "did.deactivate", &did.to_string(), &headers, "not_found").await?;
            return Err(ApiError::not_found("wallet_not_found", "no wallet for this user"));
        };
        audit(&state, &caller, "did.deactivate", &did.to_string(), &headers, "deactivated").await?;
        let body =
            Deactivated { did: wallet.did, address: wallet.address.to_checksum(None), deactivated: wallet.deactivated };
        Ok((StatusCode::OK, serde_json::to_value(body).map_err(|e| ApiError::internal(&e))?))
    })
    .await
}

/// `GET /wallet/status`: the caller's own wallet (`sub` is the user id).
#[utoipa::path(
    get, path = "/wallet/status", tag = "user", security(("bearer" = [])),
    description = "Role user: the calling user's own wallet (the token's sub is the user id).",
    responses((status = 200, description = "Status.", body = WalletStatus), Reads),
)]
pub(super) async fn status(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Json<WalletStatus>, ApiError> {
    caller.require(Role::User)?;
    let wallet = state.wallets()?.get(&caller.sub).await.map_err(accounts_error)?;
    let wallet_address = wallet.as_ref().map(|w| w.address.to_checksum(None));
    Ok(Json(WalletStatus { ready: wallet_address.is_some(), wallet_address, kind: "erc4337" }))
}

/// `GET /1.0/identifiers/{did}`: the DID document (`application/did+json` or
/// `application/did+ld+json`) or the resolution result, by Accept header.
#[utoipa::path(
    get, path = "/1.0/identifiers/{did}", tag = "did",
    description = "Public: a Universal Resolver driver. The document by Accept header, else the resolution result.",
    params(("did" = Did, Path)),
    responses(
        (status = 200, description = "Resolved.", content(
            (DidResolution = "application/ld+json;profile=\"https://w3id.org/did-resolution\""),
            (DidDocument = "application/did+json"),
            (DidDocument = "application/did+ld+json"),
        )),
        (status = 410, description = "Deactivated (the resolution result says so).", content(
            (DidResolution = "application/ld+json;profile=\"https://w3id.org/did-resolution\""),
            (DidDocument = "application/did+json"),
            (DidDocument = "application/did+ld+json"),
        )),
        Reads,
    ),
)]
pub(super) async fn resolve(
    State(state): State<Arc<AppState>>,
    Path(did): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let did: Did = did.parse().map_err(accounts_error)?;
    let resolution = state.wallets()?.resolve(&did).await.map_err(accounts_error)?;
    let resolution = resolution.ok_or_else(|| ApiError::not_found("not_found", "DID not found"))?;
    let deactivated = resolution.did_document_metadata.deactivated;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let status = if deactivated { StatusCode::GONE } else { StatusCode::OK };
    let (content_type, body) = if accept.contains("application/did+json") {
        ("application/did+json", serde_json::to_value(&resolution.did_document))
    } else if accept.contains(DidResolution::DOCUMENT_MEDIA_TYPE) {
        (DidResolution::DOCUMENT_MEDIA_TYPE, serde_json::to_value(&resolution.did_document))
    } else {
        (DidResolution::MEDIA_TYPE, serde_json::to_value(&resolution))
    };
    let body = body.map_err(|e| ApiError::internal(&e))?;
    Ok((status, [(header::CONTENT_TYPE, content_type)], Json(body)).into_response())
}
