#!/usr/bin/env bash
# The settlement benchmarks on PostgreSQL: a fresh database, a release hub on it, then
# `hub-bench --scenario capture-refund,close-batch` and cleanup.
#
#   scripts/bench-clearing.sh [clients] [operations] [batch entries]   e.g. scripts/bench-clearing.sh 8 3000 100000
#
# capture-refund authorizes `operations` + warm-up payments first (through the payments fixture), then
# measures one capture and one half refund per operation; close-batch seeds a batch of `batch entries`
# straight into the database, closes it through the API and fetches its manifest.
#
# Needs psql (Debian: postgresql-client) and a PostgreSQL at $PG_ADMIN_URL.
set -euo pipefail
cd "$(dirname "$0")/.."

clients="${1:-8}"
operations="${2:-3000}"
entries="${3:-100000}"

cargo build --release -q --bin hub --bin hub-bench
# Thousands of payments with a handful of cards at one terminal per client.
export HUB_CARD_VELOCITY_COUNT=100000000 HUB_CARD_VELOCITY_SUM_MINOR=9000000000000 HUB_DEVICE_CAP_MINOR=9000000000000
bench_name=hub_bench_clearing bench_port=18086
source scripts/bench-hub.sh

target/release/hub-bench --url "http://${listen}" --token-file "$work/admin.token" --hub-pid "$hub_pid" --database-cpu \
    --scenario capture-refund,close-batch --clients "$clients" --requests "$operations" \
    --settle-payments "$((operations + 20 * clients))" --batch-entries "$entries" \
    --seed-database-url "$database_url" --cards-per-client "${HUB_BENCH_CARDS:-24}"
