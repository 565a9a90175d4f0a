#!/usr/bin/env bash
# The work/logistics and analytics benchmarks on PostgreSQL: travel records appended by one carrier per
# client, then the retailer's sales by day, product and supplier over a year of orders (order lines
# seeded straight into the database).
#
#   scripts/bench-verbs.sh [clients] [duration] [lines]      e.g. scripts/bench-verbs.sh 8 20s 100000
#
# Needs psql (Debian: postgresql-client) and a PostgreSQL at $PG_ADMIN_URL.
set -euo pipefail
cd "$(dirname "$0")/.."

clients="${1:-8}"
duration="${2:-20s}"
lines="${3:-100000}"

cargo build --release -q --bin hub --bin hub-bench
bench_name=hub_bench_verbs bench_port=18083
source scripts/bench-hub.sh

target/release/hub-bench --url "http://${listen}" --token-file "$work/admin.token" --hub-pid "$hub_pid" --database-cpu \
    --scenario travel-records,sales-year --clients "$clients" --duration "$duration" \
    --hub-bin target/release/hub --seed-database-url "$database_url" --seed-lines "$lines"
