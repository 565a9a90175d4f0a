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

cargo build --release -q --bin hub --bin hub-bench
# The benchmark pays thousands of times with a handful of cards at one terminal.
export HUB_CARD_VELOCITY_COUNT=100000000 HUB_CARD_VELOCITY_SUM_MINOR=9000000000000 HUB_DEVICE_CAP_MINOR=9000000000000
bench_name=hub_bench bench_port=18080
source scripts/bench-hub.sh

target/release/hub-bench --url "http://${listen}" --token-file "$work/admin.token" --hub-pid "$hub_pid" --database-cpu \
    --scenario payments --clients "$clients" --duration "$duration" --pgbench-url "$database_url" \
    --cards-per-client "${HUB_BENCH_CARDS:-24}"
