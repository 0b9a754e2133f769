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
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v npm >/dev/null || need_apt+=(nodejs npm)
command -v faketime >/dev/null || need_apt+=(faketime)
# The C reference device is built and run against the edge (libmosquitto, OpenSSL).
command -v cc >/dev/null || need_apt+=(gcc libc6-dev)
[ -f /usr/include/mosquitto.h ] || need_apt+=(libmosquitto-dev)
[ -f /usr/include/openssl/evp.h ] || need_apt+=(libssl-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# DuckDB and pyarrow read the lake in the end-to-end tests: independent proof
# that the files are standard Parquet. Prometheus' own client parses
# /metrics. paho-mqtt is a second MQTT client nobody here wrote (Eclipse
# Paho), for the edge's reason codes and the Python reference device (with
# `cryptography` for its AES-GCM). aiosmtpd is the SMTP server alarm e-mails
# and reports are sent to. moto is the AWS emulator the AWS adapters and the deployment
# template are tested against; cfn-lint is AWS's template linter.
# Kept outside the clone and reused.
venv="$HOME/.cache/wenu-venv"
if ! "$venv/bin/python" -c 'import duckdb, pyarrow, prometheus_client, paho.mqtt, cryptography, moto.server, cfnlint, aiosmtpd' 2>/dev/null \
  || [ "$("$venv/bin/cfn-lint" --version 2>/dev/null)" != "cfn-lint 1.58.0" ]; then
  command -v python3 >/dev/null || { echo "python3 is needed for the lake and AWS tests" >&2; exit 1; }
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet duckdb pyarrow prometheus-client 'paho-mqtt==2.1.0' cryptography 'moto[server]==5.2.5' 'cfn-lint==1.58.0' 'aiosmtpd==1.4.6'
fi
export DUCKDB_PYTHON="$venv/bin/python"
export MOTO_PYTHON="$venv/bin/python"
export PAHO_PYTHON="$venv/bin/python"
export SMTP_PYTHON="$venv/bin/python"
export CFN_LINT="$venv/bin/cfn-lint"

# The browser test drives Debian's Chromium with playwright-core (no browser
# download: it uses /usr/bin/chromium). Kept outside the clone and reused.
node_dir="$HOME/.cache/wenu-node"
if [ ! -f "$node_dir/node_modules/playwright-core/package.json" ]; then
  npm install --silent --no-audit --no-fund --prefix "$node_dir" playwright-core@1.64
fi
export PLAYWRIGHT_CORE="$node_dir/node_modules/playwright-core"

# The registry's PostgreSQL path (RDS on AWS) is tested against a real,
# throwaway server on loopback, stopped when the tests end.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
pg_dir=$(mktemp -d /tmp/wenu-pg.XXXXXX)
pg_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg=()
if [ "$(id -u)" -eq 0 ]; then chown postgres "$pg_dir"; as_pg=(runuser -u postgres --); fi
"${as_pg[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U wenu --auth=trust -E UTF8 >/dev/null
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w start \
  -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=off" >/dev/null
trap '"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast stop >/dev/null; rm -rf "$pg_dir"' EXIT
export POSTGRES_TEST_URL="postgres://wenu@127.0.0.1:$pg_port/postgres"

cargo fmt --all -- --check
# `--all-features` takes in the `aws` backend of the wenu binary (and its
# end-to-end test on moto); the embedded-only build is linted too.
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
cargo clippy -p wenu --all-targets --locked -- -D warnings
# `--no-fail-fast`: one run lists every failing test, not the first binary's.
cargo test --workspace --all-features --locked --no-fail-fast

# The same tests again a year from now, so that a test which passes only near
# the day it was written (a fixed instant meeting a retention, a TTL or an
# expiry) fails on that day, not weeks later. libfaketime moves the wall clock
# of each test process and of everything it starts (the `wenu` binary, moto,
# mosquitto clients, the browser). The runner wraps the test binaries only, so
# nothing is rebuilt. (Not FAKETIME_DONT_FAKE_MONOTONIC: with it, libfaketime
# 0.9.10 returns absolute monotonic sleeps at once, and Python and Chromium spin.)
# The overload and connect-storm tests are left out: they measure memory
# and a 10 000-device fleet under load, not dates.
runner_var="CARGO_TARGET_$(rustc -vV | sed -n 's/^host: //p' | tr 'a-z-' 'A-Z_')_RUNNER"
env "$runner_var=faketime -f +365d" cargo test --workspace --all-features --locked --no-fail-fast --tests \
  -- --skip more_than_the_server_can_take_is_held_back --skip a_fleet_connects_at_once

# The AWS deployment template (its own workspace: see infra-cdk/Cargo.toml).
cargo fmt --manifest-path infra-cdk/Cargo.toml -- --check
cargo clippy --manifest-path infra-cdk/Cargo.toml --all-targets --locked -- -D warnings
cargo test --manifest-path infra-cdk/Cargo.toml --locked
