//! Token amounts as the API takes them: whole PTKN, as a decimal string (`"100"`, the ecosystem's form,
//! exact past 2^53) or a JSON integer (`100`; JSON Schema's integer, so `1e2` too). Fractions, signs,
//! leading zeros or junk are a 400 naming the field; amounts over the configured maximum a 422.

use axum::http::StatusCode;
use serde_json::Value;
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{ObjectBuilder, OneOfBuilder, RefOr, Schema, schema::Type},
};

use super::error::ApiError;

/// The whole-PTKN amount in `value` (the JSON field `field`), from 1 to `max`.
pub(crate) fn whole(field: &str, value: &Value, max: u64) -> Result<u64, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_amount",
            format!("{field} must be a whole number of PTKN, as a decimal string (\"100\") or an integer"),
        )
    };
    let amount = match value {
        Value::String(text) => decimal(text).ok_or_else(invalid)?,
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(whole), _) => u128::from(whole),
            // JSON Schema's integer: any integral number (`1e2`; serde_json keeps integers past u64 as
            // f64). The cast saturates.
            (None, Some(f)) if f.fract() == 0.0 && f >= 1.0 => f as u128,
            _ => return Err(invalid()),
        },
        _ => return Err(invalid()),
    };
    if amount == 0 {
        return Err(invalid());
    }
    u64::try_from(amount).ok().filter(|a| *a <= max).ok_or_else(|| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "out_of_range", format!("{field} must be at most {max} PTKN"))
    })
}

/// `text` as a canonical decimal (ASCII digits, no sign, no leading zero, no whitespace), saturating.
fn decimal(text: &str) -> Option<u128> {
    let canonical = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && !text.starts_with('0');
    canonical.then(|| text.parse().unwrap_or(u128::MAX))
}

/// The schema of an amount field.
#[derive(Debug)]
pub(crate) struct Amount;

impl PartialSchema for Amount {
    fn schema() -> RefOr<Schema> {
        let text = ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[1-9][0-9]*$"));
        let integer = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1));
        let either = OneOfBuilder::new().item(text).item(integer).description(Some(
            "Whole PTKN (10^18 base units each): a decimal string (\"100\") or an integer; over [issuance] \
             max_amount (10^9 by default) is a 422 out_of_range.",
        ));
        either.into()
    }
}

impl ToSchema for Amount {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("WholePtkn")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::whole;

    #[test]
    fn strings_and_integers_are_whole_ptkn() {
        for (value, want) in [
            (json!("100"), 100),
            (json!(100), 100),
            (json!("1"), 1),
            (json!("1000000"), 1_000_000),
            (json!(1e2), 100),
            (json!(7.0), 7),
        ] {
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
            json!("1e2"),
            json!("0x10"),
            json!(""),
            json!(null),
            json!(true),
            json!([1]),
        ] {
            let err = whole("amount", &value, 1_000_000).expect_err(&value.to_string());
            let text = format!("{err:?}");
            assert!(text.contains("invalid_amount") && text.contains("amount must be"), "{value}: {text}");
        }
    }

    #[test]
    fn amounts_over_the_maximum_are_out_of_range() {
        let huge: serde_json::Value = serde_json::from_str("100000000000000000000000").expect("json");
        for value in [json!("1000001"), json!(1_000_001), json!("18446744073709551616"), json!("9".repeat(40)), huge] {
            let err = whole("amount", &value, 1_000_000).expect_err(&value.to_string());
            let text = format!("{err:?}");
            assert!(
                text.contains("out_of_range") && text.contains("amount must be at most 1000000"),
                "{value}: {text}"
            );
        }
    }
}
