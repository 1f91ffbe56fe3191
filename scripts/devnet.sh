#!/usr/bin/env bash
# Runs the local devnet: a SoftHSM2 token, keys, a local chain with the contracts
# deployed, state under ./.devnet. Installs what is missing first. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/peruri-target}"
cargo build --locked -p custody-server --features dev --bin custody
exec "$CARGO_TARGET_DIR/debug/custody" devnet "$@"
