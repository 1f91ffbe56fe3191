#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build, run and test Peruri Custody:
# SoftHSM2, promtool and the PostgreSQL client tools (Debian), the moto KMS server and schemathesis (PyPI), the contracts' npm packages, and
# cargo-nextest. Idempotent: each step runs only when its part is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    sudo_if_needed apt-get update -qq
    apt_updated=1
  fi
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! command -v softhsm2-util >/dev/null 2>&1 || [ ! -f /usr/lib/softhsm/libsofthsm2.so ]; then
  say "installing SoftHSM2 (Debian package softhsm2)"
  apt_install softhsm2
fi

if ! command -v promtool >/dev/null 2>&1; then
  say "installing promtool (Debian package prometheus), which checks the alert rules in ops/"
  apt_install prometheus
fi

if ! command -v pg_dump >/dev/null 2>&1 || ! command -v pg_restore >/dev/null 2>&1; then
  say "installing the PostgreSQL client tools (Debian package postgresql-client), which custody backup uses"
  apt_install postgresql-client
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  say "installing Node.js and npm (Debian packages)"
  apt_install nodejs npm
fi

if ! python3 -c 'import moto.server, flask, flask_cors' >/dev/null 2>&1; then
  say "installing the moto KMS server (PyPI moto[server])"
  pip_args=(install --quiet --disable-pip-version-check 'moto[server]>=5.1,<6')
  # Debian's own Python refuses system-wide installs (PEP 668); pyenv's does not.
  python3 -m pip "${pip_args[@]}" 2>/dev/null || python3 -m pip "${pip_args[@]}" --break-system-packages
fi

if ! command -v schemathesis >/dev/null 2>&1; then
  say "installing schemathesis (PyPI), the OpenAPI fuzzer the tests run against the API"
  pip_args=(install --quiet --disable-pip-version-check 'schemathesis>=4.3,<5')
  python3 -m pip "${pip_args[@]}" 2>/dev/null || python3 -m pip "${pip_args[@]}" --break-system-packages
fi

if [ -f contracts/package-lock.json ]; then
  stamp=contracts/node_modules/.package-lock.json
  if [ ! -f "$stamp" ] || [ contracts/package-lock.json -nt "$stamp" ]; then
    say "installing the contracts' npm packages (npm ci)"
    npm ci --prefix contracts --no-audit --no-fund --loglevel=error
  fi
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  say "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi
