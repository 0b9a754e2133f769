#!/usr/bin/env bash
# Installs what Wenu's tests need on a fresh Debian machine, then runs them all:
# formatting, lints, and every test of the workspace (unit, property, and the
# end-to-end tests against real MQTT clients and a real `wenu` process).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mosquitto_pub >/dev/null || need_apt+=(mosquitto-clients)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
python3 -c 'import ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# DuckDB and pyarrow read the lake in the end-to-end tests: independent proof
# that the files are standard Parquet. Kept outside the clone and reused.
venv="$HOME/.cache/wenu-venv"
if ! "$venv/bin/python" -c 'import duckdb, pyarrow' 2>/dev/null; then
  command -v python3 >/dev/null || { echo "python3 is needed for the lake tests" >&2; exit 1; }
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet duckdb pyarrow
fi
export DUCKDB_PYTHON="$venv/bin/python"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
