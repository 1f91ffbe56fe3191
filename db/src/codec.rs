//! Text codecs for the Ethereum values stored in TEXT columns, one format each so that SQL
//! equality, indexes and joins across tables agree:
//!
//! - [`Address`] and [`B256`]: lowercase `0x` hex (`0x` and 40 or 64 digits). Display stays EIP-55 in
//!   the API; the database never holds a checksummed address. Decoding accepts any case.
//! - [`U256`]: decimal, as amounts and fees are read by people and by `CAST` in reports.

use alloy_primitives::{Address, B256, U256};

use crate::DecodeError;

/// An address as stored: lowercase `0x` hex.
pub fn encode_address(address: Address) -> String {
    format!("{address:#x}")
}

/// A stored address, in any case.
pub fn decode_address(text: &str) -> Result<Address, DecodeError> {
    text.parse().map_err(|_| malformed("address", text))
}

/// Whether `text` is `0x` and 64 hex digits (any case): a hash or id as stored and as the API takes it.
pub fn is_hex32(text: &str) -> bool {
    text.len() == 66 && text.starts_with("0x") && text[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// A 32-byte hash as stored: lowercase `0x` hex.
pub fn encode_b256(hash: B256) -> String {
    format!("{hash:#x}")
}

/// A stored 32-byte hash, in any case.
pub fn decode_b256(text: &str) -> Result<B256, DecodeError> {
    text.parse().map_err(|_| malformed("hash", text))
}

/// A 256-bit number as stored: decimal.
pub fn encode_u256(number: U256) -> String {
    number.to_string()
}

/// A stored decimal 256-bit number.
pub fn decode_u256(text: &str) -> Result<U256, DecodeError> {
    // `from_str_radix` reads "" as zero: only a non-empty run of digits is a stored number.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed("number", text));
    }
    U256::from_str_radix(text, 10).map_err(|_| malformed("number", text))
}

fn malformed(kind: &'static str, text: &str) -> DecodeError {
    DecodeError { kind, value: text.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_stored_lowercase_and_read_in_any_case() {
        let checksummed = "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf";
        let address: Address = checksummed.parse().expect("address");
        assert_eq!(encode_address(address), checksummed.to_lowercase());
        assert_eq!(decode_address(checksummed).expect("checksummed"), address);
        assert_eq!(decode_address(&checksummed.to_lowercase()).expect("lowercase"), address);
        assert_eq!(decode_address(&checksummed.to_uppercase().replacen("0X", "0x", 1)).expect("uppercase"), address);
        assert!(decode_address("0x1234").is_err());
        assert!(decode_address("").is_err());
    }

    #[test]
    fn hashes_round_trip_as_lowercase_hex() {
        let hash = B256::repeat_byte(0xAB);
        let text = encode_b256(hash);
        assert_eq!(text, format!("0x{}", "ab".repeat(32)));
        assert_eq!(decode_b256(&text.to_uppercase().replacen("0X", "0x", 1)).expect("uppercase"), hash);
        assert!(decode_b256("0xab").is_err());
    }

    #[test]
    fn numbers_round_trip_as_decimal() {
        let amount = U256::from(10u64).pow(U256::from(18)) * U256::from(7u64);
        assert_eq!(encode_u256(amount), "7000000000000000000");
        assert_eq!(decode_u256("7000000000000000000").expect("decimal"), amount);
        assert_eq!(decode_u256(&encode_u256(U256::MAX)).expect("max"), U256::MAX);
        assert!(decode_u256("0x10").is_err());
        assert!(decode_u256("-1").is_err());
        assert!(decode_u256("").is_err());
    }
}
