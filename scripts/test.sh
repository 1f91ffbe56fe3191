#!/usr/bin/env bash
# The test command: installs what is missing, then runs every check CI runs.
#   formatting, clippy (warnings are errors), no dev tooling in the production binary,
#   the contract artifacts rebuilt and compared, every test under cargo-nextest (the
#   schemathesis run against the API among them), and the docs without warnings.
# PostgreSQL must be reachable at 127.0.0.1:5432 (or CUSTODY_TEST_POSTGRES).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/peruri-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "the production binary links no dev tooling"
dev_parts=$(cargo tree --locked -e normal -p custody-server -f '{p} {f}' | grep -E 'custody-hsm-sim|test-utils' || true)
if [ -n "$dev_parts" ]; then
  printf 'custody-server without the dev feature links dev tooling:\n%s\n' "$dev_parts" >&2
  exit 1
fi
cargo clippy --locked -p custody-server --bin custody -- -D warnings

step "alert rules and the Prometheus configuration (promtool)"
promtool check config ops/prometheus/prometheus.yml
promtool check rules ops/prometheus/alerts.yml

step "contract artifacts rebuilt and compared"
node contracts/build.mjs --check
node bundler/test-contracts/build.mjs --check

step "cargo nextest run"
cargo nextest run --workspace --all-features --locked --no-fail-fast

step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --locked --quiet
