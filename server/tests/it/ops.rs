//! The operator's kit (ops/): every metric an alert rule or a dashboard names is one the service exports.

use std::collections::BTreeSet;

/// Metrics that appear only once their event happens (a signature mismatch, an HSM reconnect, a task
/// failure, a rate-limited client, a UserOperation through the bundler, a sponsorship or its denial, a
/// first anchored audit checkpoint); for these the check is that the code records them under that name.
const EVENT_ONLY: [&str; 10] = [
    "custody_signature_mismatch_total",
    "custody_hsm_reconnects_total",
    "custody_task_failures_total",
    "custody_http_rate_limited_total",
    "custody_issuance_step_failures_total",
    "custody_paymaster_sponsorships_total",
    "custody_paymaster_denials_total",
    "custody_paymaster_settled_total",
    "custody_paymaster_released_total",
    "custody_audit_checkpoint_seq",
];

/// Every `custody_*` and `bundler_*` metric named in ops/prometheus/alerts.yml and ops/grafana/dashboards.
pub fn named_in_ops() -> BTreeSet<String> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../ops");
    let mut text = std::fs::read_to_string(format!("{root}/prometheus/alerts.yml")).unwrap();
    for entry in std::fs::read_dir(format!("{root}/grafana/dashboards")).unwrap() {
        text.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    metric_names(&text)
}

fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (start, _) in text.match_indices(|c: char| c.is_ascii_lowercase()) {
        let rest = &text[start..];
        if !(rest.starts_with("custody_") || rest.starts_with("bundler_")) {
            continue;
        }
        let before = start.checked_sub(1).map(|i| text.as_bytes()[i]);
        if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        let name: String =
            rest.chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
        names.insert(name);
    }
    names
}

/// Checks `exported` (a /metrics text from a service that tracked, minted and confirmed) against the
/// names in ops/: each is exported, or is an event-only metric recorded under that name in the code, or a
/// bundler metric (the bundler's own tests drive UserOperations).
pub fn check_exported(exported: &str) {
    let source = source_metric_names();
    for name in named_in_ops() {
        let present = exported.lines().any(|l| l.starts_with(&name) && !l.starts_with('#'));
        if present {
            continue;
        }
        let event_only = EVENT_ONLY.contains(&name.as_str()) || name.starts_with("bundler_");
        assert!(event_only, "{name} is named in ops/ but not exported by the running service");
        assert!(source.contains(&name), "{name} is named in ops/ but recorded nowhere in the code");
    }
}

/// The metric names the workspace's code records (`metrics::counter!("…")` and the like).
fn source_metric_names() -> BTreeSet<String> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut names = BTreeSet::new();
    for krate in ["server", "bundler", "issuance", "signer", "accounts", "paymaster"] {
        let mut dirs = vec![std::path::PathBuf::from(format!("{root}/{krate}/src"))];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    names.extend(metric_names(&std::fs::read_to_string(path).unwrap()));
                }
            }
        }
    }
    names
}

#[test]
fn ops_files_name_metrics() {
    let names = named_in_ops();
    assert!(names.len() >= 15, "{names:?}");
    assert!(names.contains("custody_http_requests_total") && names.contains("custody_issuance_outbox_depth"));
}
