#!/usr/bin/env bash
# Tap-to-authorized latency on the real tablet stack: a release hub on a fresh PostgreSQL database, a
# `virtual-card` on pcscd's first virtual reader and a `reader-agent run` following its terminal; then
# `hub-bench --scenario taps` (one payment request per tap) and cleanup.
#
#   scripts/bench-taps.sh [taps]      e.g. scripts/bench-taps.sh 100
#
# Needs pcscd with vsmartcard-vpcd running (scripts/system-deps.sh installs and starts them), nothing
# else on the first virtual reader, psql, and a PostgreSQL at $PG_ADMIN_URL.
set -euo pipefail
cd "$(dirname "$0")/.."

taps="${1:-100}"
admin_url="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
database="hub_bench_taps_$$"
database_url="${admin_url%/*}/${database}?sslmode=disable"
listen="127.0.0.1:${HUB_BENCH_PORT:-18081}"
work="$(mktemp -d)"

cleanup() {
    [[ -n "${hub_pid:-}" ]] && kill "$hub_pid" 2>/dev/null && wait "$hub_pid" 2>/dev/null
    psql "$admin_url" -XAtqc "DROP DATABASE IF EXISTS ${database} WITH (FORCE)" >/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

scripts/system-deps.sh
cargo build --release -q --bin hub --bin hub-bench --bin reader-agent --bin virtual-card
psql "$admin_url" -XAtqc "CREATE DATABASE ${database}" >/dev/null

export DATABASE_URL="$database_url" HUB_DATA_DIR="$work" HUB_LOG_FORMAT=json RUST_LOG=warn
# One card pays every tap at one terminal: lift the velocity limits and the device cap.
export HUB_CARD_VELOCITY_COUNT=100000000 HUB_CARD_VELOCITY_SUM_MINOR=9000000000000 HUB_DEVICE_CAP_MINOR=9000000000000
target/release/hub keygen --out "$work/signing-key.pem" >/dev/null
export HUB_SIGNING_KEY_FILE="$work/signing-key.pem"
target/release/hub keygen --secret --out "$work/number-hash.key" >/dev/null
export HUB_NUMBER_HASH_KEY_FILE="$work/number-hash.key"
target/release/hub serve --listen "$listen" >"$work/hub.log" 2>&1 &
hub_pid=$!
for _ in $(seq 100); do
    curl -fs "http://${listen}/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
target/release/hub token create --org "${HUB_RETAILER_NAME:-Retailer}" --role ADMIN >"$work/admin.token"

target/release/hub-bench --url "http://${listen}" --token-file "$work/admin.token" \
    --scenario taps --taps "$taps"
