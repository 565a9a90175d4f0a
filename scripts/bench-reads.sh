#!/usr/bin/env bash
# The read benchmarks on PostgreSQL in one run: the simplest authenticated query (`me`), a page of 50
# products with their suppliers, then a page of 50 customers with every encrypted field (200 decryptions
# per page), and the throughput ratio of the last two (the cost of field-level encryption on reads).
# HUB_BENCH_SCENARIOS picks others (comma-separated).
#
#   scripts/bench-reads.sh [clients] [duration]      e.g. scripts/bench-reads.sh 8 20s
#
# Needs psql (Debian: postgresql-client) and a PostgreSQL at $PG_ADMIN_URL.
set -euo pipefail
cd "$(dirname "$0")/.."

clients="${1:-8}"
duration="${2:-20s}"

cargo build --release -q --bin hub --bin hub-bench
bench_name=hub_bench_reads bench_port=18081
source scripts/bench-hub.sh

target/release/hub-bench --url "http://${listen}" --token-file "$work/admin.token" --hub-pid "$hub_pid" --database-cpu \
    --scenario "${HUB_BENCH_SCENARIOS:-me,products-page,customers-page}" --clients "$clients" --duration "$duration"
