//! Bundler metrics (the `metrics` facade; the server installs the Prometheus exporter).

use std::time::Duration;

use custody_contracts::EntryPointVersion;

use crate::validation::RpcErrorCode;

pub(crate) fn op_received(ep: EntryPointVersion) {
    metrics::counter!("bundler_ops_received_total", "entry_point" => ep.as_str()).increment(1);
}

pub(crate) fn op_accepted(ep: EntryPointVersion) {
    metrics::counter!("bundler_ops_accepted_total", "entry_point" => ep.as_str()).increment(1);
}

/// A refusal, by JSON-RPC `code` and, for an ERC-7562 violation, its `rule` (`none` otherwise).
pub(crate) fn op_rejected(ep: EntryPointVersion, code: RpcErrorCode, rule: Option<&str>) {
    let rule = rule.unwrap_or("none").to_owned();
    let labels = [("entry_point", ep.as_str().to_owned()), ("code", code.code().to_string()), ("rule", rule)];
    metrics::counter!("bundler_ops_rejected_total", &labels).increment(1);
}

pub(crate) fn validation_time(ep: EntryPointVersion, took: Duration) {
    metrics::histogram!("bundler_validation_seconds", "entry_point" => ep.as_str()).record(took.as_secs_f64());
}

pub(crate) fn mempool_size(ep: EntryPointVersion, pending: u64) {
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!("bundler_mempool_size", "entry_point" => ep.as_str()).set(pending as f64);
}

pub(crate) fn bundle_sent(ep: EntryPointVersion, ops: usize, gas: u64) {
    #[allow(clippy::cast_precision_loss)]
    {
        metrics::histogram!("bundler_bundle_ops", "entry_point" => ep.as_str()).record(ops as f64);
        metrics::histogram!("bundler_bundle_gas", "entry_point" => ep.as_str()).record(gas as f64);
    }
}

pub(crate) fn op_dropped_in_bundle(ep: EntryPointVersion) {
    metrics::counter!("bundler_ops_failed_in_bundle_total", "entry_point" => ep.as_str()).increment(1);
}

pub(crate) fn inclusion_latency(ep: EntryPointVersion, took: Duration) {
    metrics::histogram!("bundler_inclusion_seconds", "entry_point" => ep.as_str()).record(took.as_secs_f64());
}
