//! Operations of custodial wallets over HTTP: prepare (the signable payload, nothing signed), submit
//! (signed by the owner key in the HSM, carried by the bundler), and status. Role `app` names the user
//! in the path; role `user` acts on its own wallet under `/wallet/operations`.

use std::sync::Arc;

use alloy::primitives::{Address, B256, Bytes, U256};
use axum::{
    Json,
    extract::{Path, State, rejection::JsonRejection},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use custody_accounts::UserId;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    AppState, audit_with,
    auth::{Caller, Role},
    doc::{ErrorBody, IdempotencyKey, Reads, Writes},
    error::ApiError,
    idempotency,
    wallets::custodial,
};
use crate::operations::{self, Call, MAX_CALLS, Prepared};

/// One call of the account.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CallRequest {
    /// The contract or address called.
    #[schema(pattern = "^0x[0-9a-fA-F]{40}$")]
    to: String,
    /// Wei sent with the call: a decimal or 0x string (default 0).
    #[serde(default)]
    #[schema(pattern = "^(0x[0-9a-fA-F]{1,64}|[0-9]{1,77})$")]
    value: Option<String>,
    /// Call data, 0x-hex (default empty).
    #[serde(default)]
    #[schema(pattern = "^0x([0-9a-fA-F]{2})*$")]
    data: Option<String>,
}

/// `{"calls": [...], "policy"?}`: what the account should do.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PrepareRequest {
    /// 1 to 16 calls, made in order (one `execute`, or `executeBatch`).
    #[schema(min_items = 1, max_items = 16)]
    calls: Vec<CallRequest>,
    /// The paymaster policy to sponsor under (the default policy otherwise).
    #[serde(default)]
    #[schema(max_length = 128)]
    policy: Option<String>,
}

/// `{"prepared": id}` (a prepared operation, as shown), or calls to prepare and send at once.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(super) enum SubmitRequest {
    Prepared(PreparedRef),
    Calls(PrepareRequest),
}

/// A prepared operation by id.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PreparedRef {
    /// The `id` of `…/operations/prepare`'s answer.
    #[schema(max_length = 64)]
    prepared: String,
}

/// A submitted operation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Submitted {
    #[schema(value_type = String)]
    user_op_hash: B256,
    /// `pending` (in the bundler's mempool).
    status: &'static str,
}

/// Where an operation is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct OperationStatus {
    #[schema(value_type = String)]
    user_op_hash: B256,
    /// `prepared`, `expired` (prepared, never submitted), `pending`, `submitted` (in a bundle transaction),
    /// `included` or `failed`.
    status: &'static str,
    /// The bundle transaction, once there is one.
    #[schema(value_type = Option<String>)]
    tx_hash: Option<B256>,
    /// Whether the calls succeeded (once included).
    success: Option<bool>,
    /// The calls' revert data, when included but reverted.
    #[schema(value_type = Option<String>)]
    revert_reason: Option<Bytes>,
    /// Why it failed (dropped, replaced or refused at bundle time).
    reason: Option<String>,
}

/// `POST /v1/wallets/{user_id}/operations/prepare` (app).
#[utoipa::path(
    post, path = "/v1/wallets/{user_id}/operations/prepare", tag = "wallets", security(("bearer" = [])),
    description = "Role app. Builds the UserOperation of the user's account that makes the calls: nonce, initCode while \
        counterfactual, gas from the bundler's estimate, sponsorship from the paymaster. Nothing is signed; the answer \
        says what it does (summary) and until when it may be submitted. 403 when the paymaster policy refuses, 422 \
        when it would not execute, 409 for a wallet not in custody.",
    params(("user_id" = UserId, Path)), request_body = PrepareRequest,
    responses((status = 200, description = "Prepared.", body = Prepared), Writes),
)]
pub(super) async fn prepare(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    Path(user_id): Path<String>,
    body: Result<Json<PrepareRequest>, JsonRejection>,
) -> Result<Json<Prepared>, ApiError> {
    caller.require(Role::App)?;
    enabled(&state)?;
    let Json(req) = body?;
    prepare_for(&state, &caller, &headers, &user_id, &req).await.map(Json)
}

/// `POST /wallet/operations/prepare` (user): the caller's own wallet.
#[utoipa::path(
    post, path = "/wallet/operations/prepare", tag = "user", security(("bearer" = [])),
    description = "Role user: prepare an operation of the calling user's own wallet (see the app route).",
    request_body = PrepareRequest,
    responses((status = 200, description = "Prepared.", body = Prepared), Writes),
)]
pub(super) async fn prepare_own(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<PrepareRequest>, JsonRejection>,
) -> Result<Json<Prepared>, ApiError> {
    caller.require(Role::User)?;
    enabled(&state)?;
    let Json(req) = body?;
    prepare_for(&state, &caller, &headers, &caller.sub.clone(), &req).await.map(Json)
}

/// `POST /v1/wallets/{user_id}/operations` (app).
#[utoipa::path(
    post, path = "/v1/wallets/{user_id}/operations", tag = "wallets", security(("bearer" = [])),
    description = "Role app. Signs a prepared operation ({\"prepared\": id}) with the user's owner key in the HSM, or \
        prepares and signs calls at once ({\"calls\": […]}), and hands it to the bundler. 410 once the prepared \
        operation expired, 422 when the bundler refuses it, 409 for a wallet not in custody.",
    params(("user_id" = UserId, Path), IdempotencyKey), request_body = SubmitRequest,
    responses(
        (status = 202, description = "In the bundler's mempool.", body = Submitted),
        (status = 410, description = "The prepared operation expired; prepare it again.", body = ErrorBody),
        Writes,
    ),
)]
pub(super) async fn submit(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    Path(user_id): Path<String>,
    body: Result<Json<SubmitRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::App)?;
    submit_for(&state, &caller, &headers, &user_id, body).await
}

/// `POST /wallet/operations` (user): the caller's own wallet.
#[utoipa::path(
    post, path = "/wallet/operations", tag = "user", security(("bearer" = [])),
    description = "Role user: submit an operation of the calling user's own wallet (see the app route).",
    params(IdempotencyKey), request_body = SubmitRequest,
    responses(
        (status = 202, description = "In the bundler's mempool.", body = Submitted),
        (status = 410, description = "The prepared operation expired; prepare it again.", body = ErrorBody),
        Writes,
    ),
)]
pub(super) async fn submit_own(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<SubmitRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::User)?;
    submit_for(&state, &caller, &headers, &caller.sub.clone(), body).await
}

/// `GET /v1/wallets/{user_id}/operations/{user_op_hash}` (app).
#[utoipa::path(
    get, path = "/v1/wallets/{user_id}/operations/{user_op_hash}", tag = "wallets", security(("bearer" = [])),
    description = "Role app. Where an operation of the user's account is: prepared, pending, included (with its \
        transaction, success and revert reason) or failed (with the reason).",
    params(("user_id" = UserId, Path), ("user_op_hash" = String, Path, pattern = "^0x[0-9a-fA-F]{64}$")),
    responses((status = 200, description = "Its status.", body = OperationStatus), Reads),
)]
pub(super) async fn status(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((user_id, hash)): Path<(String, String)>,
) -> Result<Json<OperationStatus>, ApiError> {
    caller.require(Role::App)?;
    enabled(&state)?;
    status_for(&state, &user_id, &hash).await.map(Json)
}

/// `GET /wallet/operations/{user_op_hash}` (user): the caller's own wallet.
#[utoipa::path(
    get, path = "/wallet/operations/{user_op_hash}", tag = "user", security(("bearer" = [])),
    description = "Role user: the status of an operation of the calling user's own wallet (see the app route).",
    params(("user_op_hash" = String, Path, pattern = "^0x[0-9a-fA-F]{64}$")),
    responses((status = 200, description = "Its status.", body = OperationStatus), Reads),
)]
pub(super) async fn status_own(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(hash): Path<String>,
) -> Result<Json<OperationStatus>, ApiError> {
    caller.require(Role::User)?;
    enabled(&state)?;
    status_for(&state, &caller.sub, &hash).await.map(Json)
}

/// Operations need the bundler (and the chain): without them these routes answer 404, as if absent.
fn enabled(state: &AppState) -> Result<(), ApiError> {
    if state.bundler.is_some() && state.chain.is_some() {
        return Ok(());
    }
    Err(ApiError::not_found("operations_unconfigured", "wallet operations need [bundler] and [chain] rpc_url here"))
}

/// `{"to_user_id", "amount"}` (another user's wallet) or `{"to", "amount"}` (an address); `amount` in
/// whole PTKN, a decimal string or an integer.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(super) enum TransferRequest {
    ToUser(TransferToUser),
    ToAddress(TransferToAddress),
}

/// A transfer to another user's wallet.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TransferToUser {
    #[schema(value_type = UserId)]
    to_user_id: String,
    #[schema(value_type = super::amount::Amount)]
    amount: serde_json::Value,
}

/// A transfer to an address.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TransferToAddress {
    #[schema(pattern = "^0x[0-9a-fA-F]{40}$")]
    to: String,
    #[schema(value_type = super::amount::Amount)]
    amount: serde_json::Value,
}

/// `POST /v1/wallets/{user_id}/tokens/transfer` (app): a PTKN transfer from the user's account.
#[utoipa::path(
    post, path = "/v1/wallets/{user_id}/tokens/transfer", tag = "wallets", security(("bearer" = [])),
    description = "Role app. Transfers PTKN from the user's account to another user's wallet or an address: an \
        operation of the account (prepared, signed by the owner key, sponsored) like POST …/operations with the \
        PTKN transfer call. 404 for an unknown recipient.",
    params(("user_id" = UserId, Path), IdempotencyKey), request_body = TransferRequest,
    responses((status = 202, description = "In the bundler's mempool.", body = Submitted), Writes),
)]
pub(super) async fn transfer(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    Path(user_id): Path<String>,
    body: Result<Json<TransferRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::App)?;
    transfer_for(&state, &caller, &headers, &user_id, body).await
}

/// `POST /wallet/tokens/transfer` (user): a PTKN transfer from the caller's own account.
#[utoipa::path(
    post, path = "/wallet/tokens/transfer", tag = "user", security(("bearer" = [])),
    description = "Role user: transfer PTKN from the calling user's own wallet (see the app route).",
    params(IdempotencyKey), request_body = TransferRequest,
    responses((status = 202, description = "In the bundler's mempool.", body = Submitted), Writes),
)]
pub(super) async fn transfer_own(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<TransferRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::User)?;
    transfer_for(&state, &caller, &headers, &caller.sub.clone(), body).await
}

async fn transfer_for(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    user_id: &str,
    body: Result<Json<TransferRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let key = idempotency::key(headers)?;
    enabled(state)?;
    let Json(req) = match body {
        Ok(json) => json,
        Err(JsonRejection::JsonDataError(_)) => {
            let why = "give {\"to_user_id\", \"amount\"} or {\"to\": \"0x…\", \"amount\"}";
            return Err(ApiError::bad_request("invalid_body", why));
        }
        Err(other) => return Err(other.into()),
    };
    let (amount, recipient, named) = match &req {
        TransferRequest::ToUser(r) => {
            let wallet = state.wallets()?.get(&r.to_user_id).await.map_err(super::wallets::accounts_error)?;
            let wallet =
                wallet.ok_or_else(|| ApiError::not_found("recipient_not_found", "no wallet for to_user_id"))?;
            (&r.amount, wallet.address, json!({"to_user_id": r.to_user_id}))
        }
        TransferRequest::ToAddress(r) => {
            let to: Address =
                r.to.parse()
                    .map_err(|_| ApiError::bad_request("invalid_to", "to must be a 0x address of 40 hex digits"))?;
            (&r.amount, to, json!({"to": to}))
        }
    };
    let amount = super::amount::whole("amount", amount, state.max_amount)?;
    let calls = ptkn_call(state, operations::ptkn_transfer(recipient, ptkn_units(amount)))?;
    let fp = idempotency::fingerprint(
        "POST /v1/wallets/{user_id}/tokens/transfer",
        &json!({"user_id": user_id, "recipient": named, "amount": amount}),
    );
    send(state, caller, headers, (user_id, &key, &fp), &calls).await
}

/// `POST /v1/tokens/burn` (app): spending, as an operation of the user's own account.
#[utoipa::path(
    post, path = "/v1/tokens/burn", tag = "activity", security(("bearer" = [])),
    description = "Role app. Spending: the user's own account burns `amount` PTKN (`PTKN.burn`) in an operation \
        signed by the user's owner key in the HSM and carried by the bundler, as `…/operations` does; no other key \
        can burn a user's tokens. Follow it at GET /v1/wallets/{user_id}/operations/{userOpHash}. 422 when the \
        balance is short, 409 for a wallet not in custody.",
    params(IdempotencyKey), request_body = super::activity::Amount,
    responses((status = 202, description = "In the bundler's mempool.", body = Submitted), Writes),
)]
pub(super) async fn burn(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<super::activity::Amount>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::App)?;
    let key = idempotency::key(&headers)?;
    enabled(&state)?;
    let Json(req) = body?;
    let amount = super::amount::whole("amount", &req.amount, state.max_amount)?;
    let calls = ptkn_call(&state, operations::ptkn_burn(ptkn_units(amount)))?;
    let wallet = custodial(&state, &req.user_id).await?;
    let requested = json!({"amount": amount.to_string(), "reason": req.reason});
    audit_with(&state, &caller, ("token.burn", &wallet.did.to_string(), "requested"), &headers, Some(&requested))
        .await?;
    let fp = idempotency::fingerprint(
        "POST /v1/tokens/burn",
        &json!({"user_id": req.user_id, "amount": amount, "reason": req.reason}),
    );
    send(&state, &caller, &headers, (&req.user_id, &key, &fp), &calls).await
}

/// `whole` PTKN in base units (18 decimals).
fn ptkn_units(whole: u64) -> U256 {
    U256::from(whole) * U256::from(10u64).pow(U256::from(18))
}

/// One call of PTKN with `data`, to prepare and send.
fn ptkn_call(state: &AppState, data: Bytes) -> Result<SubmitRequest, ApiError> {
    let ptkn = state.deployment.as_ref().map(|d| d.contracts.peruri_token);
    let ptkn = ptkn.ok_or_else(|| ApiError::unavailable(&"no deployment: PTKN unknown"))?;
    let call = CallRequest { to: ptkn.to_string(), value: None, data: Some(data.to_string()) };
    Ok(SubmitRequest::Calls(PrepareRequest { calls: vec![call], policy: None }))
}

async fn prepare_for(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    user_id: &str,
    req: &PrepareRequest,
) -> Result<Prepared, ApiError> {
    let calls = parse_calls(&req.calls)?;
    let wallet = custodial(state, user_id).await?;
    let target = wallet.did.to_string();
    audit_with(state, caller, ("operation.prepare", &target, "requested"), headers, None).await?;
    let prepared =
        operations::prepare(state, (user_id, wallet.address, wallet.owner), &calls, req.policy.as_deref()).await?;
    let details = json!({"userOpHash": prepared.user_op_hash, "summary": prepared.summary});
    audit_with(state, caller, ("operation.prepare", &target, "prepared"), headers, Some(&details)).await?;
    Ok(prepared)
}

async fn submit_for(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    user_id: &str,
    body: Result<Json<SubmitRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let key = idempotency::key(headers)?;
    enabled(state)?;
    let Json(req) = match body {
        Ok(json) => json,
        Err(JsonRejection::JsonDataError(_)) => {
            let why = "give {\"prepared\": \"<id>\"} or {\"calls\": [{\"to\", \"value\"?, \"data\"?}], \"policy\"?}";
            return Err(ApiError::bad_request("invalid_body", why));
        }
        Err(other) => return Err(other.into()),
    };
    let fp = idempotency::fingerprint(
        "POST /v1/wallets/{user_id}/operations",
        &json!({"user_id": user_id, "request": serde_json::to_value(&req).unwrap_or_default()}),
    );
    send(state, caller, headers, (user_id, &key, &fp), &req).await
}

/// Prepares (for calls) and submits `req` of `user_id`'s wallet once per Idempotency-Key `key` and
/// fingerprint `fp`.
async fn send(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    (user_id, key, fp): (&str, &str, &str),
    req: &SubmitRequest,
) -> Result<Response, ApiError> {
    idempotency::once(&state.pool, &caller.sub, key, fp, || async {
        let wallet = custodial(state, user_id).await?;
        let id = match req {
            SubmitRequest::Prepared(r) => r.prepared.clone(),
            SubmitRequest::Calls(calls) => prepare_for(state, caller, headers, user_id, calls).await?.id,
        };
        let not_found = || ApiError::not_found("operation_not_found", "no such prepared operation for this wallet");
        let stored = operations::stored(state, user_id, operations::Find::Id(&id)).await?.ok_or_else(not_found)?;
        let now = crate::audit::now_millis().unsigned_abs() / 1000;
        if stored.expires_at.is_some_and(|last| now > last) {
            return Err(ApiError::new(
                StatusCode::GONE,
                "operation_expired",
                "the prepared operation expired (its sponsorship ends); prepare it again",
            ));
        }
        let target = wallet.did.to_string();
        let details = json!({"userOpHash": stored.hash});
        audit_with(state, caller, ("operation.submit", &target, "requested"), headers, Some(&details)).await?;
        // Sent before (under another key): the bundler has it; signing again would change nothing.
        let hash = match stored.expires_at {
            None => stored.hash,
            Some(_) => operations::submit(state, user_id, &stored).await?,
        };
        audit_with(state, caller, ("operation.submit", &target, "submitted"), headers, Some(&details)).await?;
        let body = Submitted { user_op_hash: hash, status: "pending" };
        Ok((StatusCode::ACCEPTED, serde_json::to_value(body).map_err(|e| ApiError::internal(&e))?))
    })
    .await
}

async fn status_for(state: &AppState, user_id: &str, hash: &str) -> Result<OperationStatus, ApiError> {
    let hash: B256 = custody_db::is_hex32(hash)
        .then(|| hash.parse().ok())
        .flatten()
        .ok_or_else(|| ApiError::bad_request("invalid_hash", "user_op_hash must be 0x and 64 hex digits"))?;
    let wallet = state.wallets()?.get(user_id).await.map_err(super::wallets::accounts_error)?;
    let not_found = || ApiError::not_found("operation_not_found", "no such operation for this wallet");
    let wallet = wallet.ok_or_else(not_found)?;
    let bundler = state.bundler.as_ref().ok_or_else(|| ApiError::unavailable(&"no [bundler] configured"))?;
    let found = bundler.user_operation_status(hash).await.map_err(|e| ApiError::unavailable(&e))?;
    let mut answer = OperationStatus {
        user_op_hash: hash,
        status: "",
        tx_hash: None,
        success: None,
        revert_reason: None,
        reason: None,
    };
    if found.user_operation.as_ref().is_some_and(|op| op.sender == wallet.address) {
        answer.status = match found.status {
            "mined" => "included",
            "pendingBundle" => "submitted",
            "pending" => "pending",
            _ => "failed",
        };
        answer.tx_hash = found.pending_bundle.map(|b| b.tx_hash);
        if let Some(receipt) = found.receipt {
            answer.tx_hash = Some(receipt.receipt.transaction_hash);
            answer.success = Some(receipt.success);
            answer.revert_reason = receipt.reason;
        }
        answer.reason = found.removed.and_then(|r| r.reason);
        return Ok(answer);
    }
    // Not in the bundler: prepared here and not (yet) submitted?
    let stored = operations::stored(state, user_id, operations::Find::Hash(hash)).await?.ok_or_else(not_found)?;
    let now = crate::audit::now_millis().unsigned_abs() / 1000;
    answer.status = if stored.expires_at.is_some_and(|last| now > last) { "expired" } else { "prepared" };
    Ok(answer)
}

/// The calls, checked: 1 to 16, each with an address, a decimal or 0x value and 0x-hex data.
fn parse_calls(calls: &[CallRequest]) -> Result<Vec<Call>, ApiError> {
    if calls.is_empty() || calls.len() > MAX_CALLS {
        return Err(ApiError::bad_request("invalid_calls", format!("give 1 to {MAX_CALLS} calls")));
    }
    calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let bad = |what: &str| ApiError::bad_request("invalid_calls", format!("calls[{i}].{what}"));
            let to: Address = c.to.parse().map_err(|_| bad("to must be a 0x address of 40 hex digits"))?;
            let value = match &c.value {
                None => U256::ZERO,
                Some(v) => v.parse().map_err(|_| bad("value must be a decimal or 0x string of wei"))?,
            };
            let data = match &c.data {
                None => Bytes::new(),
                Some(d) if d.starts_with("0x") => d.parse().map_err(|_| bad("data must be 0x-hex"))?,
                Some(_) => return Err(bad("data must be 0x-hex")),
            };
            Ok(Call { to, value, data })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(to: &str, value: Option<&str>, data: Option<&str>) -> CallRequest {
        CallRequest { to: to.to_owned(), value: value.map(str::to_owned), data: data.map(str::to_owned) }
    }

    #[test]
    fn calls_are_checked_field_by_field() {
        let to = "0x1111111111111111111111111111111111111111";
        let ok = parse_calls(&[call(to, Some("10"), Some("0x12")), call(to, Some("0x10"), None)]).expect("valid");
        assert_eq!((ok[0].value, ok[1].value, ok[0].data.len()), (U256::from(10), U256::from(16), 1));
        let refused = |calls: &[CallRequest]| parse_calls(calls).expect_err("refused").code();
        assert_eq!(refused(&[]), "invalid_calls");
        assert_eq!(refused(&[call("0x12", None, None)]), "invalid_calls");
        assert_eq!(refused(&[call(to, Some("-1"), None)]), "invalid_calls");
        assert_eq!(refused(&[call(to, Some("1.5"), None)]), "invalid_calls");
        assert_eq!(refused(&[call(to, None, Some("zz"))]), "invalid_calls");
        assert_eq!(refused(&[call(to, None, Some("0x1"))]), "invalid_calls");
        let many: Vec<_> = (0..=MAX_CALLS).map(|_| call(to, None, None)).collect();
        assert_eq!(refused(&many), "invalid_calls");
    }
}
