//! Errors of this crate.

use alloy::primitives::Address;

/// A UserOperation that cannot be packed or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UserOpError {
    /// A gas field does not fit in 128 bits.
    #[error("{field} does not fit in 128 bits")]
    FieldTooLarge { field: &'static str },
    /// `factoryData` without `factory`.
    #[error("factoryData without factory")]
    FactoryDataWithoutFactory,
    /// `paymasterData` without `paymaster`.
    #[error("paymasterData without paymaster")]
    PaymasterDataWithoutPaymaster,
    /// initCode shorter than a factory address.
    #[error("initCode of {0} bytes is shorter than an address")]
    ShortInitCode(usize),
    /// paymasterAndData shorter than its static part.
    #[error("paymasterAndData of {0} bytes is shorter than 52")]
    ShortPaymasterAndData(usize),
}

/// A deployment that failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// An RPC call failed.
    #[error("{operation}: {source}")]
    Rpc {
        operation: &'static str,
        #[source]
        source: alloy::transports::TransportError,
    },
    /// Waiting for a transaction receipt failed.
    #[error("{operation}: {source}")]
    Pending {
        operation: &'static str,
        #[source]
        source: alloy::providers::PendingTransactionError,
    },
    /// The deterministic deployment proxy has no code on this chain.
    #[error(
        "the deterministic deployment proxy {0} has no code: pre-install it (genesis alloc) or call install_deterministic_deployer"
    )]
    NoDeployer(Address),
    /// A deployment transaction reverted or left no code.
    #[error("deploying {name} at {address} failed (transaction reverted or no code)")]
    NotDeployed { name: &'static str, address: Address },
    /// A contract landed somewhere unexpected.
    #[error("{name} landed at {actual}, expected {expected}")]
    WrongAddress { name: &'static str, expected: Address, actual: Address },
}

/// A deployment record that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// File system error.
    #[error("{operation} {path}: {source}")]
    Io {
        operation: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Malformed JSON.
    #[error("deployment record {path}: {source}")]
    Json {
        path: std::path::PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The local chain could not start or answer.
#[cfg(any(test, feature = "test-utils"))]
#[derive(Debug, thiserror::Error)]
pub enum LocalChainError {
    /// The node's program is missing (`contracts/node_modules` not installed).
    #[error("{path} is missing: run `npm ci --prefix contracts` first (scripts/bootstrap.sh does)")]
    MissingNodeModules { path: std::path::PathBuf },
    /// The node process could not be started.
    #[error("starting the {node} node")]
    Spawn {
        node: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The node exited before answering.
    #[error("the {node} node exited ({status}); its output:\n{log}")]
    Exited { node: &'static str, status: String, log: String },
    /// The node did not answer in time.
    #[error("the {node} node did not answer in time; its output:\n{log}")]
    Timeout { node: &'static str, log: String },
    /// The node answers with another chain id.
    #[error("the {node} node reports chain id {actual}, expected {expected}")]
    WrongChainId { node: &'static str, expected: u64, actual: u64 },
    /// The node did not stop cleanly (an Anvil node's state file may be older than its last blocks).
    #[error("the {node} node did not stop cleanly: {how}; its output:\n{log}")]
    Stop { node: &'static str, how: String, log: String },
    /// A node RPC call failed.
    #[error("{method}: {source}")]
    Rpc {
        method: &'static str,
        #[source]
        source: alloy::transports::TransportError,
    },
}
