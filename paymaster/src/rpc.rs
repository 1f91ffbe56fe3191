//! ERC-7677 JSON-RPC 2.0 (single and batch requests): `pm_getPaymasterStubData` and
//! `pm_getPaymasterData`, params `[userOp, entryPoint, chainId, context]`; and
//! `pm_sponsorUserOperation`, params `[userOp, entryPoint, context]`, which answers the operation's gas
//! and paymaster fields in one call. The server authenticates the
//! caller (the `app` role) before a request reaches [`handle`].

use alloy::primitives::{Address, Bytes, U64, U256};
use custody_contracts::{EntryPointVersion, UserOperation};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Denial, Paymaster, Sponsored, Step};

/// Most requests in one batch.
pub const MAX_BATCH: usize = 100;

/// The JSON-RPC error code of a refused sponsorship; `data` holds `policyId` and `rule`.
pub const SPONSORSHIP_DENIED: i64 = -32001;
const INVALID_PARAMS: i64 = -32602;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INTERNAL: i64 = -32603;

/// A UserOperation as ERC-7677 clients send it: only `sender`, `nonce` and `callData` are required
/// (a stub request comes before gas is estimated); what is missing counts as zero.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RequestOp {
    sender: Option<Address>,
    nonce: Option<U256>,
    factory: Option<Address>,
    factory_data: Option<Bytes>,
    call_data: Option<Bytes>,
    call_gas_limit: Option<U256>,
    verification_gas_limit: Option<U256>,
    pre_verification_gas: Option<U256>,
    max_fee_per_gas: Option<U256>,
    max_priority_fee_per_gas: Option<U256>,
    paymaster_verification_gas_limit: Option<U256>,
    paymaster_post_op_gas_limit: Option<U256>,
    signature: Option<Bytes>,
}

impl RequestOp {
    fn into_op(self) -> Result<UserOperation, String> {
        let (Some(sender), Some(nonce), Some(call_data)) = (self.sender, self.nonce, self.call_data) else {
            return Err("userOp needs sender, nonce and callData".to_owned());
        };
        Ok(UserOperation {
            sender,
            nonce,
            factory: self.factory.filter(|f| !f.is_zero()),
            factory_data: self.factory_data,
            call_data,
            call_gas_limit: self.call_gas_limit.unwrap_or_default(),
            verification_gas_limit: self.verification_gas_limit.unwrap_or_default(),
            pre_verification_gas: self.pre_verification_gas.unwrap_or_default(),
            max_fee_per_gas: self.max_fee_per_gas.unwrap_or_default(),
            max_priority_fee_per_gas: self.max_priority_fee_per_gas.unwrap_or_default(),
            paymaster_verification_gas_limit: self.paymaster_verification_gas_limit,
            paymaster_post_op_gas_limit: self.paymaster_post_op_gas_limit,
            signature: self.signature.unwrap_or_default(),
            ..Default::default()
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Context {
    policy_id: Option<String>,
}

struct RpcError {
    code: i64,
    message: String,
    data: Option<Value>,
}

impl RpcError {
    fn params(message: impl Into<String>) -> Self {
        Self { code: INVALID_PARAMS, message: message.into(), data: None }
    }
}

impl From<Denial> for RpcError {
    fn from(d: Denial) -> Self {
        let message = format!("not sponsored by policy {}: {} ({})", d.policy, d.message, d.rule);
        Self { code: SPONSORSHIP_DENIED, message, data: Some(json!({ "policyId": d.policy, "rule": d.rule })) }
    }
}

/// Answers one JSON-RPC request or a batch; `None` when only notifications came.
pub async fn handle(paymaster: &Paymaster, request: Value) -> Option<Value> {
    match request {
        Value::Array(batch) if batch.is_empty() || batch.len() > MAX_BATCH => Some(reply(
            Value::Null,
            Err(RpcError {
                code: INVALID_REQUEST,
                message: format!("a batch holds 1 to {MAX_BATCH} requests"),
                data: None,
            }),
        )),
        Value::Array(batch) => {
            let mut out = Vec::with_capacity(batch.len());
            for request in batch {
                out.extend(one(paymaster, request).await);
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        request => one(paymaster, request).await,
    }
}

async fn one(paymaster: &Paymaster, request: Value) -> Option<Value> {
    let id = request.get("id").cloned();
    let method = request.get("method").and_then(Value::as_str).map(str::to_owned);
    let (Some(method), Some("2.0")) = (method, request.get("jsonrpc").and_then(Value::as_str)) else {
        let error = RpcError { code: INVALID_REQUEST, message: "not a JSON-RPC 2.0 request".to_owned(), data: None };
        return Some(reply(id.unwrap_or(Value::Null), Err(error)));
    };
    let params = request.get("params").cloned().unwrap_or(Value::Array(Vec::new()));
    let result = call(paymaster, &method, params).await;
    id.map(|id| reply(id, result))
}

fn reply(id: Value, result: Result<Value, RpcError>) -> Value {
    match result {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err(e) => {
            let mut error = json!({ "code": e.code, "message": e.message });
            if let Some(data) = e.data {
                error["data"] = data;
            }
            json!({ "jsonrpc": "2.0", "id": id, "error": error })
        }
    }
}

fn internal(e: &crate::Error) -> RpcError {
    tracing::error!(error = %e, "sponsorship failed");
    RpcError { code: INTERNAL, message: "internal error".to_owned(), data: None }
}

fn version_of(entry_point: Address) -> Result<EntryPointVersion, RpcError> {
    EntryPointVersion::from_address(entry_point)
        .ok_or_else(|| RpcError::params(format!("entry point {entry_point} is not served (v0.7 and v0.8 are)")))
}

fn unix_now() -> u64 {
    u64::try_from(custody_db::now_millis() / 1000).unwrap_or(0)
}

/// `pm_sponsorUserOperation`: the operation's gas and paymaster fields.
async fn sponsor(paymaster: &Paymaster, params: Value) -> Result<Value, RpcError> {
    let (op, entry_point, context): (RequestOp, Address, Option<Context>) = serde_json::from_value(params)
        .map_err(|e| RpcError::params(format!("params must be [userOp, entryPoint, context]: {e}")))?;
    let op = op.into_op().map_err(RpcError::params)?;
    let version = version_of(entry_point)?;
    let policy = context.and_then(|c| c.policy_id);
    let op = paymaster
        .sponsor(&op, version, policy.as_deref(), unix_now())
        .await
        .map_err(|e| internal(&e))?
        .map_err(RpcError::from)?
        .map_err(|reason| RpcError::params(format!("gas estimation: {reason}")))?;
    Ok(json!({
        "callGasLimit": op.call_gas_limit,
        "verificationGasLimit": op.verification_gas_limit,
        "preVerificationGas": op.pre_verification_gas,
        "paymaster": op.paymaster,
        "paymasterVerificationGasLimit": op.paymaster_verification_gas_limit,
        "paymasterPostOpGasLimit": op.paymaster_post_op_gas_limit,
        "paymasterData": op.paymaster_data,
    }))
}

async fn call(paymaster: &Paymaster, method: &str, params: Value) -> Result<Value, RpcError> {
    let stub = match method {
        "pm_sponsorUserOperation" => return sponsor(paymaster, params).await,
        "pm_getPaymasterStubData" => true,
        "pm_getPaymasterData" => false,
        _ => {
            let message = format!("method {method} not found");
            return Err(RpcError { code: METHOD_NOT_FOUND, message, data: None });
        }
    };
    let (op, entry_point, chain_id, context): (RequestOp, Address, U64, Option<Context>) =
        serde_json::from_value(params)
            .map_err(|e| RpcError::params(format!("params must be [userOp, entryPoint, chainId, context]: {e}")))?;
    let op = op.into_op().map_err(RpcError::params)?;
    let version = version_of(entry_point)?;
    if chain_id.to::<u64>() != paymaster.chain_id() {
        return Err(RpcError::params(format!("chainId {chain_id} is not this paymaster's ({})", paymaster.chain_id())));
    }
    let policy = context.and_then(|c| c.policy_id);
    let now = unix_now();
    let step = if stub { Step::Stub } else { Step::Final };
    let answer = paymaster.fields(step, &op, version, policy.as_deref(), now).await;
    let sponsored = answer.map_err(|e| internal(&e))?.map_err(RpcError::from)?;
    Ok(result(paymaster, &sponsored, stub))
}

/// The answer's fields: both methods give `paymaster` and `paymasterData`; the stub adds the gas
/// limits and `isFinal` (false: the final signature covers the gas values estimated with the stub).
fn result(paymaster: &Paymaster, s: &Sponsored, stub: bool) -> Value {
    let mut out = json!({
        "sponsor": { "name": paymaster.config().sponsor_name },
        "paymaster": s.paymaster,
        "paymasterData": s.paymaster_data,
    });
    if stub {
        out["paymasterVerificationGasLimit"] = json!(U64::from(s.verification_gas_limit));
        out["paymasterPostOpGasLimit"] = json!(U64::from(s.post_op_gas_limit));
        out["isFinal"] = json!(false);
    }
    out
}
