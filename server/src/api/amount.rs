//! Token amounts as the API takes them: whole PTKN, as a decimal string (`"100"`, the ecosystem's form,
//! exact past 2^53) or a JSON integer (`100`). Fractions, signs, exponents, leading zeros or junk, and
//! values over the configured maximum are refused with a 400 that names the field.

use serde_json::Value;

use super::error::ApiError;

/// Digits of the largest `u64`.
const MAX_DIGITS: usize = 20;

/// The whole-PTKN amount in `value` (the JSON field `field`), at most `max`.
pub(crate) fn whole(field: &str, value: &Value, max: u64) -> Result<u64, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_amount",
            format!(
                "{field} must be a whole number of PTKN from 1 to {max}, as a decimal string (\"100\") or an integer"
            ),
        )
    };
    let amount = match value {
        Value::String(text) => decimal(text).ok_or_else(invalid)?,
        // A JSON number: only an integer without fraction or exponent (serde_json keeps `1.0` and `1e2` as f64).
        Value::Number(n) => n.as_u64().ok_or_else(invalid)?,
        _ => return Err(invalid()),
    };
    if amount == 0 || amount > max {
        return Err(invalid());
    }
    Ok(amount)
}

/// `text` as a canonical decimal: ASCII digits only, no sign, no leading zero, no whitespace.
fn decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.len() <= MAX_DIGITS
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::whole;

    #[test]
    fn strings_and_integers_are_whole_ptkn() {
        for (value, want) in [(json!("100"), 100), (json!(100), 100), (json!("1"), 1), (json!("1000000"), 1_000_000)] {
            assert_eq!(whole("amount", &value, 1_000_000).ok(), Some(want), "{value}");
        }
    }

    #[test]
    fn anything_else_is_refused_naming_the_field() {
        for value in [
            json!("0"),
            json!(0),
            json!("-1"),
            json!(-1),
            json!("+1"),
            json!(" 1"),
            json!("1 "),
            json!("01"),
            json!("1.5"),
            json!(1.5),
            json!(1.0),
            json!(1e2),
            json!("1e2"),
            json!("0x10"),
            json!(""),
            json!("1000001"),
            json!("18446744073709551616"),
            json!("99999999999999999999999"),
            json!(null),
            json!(true),
            json!([1]),
        ] {
            let err = whole("amount", &value, 1_000_000).expect_err(&value.to_string());
            let text = format!("{err:?}");
            assert!(text.contains("invalid_amount") && text.contains("amount must be"), "{value}: {text}");
        }
    }
}
