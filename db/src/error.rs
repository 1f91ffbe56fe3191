//! Errors of the codecs (the pool and migrations return sqlx's own).

/// A stored text that is not the value its column holds.
#[derive(Debug, thiserror::Error)]
#[error("stored {kind} is malformed: {value:?}")]
pub struct DecodeError {
    /// What was expected: `address`, `hash` or `number`.
    pub kind: &'static str,
    /// The text found.
    pub value: String,
}
