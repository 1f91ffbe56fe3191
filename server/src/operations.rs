//! Operations of custodial wallets: calls built into a sponsored UserOperation of the user's account,
//! shown to the app before anything is signed, then signed by the HSM owner key and handed to the
//! in-process bundler.
//!
//! ```text
//! prepare: calls ─► callData (execute | executeBatch) ─► nonce (a fresh nonce key) ─► initCode if counterfactual
//!          ─► paymaster (stub, the bundler's estimate, HSM-signed sponsorship) or the bundler's estimate alone
//!          ─► userOpHash, summary ─► operations_prepared (unsigned)
//! submit:  the prepared row (this user's, unexpired) ─► owner key signs the hash ─► bundler ─► sent_at
//! ```
//!
//! Each operation takes a nonce key of its own (seq 0), so operations prepared together never replace
//! each other in the mempool; the price is a fresh nonce slot (about 20,000 gas) per operation. An
//! operation of a counterfactual account prepared while the account's deploying operation is with the
//! bundler waits (up to [`DEPLOY_WAIT`]) for the deployment instead of carrying initCode again, which
//! would fail at bundle time (AA10); past the wait it is refused (409 `deployment_pending`).

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::Provider;
use custody_contracts::{EntryPointVersion, UserOperation, account, userop};
use serde::Serialize;
use sqlx::Row;

use crate::api::AppState;
use crate::api::error::ApiError;

/// How long a prepared operation may be submitted (or less, when its sponsorship ends sooner).
const PREPARED_FOR_SECS: u64 = 300;

/// How long a prepare waits for the account's deploying operation to land: three 2-second blocks, well
/// inside the default 10-second request timeout.
pub(crate) const DEPLOY_WAIT: std::time::Duration = std::time::Duration::from_secs(6);

/// Most calls in one operation.
pub(crate) const MAX_CALLS: usize = 16;

/// A real 65-byte signature (key 1 over the zero hash): it recovers, to an address that is not the
/// owner, so the account's validation runs its whole path and returns SIG_VALIDATION_FAILED during
/// estimation instead of reverting.
const STUB_SIGNATURE: [u8; 65] = alloy::primitives::hex!(
    "a0b37f8fba683cc68f6574cd43b39f0343a50008bf6ccea9d13231d9e7e2e1e411edc8d307254296264aebfc3dc76cd8b668373a072fd64665b50000e9fcce521c"
);

/// One call of the account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Call {
    pub(crate) to: Address,
    pub(crate) value: U256,
    pub(crate) data: Bytes,
}

/// A prepared, unsigned operation.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Prepared {
    /// What `POST …/operations` takes as `prepared`.
    pub(crate) id: String,
    /// The operation (ERC-7769 JSON, without its signature).
    #[schema(value_type = Object)]
    pub(crate) user_op: serde_json::Value,
    /// The hash the owner key signs, and the bundler's id for it.
    #[schema(value_type = String)]
    pub(crate) user_op_hash: B256,
    /// The EntryPoint it is for.
    #[schema(value_type = String)]
    pub(crate) entry_point: Address,
    /// What it does, for the app to show.
    pub(crate) summary: String,
    /// Last second (Unix) it may be submitted.
    pub(crate) expires_at: u64,
}

/// A prepared operation as stored.
pub(crate) struct Stored {
    pub(crate) version: EntryPointVersion,
    pub(crate) op: UserOperation,
    pub(crate) hash: B256,
    /// Last second (Unix) it may be submitted; `None` once it was.
    pub(crate) expires_at: Option<u64>,
}

/// Builds, sponsors and stores the operation of `user_id`'s account (`sender`, owned by `owner`) that
/// makes `calls`.
pub(crate) async fn prepare(
    state: &AppState,
    (user_id, sender, owner): (&str, Address, Address),
    calls: &[Call],
    policy: Option<&str>,
) -> Result<Prepared, ApiError> {
    let wallets = state.wallets()?;
    let chain = wallets.chain();
    let version = chain.entry_point;
    let node = state.chain.as_ref().ok_or_else(|| unconfigured("operations need [chain] rpc_url"))?;
    let bundler = state.bundler.as_ref().ok_or_else(|| unconfigured("operations need [bundler]"))?;
    let has_code = || async {
        Ok::<_, ApiError>(!node.get_code_at(sender).await.map_err(|e| ApiError::unavailable(&e))?.is_empty())
    };
    let mut deployed = has_code().await?;
    if !deployed && deploying(state, bundler, user_id).await? {
        let deadline = tokio::time::Instant::now() + DEPLOY_WAIT;
        while !deployed && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            deployed = has_code().await?;
        }
        if !deployed {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "deployment_pending",
                "the account's deploying operation is still pending; send this one once it is included",
            ));
        }
    }
    let mut op = UserOperation {
        sender,
        nonce: U256::from_be_slice(&rand::random::<[u8; 24]>()) << 64,
        factory: (!deployed).then_some(chain.factory),
        factory_data: (!deployed).then(|| account::factory_data(owner, U256::ZERO)),
        call_data: call_data(calls),
        signature: STUB_SIGNATURE.into(),
        ..Default::default()
    };
    let now = crate::audit::now_millis().unsigned_abs() / 1000;
    let mut completed = complete(state, bundler, op.clone(), version, policy, now).await;
    // The account's deploying operation was included between the code check and the simulation.
    if !deployed && matches!(&completed, Err(e) if e.code == "operation_not_executable" && e.message.contains("AA10")) {
        (op.factory, op.factory_data) = (None, None);
        completed = complete(state, bundler, op, version, policy, now).await;
    }
    let (mut op, expires_at) = completed?;
    op.signature = Bytes::new();
    let hash = op.hash(version, version.address(), chain.chain_id).map_err(|e| ApiError::internal(&e))?;
    let summary = summary(calls, state.deployment.as_ref().map(|d| d.contracts.peruri_token));
    let id = hex::encode(rand::random::<[u8; 16]>());
    let op_json = serde_json::to_value(&op).map_err(|e| ApiError::internal(&e))?;
    sqlx::query(
        "INSERT INTO operations_prepared (id, user_id, entry_point, user_op, user_op_hash, summary, expires_at, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(user_id)
    .bind(version.as_str())
    .bind(op_json.to_string())
    .bind(hash.to_string())
    .bind(&summary)
    .bind(i64::try_from(expires_at).unwrap_or(i64::MAX))
    .bind(crate::audit::now_millis())
    .execute(&state.pool)
    .await
    .map_err(|e| ApiError::internal(&e))?;
    Ok(Prepared { id, user_op: op_json, user_op_hash: hash, entry_point: version.address(), summary, expires_at })
}

/// Whether an operation of `user_id`'s that deploys the account (it carries initCode) is with the
/// bundler, not yet included.
async fn deploying(state: &AppState, bundler: &custody_bundler::Bundler, user_id: &str) -> Result<bool, ApiError> {
    let since = crate::audit::now_millis() - i64::try_from(PREPARED_FOR_SECS * 2000).unwrap_or(i64::MAX);
    let rows = sqlx::query(
        "SELECT user_op, user_op_hash FROM operations_prepared WHERE user_id = $1 AND sent_at IS NOT NULL \
         AND created_at > $2",
    )
    .bind(user_id)
    .bind(since)
    .fetch_all(&state.pool)
    .await
    .map_err(|e| ApiError::unavailable(&e))?;
    for row in rows {
        let op: Option<UserOperation> =
            row.try_get::<String, _>("user_op").ok().and_then(|t| serde_json::from_str(&t).ok());
        let hash: Option<B256> = row.try_get::<String, _>("user_op_hash").ok().and_then(|h| h.parse().ok());
        let (Some(op), Some(hash)) = (op, hash) else { continue };
        if op.factory.is_none() {
            continue;
        }
        let found = bundler.user_operation(hash).await.map_err(|e| ApiError::unavailable(&e.message))?;
        if found.is_some_and(|v| {
            matches!(v.status, custody_bundler::OpStatus::Pending | custody_bundler::OpStatus::Submitted)
        }) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Which prepared operation to read.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Find<'a> {
    /// By the `id` prepare answered.
    Id(&'a str),
    /// By its userOpHash.
    Hash(B256),
}

/// The prepared operation `find` names, if it is `user_id`'s.
pub(crate) async fn stored(state: &AppState, user_id: &str, find: Find<'_>) -> Result<Option<Stored>, ApiError> {
    let (column, value) = match find {
        Find::Id(id) => ("id", id.to_owned()),
        Find::Hash(hash) => ("user_op_hash", hash.to_string()),
    };
    let sql = format!(
        "SELECT entry_point, user_op, user_op_hash, expires_at, sent_at FROM operations_prepared \
         WHERE {column} = $1 AND user_id = $2"
    );
    let row = sqlx::query(&sql)
        .bind(value)
        .bind(user_id)
        .fetch_optional(&state.pool)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    row.map(|row| from_row(&row)).transpose()
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<Stored, ApiError> {
    let text = |col: &str| row.try_get::<String, _>(col).map_err(|e| ApiError::internal(&e));
    let corrupt = |what: &str| ApiError::internal(&format!("operations_prepared: unreadable {what}"));
    let entry_point = text("entry_point")?;
    let version = EntryPointVersion::ALL.into_iter().find(|v| v.as_str() == entry_point);
    let expires_at: i64 = row.try_get("expires_at").map_err(|e| ApiError::internal(&e))?;
    let sent_at: Option<i64> = row.try_get("sent_at").map_err(|e| ApiError::internal(&e))?;
    Ok(Stored {
        version: version.ok_or_else(|| corrupt("entry point"))?,
        op: serde_json::from_str(&text("user_op")?).map_err(|_| corrupt("operation"))?,
        hash: text("user_op_hash")?.parse().map_err(|_| corrupt("hash"))?,
        expires_at: sent_at.is_none().then_some(expires_at.unsigned_abs()),
    })
}

/// Signs `stored` with the owner key of `user_id` and hands it to the bundler; marks it sent.
pub(crate) async fn submit(state: &AppState, user_id: &str, stored: &Stored) -> Result<B256, ApiError> {
    let bundler = state.bundler.as_ref().ok_or_else(|| unconfigured("operations need [bundler]"))?;
    let signer =
        state.keyring.signer(custody_signer::KeyClass::User, user_id).await.map_err(|e| ApiError::unavailable(&e))?;
    let signature = signer
        .sign_digest(&userop::signing_digest(stored.version, stored.hash))
        .await
        .map_err(|e| ApiError::unavailable(&e))?;
    let op = UserOperation { signature: signature.as_bytes().to_vec().into(), ..stored.op.clone() };
    let hash = bundler.send_user_operation(op, stored.version.address()).await.map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "operation_rejected",
            format!("the bundler refused the operation ({}): {}", e.code.code(), e.message),
        )
    })?;
    if hash != stored.hash {
        return Err(ApiError::internal(&format!("the bundler hashed {hash}, prepared {}", stored.hash)));
    }
    sqlx::query("UPDATE operations_prepared SET sent_at = $1 WHERE user_op_hash = $2 AND sent_at IS NULL")
        .bind(crate::audit::now_millis())
        .bind(hash.to_string())
        .execute(&state.pool)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(hash)
}

/// `execute` for one call, `executeBatch` for several.
/// `op` sponsored by the paymaster (when there is one) or with the bundler's gas estimate alone; with
/// the last second it may be submitted.
async fn complete(
    state: &AppState,
    bundler: &custody_bundler::Bundler,
    mut op: UserOperation,
    version: EntryPointVersion,
    policy: Option<&str>,
    now: u64,
) -> Result<(UserOperation, u64), ApiError> {
    let mut expires_at = now + PREPARED_FOR_SECS;
    if let Some(paymaster) = &state.paymaster {
        op = match paymaster.sponsor(&op, version, policy, now).await.map_err(|e| ApiError::unavailable(&e))? {
            Ok(Ok(op)) => op,
            Ok(Err(reason)) => return Err(not_executable(&reason)),
            Err(denial) => {
                return Err(ApiError::new(
                    axum::http::StatusCode::FORBIDDEN,
                    "sponsorship_denied",
                    format!(
                        "policy {} refuses to sponsor this operation ({}): {}",
                        denial.policy, denial.rule, denial.message
                    ),
                ));
            }
        };
        if let Some(until) = op.paymaster_data.as_ref().and_then(|d| d.get(..6)) {
            let until = until.iter().fold(0u64, |n, b| n << 8 | u64::from(*b));
            expires_at = expires_at.min(until.saturating_sub(30));
        }
    } else {
        let gas = bundler.estimate_user_operation_gas(&op, version.address(), None).await;
        let gas = gas.map_err(|e| not_executable(&e.message))?;
        let gas = gas.ok_or_else(|| unconfigured("operations need the bundler's gas estimation"))?;
        op.pre_verification_gas = gas.pre_verification_gas;
        op.verification_gas_limit = gas.verification_gas_limit;
        op.call_gas_limit = gas.call_gas_limit;
    }
    Ok((op, expires_at))
}

fn call_data(calls: &[Call]) -> Bytes {
    match calls {
        [one] => account::execute(one.to, one.value, one.data.clone()),
        many => account::execute_batch(many.iter().map(|c| (c.to, c.value, c.data.clone()))),
    }
}

/// What `calls` do, in words: PTKN transfers by amount and recipient, PTKN burns by amount, other calls
/// by target, value and function selector.
pub(crate) fn summary(calls: &[Call], ptkn: Option<Address>) -> String {
    let described: Vec<String> = calls.iter().map(|call| describe(call, ptkn)).collect();
    described.join("; ")
}

/// ERC-20 `transfer(address,uint256)`.
const TRANSFER: [u8; 4] = [0xa9, 0x05, 0x9c, 0xbb];

/// The call data of a PTKN (ERC-20) transfer of `units` base units to `to`.
pub(crate) fn ptkn_transfer(to: Address, units: U256) -> Bytes {
    use alloy::sol_types::SolValue;
    [&TRANSFER[..], &(to, units).abi_encode_params()].concat().into()
}

/// The call data of a PTKN burn of `units` base units by its holder (ERC20Burnable `burn(uint256)`).
pub(crate) fn ptkn_burn(units: U256) -> Bytes {
    use alloy::sol_types::SolCall;
    custody_contracts::bindings::peruri_token::PeruriToken::burnCall { value: units }.abi_encode().into()
}

fn describe(call: &Call, ptkn: Option<Address>) -> String {
    use alloy::sol_types::SolCall;
    use custody_contracts::bindings::peruri_token::PeruriToken::burnCall;
    if Some(call.to) == ptkn && call.value.is_zero() {
        if call.data.len() == 68 && call.data[..4] == TRANSFER {
            let to = Address::from_slice(&call.data[16..36]);
            let amount = U256::from_be_slice(&call.data[36..68]);
            return format!("transfer {} PTKN to {to}", whole_units(amount));
        }
        if let Ok(burn) = burnCall::abi_decode(&call.data) {
            return format!("burn {} PTKN", whole_units(burn.value));
        }
    }
    let value = if call.value.is_zero() { String::new() } else { format!(" with {} wei", call.value) };
    match call.data.get(..4) {
        None if call.data.is_empty() => format!("send{value} to {}", call.to),
        Some(selector) => format!("call {} (function 0x{}){value}", call.to, hex::encode(selector)),
        None => format!("call {} with {} bytes of data{value}", call.to, call.data.len()),
    }
}

/// An 18-decimal amount in whole units (`1.5`, `10`).
fn whole_units(amount: U256) -> String {
    let one = U256::from(10u64).pow(U256::from(18));
    let (whole, fraction) = amount.div_rem(one);
    if fraction.is_zero() {
        return whole.to_string();
    }
    let digits = fraction.to_string();
    format!("{whole}.{}{}", "0".repeat(18 - digits.len()), digits.trim_end_matches('0'))
}

fn unconfigured(message: &str) -> ApiError {
    ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "operations_unconfigured", message)
}

/// The operation cannot run as asked (its call reverts, its validation fails).
fn not_executable(reason: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        "operation_not_executable",
        format!("the operation would not execute: {reason}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_name_what_each_call_does() {
        let ptkn = Address::repeat_byte(0x70);
        let bob = Address::repeat_byte(0xb0);
        let ten = U256::from(10u64) * U256::from(10u64).pow(U256::from(18));
        let calls = [
            Call { to: ptkn, value: U256::ZERO, data: ptkn_transfer(bob, ten) },
            Call {
                to: ptkn,
                value: U256::ZERO,
                data: ptkn_transfer(bob, U256::from(15u64) * U256::from(10u64).pow(U256::from(17))),
            },
            Call { to: bob, value: U256::from(7), data: Bytes::new() },
            Call { to: bob, value: U256::ZERO, data: Bytes::from_static(&[0x12, 0x34, 0x56, 0x78, 0x9a]) },
            Call { to: bob, value: U256::ZERO, data: Bytes::from_static(&[0x12]) },
            Call { to: ptkn, value: U256::ZERO, data: ptkn_burn(ten) },
        ];
        let text = summary(&calls, Some(ptkn));
        let parts: Vec<&str> = text.split("; ").collect();
        assert_eq!(parts[0], format!("transfer 10 PTKN to {bob}"));
        assert_eq!(parts[1], format!("transfer 1.5 PTKN to {bob}"));
        assert_eq!(parts[2], format!("send with 7 wei to {bob}"));
        assert_eq!(parts[3], format!("call {bob} (function 0x12345678)"));
        assert_eq!(parts[4], format!("call {bob} with 1 bytes of data"));
        assert_eq!(parts[5], "burn 10 PTKN");
        // A transfer on another contract is not called PTKN.
        assert!(summary(&calls[..1], None).starts_with("call "), "{}", summary(&calls[..1], None));
    }

    #[test]
    fn one_call_is_execute_and_several_are_a_batch() {
        let call = Call { to: Address::repeat_byte(1), value: U256::from(2), data: Bytes::from_static(&[3]) };
        assert_eq!(call_data(std::slice::from_ref(&call)), account::execute(call.to, call.value, call.data.clone()));
        let both = [call.clone(), call.clone()];
        let batch = account::execute_batch(both.iter().map(|c| (c.to, c.value, c.data.clone())));
        assert_eq!(call_data(&both), batch);
    }
}
