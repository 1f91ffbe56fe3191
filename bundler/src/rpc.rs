//! ERC-7769 JSON-RPC 2.0 (single and batch requests) as an axum router. Errors map here, once,
//! from [`ValidationError`] codes.

use std::sync::Arc;

use alloy::primitives::{Address, B256, U64, U256};
use alloy::rpc::types::state::StateOverride;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use custody_contracts::UserOperation;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::config::BundlingMode;
use crate::reputation::Reputation;
use crate::service::Bundler;
use crate::validation::{RpcErrorCode, ValidationError};

/// Most requests in one batch.
pub const MAX_BATCH: usize = 100;

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;

/// A JSON-RPC error object.
#[derive(Debug)]
struct RpcError {
    code: i64,
    message: String,
    data: Option<Value>,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: None }
    }

    fn params(message: impl Into<String>) -> Self {
        Self::new(RpcErrorCode::InvalidParams.code(), message)
    }

    fn to_json(&self) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(data) = &self.data {
            error["data"] = data.clone();
        }
        error
    }
}

impl From<ValidationError> for RpcError {
    fn from(e: ValidationError) -> Self {
        Self { code: e.code.code(), message: e.message, data: e.data }
    }
}

/// The router: `POST /rpc`.
pub fn router(bundler: Arc<Bundler>) -> Router {
    Router::new().route("/rpc", post(serve)).with_state(bundler)
}

async fn serve(State(bundler): State<Arc<Bundler>>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<Value>(&body) {
        Ok(request) => match handle(&bundler, request).await {
            Some(response) => Json(response).into_response(),
            None => axum::http::StatusCode::NO_CONTENT.into_response(),
        },
        Err(e) => {
            Json(reply(Value::Null, Err(RpcError::new(PARSE_ERROR, format!("parse error: {e}"))))).into_response()
        }
    }
}

/// Answers one JSON-RPC request or a batch; `None` when there is nothing to send back (only
/// notifications). The server can call this to share one endpoint with other JSON-RPC services.
pub async fn handle(bundler: &Bundler, request: Value) -> Option<Value> {
    match request {
        Value::Array(batch) if batch.is_empty() => {
            Some(reply(Value::Null, Err(RpcError::new(INVALID_REQUEST, "empty batch"))))
        }
        Value::Array(batch) if batch.len() > MAX_BATCH => Some(reply(
            Value::Null,
            Err(RpcError::new(INVALID_REQUEST, format!("batch of {} requests; at most {MAX_BATCH}", batch.len()))),
        )),
        Value::Array(batch) => {
            let mut out = Vec::with_capacity(batch.len());
            for request in batch {
                out.extend(handle_one(bundler, request).await);
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        request => handle_one(bundler, request).await,
    }
}

fn reply(id: Value, result: Result<Value, RpcError>) -> Value {
    match result {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err(error) => json!({ "jsonrpc": "2.0", "id": id, "error": error.to_json() }),
    }
}

async fn handle_one(bundler: &Bundler, request: Value) -> Option<Value> {
    let Value::Object(mut request) = request else {
        return Some(reply(Value::Null, Err(RpcError::new(INVALID_REQUEST, "a request must be an object"))));
    };
    let id = request.remove("id");
    let notification = id.is_none();
    let id = id.unwrap_or(Value::Null);
    if request.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Some(reply(id, Err(RpcError::new(INVALID_REQUEST, "jsonrpc must be \"2.0\""))));
    }
    let Some(Value::String(method)) = request.remove("method") else {
        return Some(reply(id, Err(RpcError::new(INVALID_REQUEST, "method must be a string"))));
    };
    let params = match request.remove("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(params)) => params,
        Some(_) => return Some(reply(id, Err(RpcError::params("params must be an array")))),
    };
    let result = dispatch(bundler, &method, Params(params)).await;
    (!notification).then(|| reply(id, result))
}

/// Positional parameters.
struct Params(Vec<Value>);

impl Params {
    fn get<T: DeserializeOwned>(&self, index: usize, name: &str) -> Result<T, RpcError> {
        let value = self.0.get(index).cloned().ok_or_else(|| RpcError::params(format!("missing parameter {name}")))?;
        serde_json::from_value(value).map_err(|e| RpcError::params(format!("invalid {name}: {e}")))
    }

    fn optional<T: DeserializeOwned>(&self, index: usize, name: &str) -> Result<Option<T>, RpcError> {
        match self.0.get(index) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.get(index, name).map(Some),
        }
    }
}

fn to_json(value: impl serde::Serialize) -> Result<Value, RpcError> {
    serde_json::to_value(value).map_err(|e| {
        tracing::error!(error = %e, "serializing an RPC result failed");
        RpcError::new(RpcErrorCode::Internal.code(), "internal error")
    })
}

/// A counter given as a JSON number or a hex quantity.
#[derive(Deserialize)]
#[serde(untagged)]
enum Count {
    Number(u64),
    Hex(U64),
}

impl From<Count> for u64 {
    fn from(c: Count) -> Self {
        match c {
            Count::Number(n) => n,
            Count::Hex(h) => h.to(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReputationEntry {
    address: Address,
    ops_seen: Count,
    ops_included: Count,
}

/// The UserOperation parameter. An EIP-7702 one (an `eip7702Auth` field, or viem's `0x7702` factory
/// flag) is refused with the reason instead of being read without its authorization.
/// With `estimating`, the fields ERC-7769 makes optional for `eth_estimateUserOperationGas` (gas
/// limits, fees, signature) default to zero and empty.
fn user_operation(bundler: &Bundler, params: &Params, estimating: bool) -> Result<UserOperation, RpcError> {
    parse_user_operation(bundler, params.get(0, "UserOperation")?, estimating)
}

/// `raw` as an operation: EIP-7702 ones refused with the reason; for an estimate, the fields it may
/// leave out filled.
fn parse_user_operation(bundler: &Bundler, mut raw: Value, estimating: bool) -> Result<UserOperation, RpcError> {
    if estimating {
        with_estimation_defaults(&mut raw);
    }
    let authorised = raw.get("eip7702Auth").is_some_and(|a| !a.is_null());
    let flagged = raw.get("factory").and_then(Value::as_str).is_some_and(is_eip7702_flag);
    if authorised || flagged {
        return Err(bundler.eip7702_refusal().into());
    }
    serde_json::from_value(raw).map_err(|e| RpcError::params(format!("invalid UserOperation: {e}")))
}

/// Fills the fields an operation to estimate may leave out.
fn with_estimation_defaults(op: &mut Value) {
    const OPTIONAL: [(&str, &str); 6] = [
        ("callGasLimit", "0x0"),
        ("verificationGasLimit", "0x0"),
        ("preVerificationGas", "0x0"),
        ("maxFeePerGas", "0x0"),
        ("maxPriorityFeePerGas", "0x0"),
        ("signature", "0x"),
    ];
    if let Value::Object(fields) = op {
        for (name, default) in OPTIONAL {
            if fields.get(name).is_none_or(Value::is_null) {
                fields.insert(name.to_owned(), Value::String(default.to_owned()));
            }
        }
    }
}

/// `0x7702`, alone or zero-padded to an address.
fn is_eip7702_flag(factory: &str) -> bool {
    let hex = factory.strip_prefix("0x").unwrap_or(factory);
    hex.len() <= 40
        && hex.get(..4).is_some_and(|head| head.eq_ignore_ascii_case("7702"))
        && hex.get(4..).is_some_and(|rest| rest.bytes().all(|b| b == b'0'))
}

async fn dispatch(bundler: &Bundler, method: &str, params: Params) -> Result<Value, RpcError> {
    if method.starts_with("debug_bundler_") && !bundler.config().debug_methods {
        return Err(RpcError::new(METHOD_NOT_FOUND, format!("{method} is disabled (bundler.debug_methods = false)")));
    }
    match method {
        "eth_chainId" => to_json(U64::from(bundler.chain_id())),
        "eth_supportedEntryPoints" => to_json(bundler.supported_entry_points()),
        "eth_sendUserOperation" => {
            let op = user_operation(bundler, &params, false)?;
            let entry_point: Address = params.get(1, "entryPoint")?;
            to_json(bundler.send_user_operation(op, entry_point).await?)
        }
        "eth_estimateUserOperationGas" => {
            let op = user_operation(bundler, &params, true)?;
            let entry_point: Address = params.get(1, "entryPoint")?;
            let overrides: Option<StateOverride> = params.optional(2, "stateOverride")?;
            match bundler.estimate_user_operation_gas(&op, entry_point, overrides.as_ref()).await? {
                Some(estimate) => to_json(estimate),
                None => Err(RpcError::new(
                    METHOD_NOT_FOUND,
                    "eth_estimateUserOperationGas is not available: no gas estimator is configured",
                )),
            }
        }
        "eth_getUserOperationByHash" => {
            let hash: B256 = params.get(0, "userOpHash")?;
            to_json(bundler.user_operation_by_hash(hash).await?)
        }
        "rundler_maxPriorityFeePerGas" => to_json(bundler.gas_prices().await?.slow.max_priority_fee_per_gas),
        "pimlico_getUserOperationGasPrice" => to_json(bundler.gas_prices().await?),
        "debug_bundler_getStakeStatus" => {
            let address: Address = params.get(0, "address")?;
            let entry_point: Address = params.get(1, "entryPoint")?;
            to_json(bundler.stake_status(address, entry_point).await?)
        }
        read if crate::node::READ_METHODS.contains(&read) => bundler
            .node_read(read, params.0)
            .await
            .map_err(|e| RpcError { code: e.code, message: e.message, data: e.data }),
        "rundler_getUserOperationStatus" => {
            let hash: B256 = params.get(0, "userOpHash")?;
            to_json(bundler.user_operation_status(hash).await?)
        }
        "eth_getUserOperationReceipt" => {
            let hash: B256 = params.get(0, "userOpHash")?;
            to_json(bundler.user_operation_receipt(hash).await?)
        }
        "debug_bundler_clearState" => {
            bundler.clear_state().await?;
            Ok(json!("ok"))
        }
        "debug_bundler_addUserOps" => {
            let raw: Vec<Value> = params.get(0, "userOps")?;
            let ops = raw.into_iter().map(|op| parse_user_operation(bundler, op, false)).collect::<Result<_, _>>()?;
            bundler.add_user_ops(ops, params.optional(1, "entryPoint")?).await?;
            Ok(json!("ok"))
        }
        "debug_bundler_dumpMempool" => {
            let entry_point: Address = params.get(0, "entryPoint")?;
            to_json(bundler.dump_mempool(entry_point).await?.into_iter().map(|v| v.op).collect::<Vec<_>>())
        }
        "debug_bundler_sendBundleNow" => to_json(bundler.send_bundle_now().await?),
        "debug_bundler_setBundlingMode" => {
            let mode: BundlingMode = params.get(0, "mode (\"auto\" or \"manual\")")?;
            bundler.set_bundling_mode(mode);
            Ok(json!("ok"))
        }
        "debug_bundler_setReputation" => {
            let entries: Vec<ReputationEntry> = params.get(0, "reputations")?;
            if let Some(entry_point) = params.optional::<Address>(1, "entryPoint")? {
                bundler.entry_point(entry_point)?;
            }
            for e in entries {
                let rep = Reputation { ops_seen: e.ops_seen.into(), ops_included: e.ops_included.into() };
                bundler.set_reputation(e.address, rep).await?;
            }
            Ok(json!("ok"))
        }
        "debug_bundler_dumpReputation" => {
            if let Some(entry_point) = params.optional::<Address>(0, "entryPoint")? {
                bundler.entry_point(entry_point)?;
            }
            let entries = bundler.dump_reputation().await?;
            to_json(
                entries
                    .into_iter()
                    .map(|(address, rep)| {
                        json!({
                            "address": address,
                            "opsSeen": U256::from(rep.ops_seen),
                            "opsIncluded": U256::from(rep.ops_included),
                            "status": rep.status(),
                        })
                    })
                    .collect::<Vec<_>>(),
            )
        }
        _ => Err(RpcError::new(METHOD_NOT_FOUND, format!("method {method} not found"))),
    }
}

#[cfg(test)]
mod tests {
    use custody_contracts::UserOperation;
    use serde_json::json;

    #[test]
    fn an_operation_to_estimate_may_leave_out_its_gas_fees_and_signature() {
        let minimal = json!({"sender": "0x1111111111111111111111111111111111111111", "nonce": "0x0", "callData": "0x"});
        assert!(serde_json::from_value::<UserOperation>(minimal.clone()).is_err(), "required when sending");
        let mut op = minimal;
        op["maxFeePerGas"] = json!("0x5");
        op["signature"] = serde_json::Value::Null;
        super::with_estimation_defaults(&mut op);
        let op: UserOperation = serde_json::from_value(op).expect("estimable");
        assert_eq!((op.max_fee_per_gas.to::<u64>(), op.call_gas_limit.to::<u64>()), (5, 0), "given fields are kept");
        assert!(op.signature.is_empty());
    }

    #[test]
    fn the_eip7702_flag_alone_or_padded() {
        for flag in ["0x7702", "0x7702000000000000000000000000000000000000", "7702"] {
            assert!(super::is_eip7702_flag(flag), "{flag}");
        }
        for other in ["0x77", "0x7703", "0x77020000000000000000000000000000000000001", "0x7702ab", "0xé702"] {
            assert!(!super::is_eip7702_flag(other), "{other}");
        }
    }
}
