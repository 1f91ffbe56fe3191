//! Decoding what `simulateValidation` returns: the `ValidationResult`, the packed validation data, and
//! `FailedOp` / `FailedOpWithRevert` reverts mapped to ERC-7769 codes with messages a developer can act on.

use alloy::primitives::{Address, Bytes, U256};
use alloy::sol_types::{Revert, SolError, SolInterface};
use custody_contracts::IEntryPoint::{FailedOp, FailedOpWithRevert, IEntryPointErrors};

use crate::validation::{RpcErrorCode, ValidationError};

/// `validationData` unpacked: aggregator (or 0 = ok, 1 = signature failure) and time range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ValidationData {
    pub(crate) aggregator: Address,
    pub(crate) valid_after: u64,
    /// `u64::MAX` when the packed value is 0 (no expiry).
    pub(crate) valid_until: u64,
}

/// `SIG_VALIDATION_FAILED` as the aggregator field.
pub(crate) const SIG_FAILED: Address = Address::with_last_byte(1);

impl ValidationData {
    pub(crate) fn parse(data: U256) -> Self {
        let bytes = data.to_be_bytes::<32>();
        let word48 =
            |range: std::ops::Range<usize>| bytes[range].iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let valid_after = word48(0..6);
        let valid_until = match word48(6..12) {
            0 => u64::MAX,
            t => t,
        };
        Self { aggregator: Address::from_slice(&bytes[12..32]), valid_after, valid_until }
    }
}

/// Maps a revert of `simulateValidation` to a rejection. A paymaster's rejection (-32501, -32508)
/// names `paymaster` in its data, as ERC-7769 asks.
pub(crate) fn revert_error(output: &Bytes, paymaster: Option<Address>) -> ValidationError {
    match IEntryPointErrors::abi_decode(output) {
        Ok(IEntryPointErrors::FailedOp(FailedOp { reason, .. })) => failed_op(&reason, None, paymaster),
        Ok(IEntryPointErrors::FailedOpWithRevert(FailedOpWithRevert { reason, inner, .. })) => {
            failed_op(&reason, Some(&inner), paymaster)
        }
        _ => ValidationError::new(
            RpcErrorCode::EntryPointRejected,
            format!("simulateValidation reverted: {}", describe_revert(output)),
        ),
    }
}

fn failed_op(reason: &str, inner: Option<&Bytes>, paymaster: Option<Address>) -> ValidationError {
    let code = match reason.get(..4).unwrap_or_default() {
        "AA24" | "AA34" => RpcErrorCode::InvalidSignature,
        "AA22" | "AA32" => RpcErrorCode::ShortDeadline,
        "AA31" => RpcErrorCode::PaymasterDepositTooLow,
        r if r.starts_with("AA3") => RpcErrorCode::PaymasterRejected,
        _ => RpcErrorCode::EntryPointRejected,
    };
    let mut message = reason.to_owned();
    if let Some(hint) = hint(reason) {
        message = format!("{message} ({hint})");
    }
    if let Some(inner) = inner {
        message = format!("{message}: {}", describe_revert(inner));
    }
    let mut data = serde_json::json!({ "reason": reason, "inner": inner.map(|b| b.to_string()) });
    if let (RpcErrorCode::PaymasterRejected | RpcErrorCode::PaymasterDepositTooLow, Some(paymaster)) = (code, paymaster)
    {
        data["paymaster"] = serde_json::json!(paymaster);
    }
    ValidationError::new(code, message).with_data(data)
}

fn hint(reason: &str) -> Option<&'static str> {
    Some(match reason.get(..4)? {
        "AA10" => "the sender already exists: send the operation without initCode",
        "AA13" => "the factory call reverted or ran out of verificationGasLimit",
        "AA14" => "the factory returned an address other than the sender",
        "AA15" => "the factory did not deploy code at the sender",
        "AA20" => "the sender has no code: add factory and factoryData",
        "AA21" => "the account's deposit does not cover the prefund: fund it or use a paymaster",
        "AA23" => "validateUserOp reverted",
        "AA25" => "the nonce differs from EntryPoint.getNonce(sender, key)",
        "AA26" => "verificationGasLimit is too low for validation",
        "AA30" => "the paymaster has no code",
        "AA31" => "the paymaster's EntryPoint deposit does not cover the prefund",
        "AA33" => "validatePaymasterUserOp reverted",
        "AA36" => "paymasterVerificationGasLimit is too low",
        "AA93" => "paymasterAndData is shorter than 52 bytes",
        _ => return None,
    })
}

/// A revert payload in words: `Error(string)`, `Panic(uint)`, or the raw hex.
fn describe_revert(output: &[u8]) -> String {
    if let Ok(r) = Revert::abi_decode(output) {
        return r.reason;
    }
    if let Ok(p) = alloy::sol_types::Panic::abi_decode(output) {
        return format!("panic {}", p.code);
    }
    if output.is_empty() {
        "empty revert data".to_owned()
    } else {
        format!("revert data {}", Bytes::copy_from_slice(output))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_data_layout() {
        // validAfter 0x10 (bits 208..256), validUntil 0x20 (bits 160..208), aggregator 1.
        let data = (U256::from(0x10) << 208) | (U256::from(0x20) << 160) | U256::from(1);
        let v = ValidationData::parse(data);
        assert_eq!(v, ValidationData { aggregator: SIG_FAILED, valid_after: 0x10, valid_until: 0x20 });
        assert_eq!(ValidationData::parse(U256::ZERO).valid_until, u64::MAX);
    }

    #[test]
    fn failed_op_codes() {
        let enc =
            |reason: &str| -> Bytes { FailedOp { opIndex: U256::ZERO, reason: reason.to_owned() }.abi_encode().into() };
        assert_eq!(revert_error(&enc("AA25 invalid account nonce"), None).code, RpcErrorCode::EntryPointRejected);
        assert!(revert_error(&enc("AA25 invalid account nonce"), None).message.contains("getNonce"));
        assert_eq!(revert_error(&enc("AA24 signature error"), None).code, RpcErrorCode::InvalidSignature);
        assert_eq!(
            revert_error(&enc("AA31 paymaster deposit too low"), None).code,
            RpcErrorCode::PaymasterDepositTooLow
        );
        let paymaster = Address::repeat_byte(0x77);
        let rejected = revert_error(&enc("AA33 reverted"), Some(paymaster));
        assert_eq!(rejected.code, RpcErrorCode::PaymasterRejected);
        assert_eq!(
            rejected.data.expect("data")["paymaster"],
            serde_json::json!(paymaster),
            "ERC-7769: -32501 names it"
        );
        assert!(
            revert_error(&enc("AA25 invalid account nonce"), Some(paymaster)).data.expect("data")["paymaster"]
                .is_null()
        );
        let with_inner: Bytes = FailedOpWithRevert {
            opIndex: U256::ZERO,
            reason: "AA23 reverted".to_owned(),
            inner: Revert::from("not owner").abi_encode().into(),
        }
        .abi_encode()
        .into();
        let e = revert_error(&with_inner, None);
        assert!(e.message.contains("not owner"), "{}", e.message);
    }
}
