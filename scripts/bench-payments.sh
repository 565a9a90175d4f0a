#!/usr/bin/env bash
# The payments benchmark on PostgreSQL, with the database's own ceiling in the same run:
# a fresh database, a release hub on it, `hub-bench --scenario payments --pgbench-url`, then cleanup.
#
#   scripts/bench-payments.sh [clients] [duration]      e.g. scripts/bench-payments.sh 8 20s
#
# Each client gets HUB_BENCH_CARDS virtual cards (default 24, 64 numbers each): enough for about 1,500
# payments per client; a client whose cards run out reports errors.
#
# Needs psql (Debian: postgresql-client), pgbench (Debian ships it with the server package, postgresql-15)
# and a PostgreSQL at $PG_ADMIN_URL.
set -euo pipefail
cd "$(dirname "$0")/.."

clients="${1:-8}"
duration="${2:-20s}"
admin_url="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
database="hub_bench_$$"
# Hub and pgbench both talk to the database over loopback, so both without TLS (override to compare).
database_url="${admin_url%/*}/${database}${HUB_BENCH_URL_PARAMS-?sslmode=disable}"
listen="127.0.0.1:${HUB_BENCH_PORT:-18080}"
work="$(mktemp -d)"

cleanup() {
    [[ -n "${hub_pid:-}" ]] && kill "$hub_pid" 2>/dev/null && wait "$hub_pid" 2>/dev/null
    psql "$admin_url" -XAtqc "DROP DATABASE IF EXISTS ${database} WITH (FORCE)" >/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cargo build --release -q --bin hub --bin hub-bench
psql "$admin_url" -XAtqc "CREATE DATABASE ${database}" >/dev/null

export DATABASE_URL="$database_url" HUB_DATA_DIR="$work" HUB_LOG_FORMAT=json RUST_LOG=warn
# The benchmark pays thousands of times with a handful of cards at one terminal.
export HUB_CARD_VELOCITY_COUNT=100000000 HUB_CARD_VELOCITY_SUM_MINOR=9000000000000 HUB_DEVICE_CAP_MINOR=9000000000000
# The PostgreSQL mode never generates keys: give it a signing key and a number-hash key.
target/release/hub keygen --out "$work/signing-key.pem" >/dev/null
target/release/hub keygen --secret --out "$work/number-hash.key" >/dev/null
export HUB_NUMBER_HASH_KEY_FILE="$work/number-hash.key"
target/release/hub serve --listen "$listen" >"$work/hub.log" 2>&1 &
hub_pid=$!
for _ in $(seq 100); do
    curl -fs "http://${listen}/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
# The PostgreSQL mode writes no bootstrap token: mint the retailer ADMIN's.
target/release/hub token create --org "${HUB_RETAILER_NAME:-Retailer}" --role ADMIN >"$work/admin.token"

target/release/hub-bench --url "http://${listen}" --token-file "$work/admin.token" \
    --scenario payments --clients "$clients" --duration "$duration" --pgbench-url "$database_url" \
    --cards-per-client "${HUB_BENCH_CARDS:-24}"
