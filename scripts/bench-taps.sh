#!/usr/bin/env bash
# Tap-to-authorized latency on the real tablet stack: a release hub on a fresh PostgreSQL database, a
# `virtual-card` on pcscd's first virtual reader and a `reader-agent run` following its terminal; then
# `hub-bench --scenario taps` (one payment request per tap) and cleanup.
#
#   scripts/bench-taps.sh [taps]      e.g. scripts/bench-taps.sh 100
#
# Needs pcscd with vsmartcard-vpcd (scripts/system-deps.sh installs and starts them), nothing else on the
# first virtual reader, psql, and a PostgreSQL at $PG_ADMIN_URL.
set -euo pipefail
cd "$(dirname "$0")/.."

taps="${1:-100}"

scripts/system-deps.sh
cargo build --release -q --bin hub --bin hub-bench --bin reader-agent --bin virtual-card
# One card pays every tap at one terminal: lift the velocity limits and the device cap.
export HUB_CARD_VELOCITY_COUNT=100000000 HUB_CARD_VELOCITY_SUM_MINOR=9000000000000 HUB_DEVICE_CAP_MINOR=9000000000000
bench_name=hub_bench_taps bench_port=18081
source scripts/bench-hub.sh

target/release/hub-bench --url "http://${listen}" --token-file "$work/admin.token" --hub-pid "$hub_pid" --database-cpu \
    --scenario taps --taps "$taps"
