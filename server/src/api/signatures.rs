//! Signatures of a custodial wallet: `POST /v1/wallets/{user_id}/signatures` (app) and
//! `POST /wallet/signatures` (user, about `sub`).
//!
//! ```text
//! {"message"}   ─► EIP-191 hash ┐
//! {"typedData"} ─► EIP-712 hash ┤
//! {"hash"}      ───────────────►├─► replaySafeHash(account, chain, hash) ─► owner key in the HSM ─► 65 bytes
//!                                  deployed account: the signature (ERC-1271 isValidSignature accepts it)
//!                                  counterfactual:   ERC-6492 (factory, createAccount(owner, 0), signature)
//! ```

use std::sync::Arc;

use alloy::primitives::{B256, Bytes, eip191_hash_message};
use axum::{
    Json,
    extract::{Path, State, rejection::JsonRejection},
    http::HeaderMap,
};
use custody_accounts::{AddressText, UserId};
use custody_contracts::account;
use custody_signer::KeyClass;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    AppState, audit_with,
    auth::{Caller, Role},
    doc::Writes,
    error::ApiError,
    wallets::custodial,
};

/// What to sign: a message (EIP-191, as `personal_sign`) or a 32-byte hash.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(super) enum SignRequest {
    Message(MessageToSign),
    TypedData(TypedDataToSign),
    Hash(HashToSign),
}

/// EIP-712 typed data (`domain`, `types`, `primaryType`, `message`), as viem `signTypedData` and
/// `eth_signTypedData_v4` take it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct TypedDataToSign {
    #[schema(value_type = TypedDataShape)]
    typed_data: serde_json::Value,
}

/// The shape of EIP-712 typed data (for the document; typed data that is well-formed but does not hash,
/// e.g. a `primaryType` missing from `types`, is a 422).
#[derive(utoipa::ToSchema)]
#[schema(as = TypedData)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "the schema of typedData")]
struct TypedDataShape {
    #[schema(value_type = Object)]
    domain: serde_json::Value,
    types: std::collections::BTreeMap<String, Vec<TypedField>>,
    primary_type: String,
    #[schema(value_type = Object)]
    message: serde_json::Value,
}

/// One field of an EIP-712 struct type.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "the schema of typedData")]
struct TypedField {
    name: String,
    #[serde(rename = "type")]
    kind: String,
}

/// A UTF-8 message, signed as `"\x19Ethereum Signed Message:\n" ‖ len ‖ message` (viem `signMessage`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct MessageToSign {
    #[schema(max_length = 4096)]
    message: String,
}

/// A 32-byte hash the app computed (e.g. an EIP-712 digest).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct HashToSign {
    #[schema(pattern = "^0x[0-9a-fA-F]{64}$")]
    hash: String,
}

/// A signature of the user's smart account.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct SignatureAnswer {
    /// What the account's `isValidSignature(hash, signature)` is asked about.
    hash: String,
    /// `0x`-hex: 65 bytes for a deployed account, ERC-6492-wrapped while it is counterfactual.
    signature: String,
    /// The smart account that signs.
    #[schema(value_type = AddressText)]
    address: String,
    /// Whether the signature is ERC-6492-wrapped (the account is not deployed yet).
    erc6492: bool,
}

/// `POST /v1/wallets/{user_id}/signatures` (app, on behalf of the user).
#[utoipa::path(
    post, path = "/v1/wallets/{user_id}/signatures", tag = "wallets", security(("bearer" = [])),
    description = "Role app. A signature of the user's smart account over a message (EIP-191) or a hash, which \
        the account accepts through ERC-1271 once deployed and through ERC-6492 while counterfactual. 409 for a \
        wallet not in custody.",
    params(("user_id" = UserId, Path)), request_body = SignRequest,
    responses((status = 200, description = "Signed.", body = SignatureAnswer), Writes),
)]
pub(super) async fn sign(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    Path(user_id): Path<String>,
    body: Result<Json<SignRequest>, JsonRejection>,
) -> Result<Json<SignatureAnswer>, ApiError> {
    caller.require(Role::App)?;
    sign_for(&state, &caller, &headers, &user_id, body).await
}

/// `POST /wallet/signatures` (user): the caller's own wallet signs.
#[utoipa::path(
    post, path = "/wallet/signatures", tag = "user", security(("bearer" = [])),
    description = "Role user: a signature of the calling user's own smart account (see the app route).",
    request_body = SignRequest,
    responses((status = 200, description = "Signed.", body = SignatureAnswer), Writes),
)]
pub(super) async fn sign_own(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<SignRequest>, JsonRejection>,
) -> Result<Json<SignatureAnswer>, ApiError> {
    caller.require(Role::User)?;
    let user_id = caller.sub.clone();
    sign_for(&state, &caller, &headers, &user_id, body).await
}

async fn sign_for(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    user_id: &str,
    body: Result<Json<SignRequest>, JsonRejection>,
) -> Result<Json<SignatureAnswer>, ApiError> {
    let Json(req) = match body {
        Ok(json) => json,
        Err(JsonRejection::JsonDataError(_)) => {
            let why = "give exactly one of {\"message\": \"…\"}, {\"typedData\": {…}} and {\"hash\": \"0x…\"}";
            return Err(ApiError::bad_request("invalid_body", why));
        }
        Err(other) => return Err(other.into()),
    };
    let (kind, hash) = match &req {
        SignRequest::Message(m) if m.message.chars().count() <= 4096 => {
            ("message", eip191_hash_message(m.message.as_bytes()))
        }
        SignRequest::Message(_) => {
            return Err(ApiError::bad_request("invalid_body", "message is at most 4096 characters"));
        }
        SignRequest::TypedData(t) => ("typedData", typed_data_hash(&t.typed_data)?),
        SignRequest::Hash(h) => ("hash", parse_hash(&h.hash)?),
    };
    let wallet = custodial(state, user_id).await?;
    let chain = state.wallets()?.chain();
    let target = wallet.did.to_string();
    let details = json!({"kind": kind, "hash": hash});
    audit_with(state, caller, ("wallet.sign", &target, "requested"), headers, Some(&details)).await?;
    let digest = account::replay_safe_hash(wallet.address, chain.chain_id, hash);
    let signer = state.keyring.signer(KeyClass::User, user_id).await.map_err(|e| ApiError::unavailable(&e))?;
    let signature = signer.sign_digest(&digest).await.map_err(|e| ApiError::unavailable(&e))?;
    let raw = Bytes::from(signature.as_bytes().to_vec());
    let deployed = deployed(state, wallet.address).await.unwrap_or(wallet.deployed);
    let signature = if deployed {
        raw
    } else {
        account::erc6492_wrap(chain.factory, account::factory_data(wallet.owner, alloy::primitives::U256::ZERO), raw)
    };
    let outcome = json!({"kind": kind, "hash": hash, "erc6492": !deployed});
    audit_with(state, caller, ("wallet.sign", &target, "signed"), headers, Some(&outcome)).await?;
    Ok(Json(SignatureAnswer {
        hash: hash.to_string(),
        signature: signature.to_string(),
        address: wallet.address.to_checksum(None),
        erc6492: !deployed,
    }))
}

/// The EIP-712 signing hash of `typed` (422 when it does not hash).
fn typed_data_hash(typed: &serde_json::Value) -> Result<B256, ApiError> {
    let invalid = |why: String| {
        ApiError::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, "invalid_typed_data", format!("typedData: {why}"))
    };
    let data: alloy_dyn_abi::TypedData = serde_json::from_value(typed.clone()).map_err(|e| invalid(e.to_string()))?;
    data.eip712_signing_hash().map_err(|e| invalid(e.to_string()))
}

fn parse_hash(text: &str) -> Result<B256, ApiError> {
    custody_db::is_hex32(text)
        .then(|| text.parse().ok())
        .flatten()
        .ok_or_else(|| ApiError::bad_request("invalid_hash", "hash must be 0x and 64 hex digits"))
}

/// Whether `address` has code on the configured chain (`None` without a chain or when it does not answer).
async fn deployed(state: &AppState, address: alloy::primitives::Address) -> Option<bool> {
    use alloy::providers::Provider;
    let chain = state.chain.as_ref()?;
    let code = tokio::time::timeout(std::time::Duration::from_secs(2), chain.get_code_at(address)).await;
    code.ok()?.ok().map(|code| !code.is_empty())
}
