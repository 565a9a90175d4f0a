#!/usr/bin/env bash
# Before and after in one run of the machine: the payments and read benchmarks against an earlier build
# of the hub, then against this checkout's release build, one after another on the same PostgreSQL.
#
#   scripts/bench-compare.sh <earlier-hub-binary> [clients] [duration]
#
# An earlier build, e.g.:  git worktree add /tmp/before <commit> && (cd /tmp/before &&
#   CARGO_TARGET_DIR=$PWD/target cargo build --release --bin hub) && cp target/release/hub /tmp/hub-before
# HUB_BENCH_PERF_DIR=dir: also sample each hub's CPU with perf (dir/<build>-<bench>.data).
set -euo pipefail
cd "$(dirname "$0")/.."

before="${1:?usage: scripts/bench-compare.sh <earlier-hub-binary> [clients] [duration]}"
clients="${2:-8}"
duration="${3:-20s}"

cargo build --release -q --bin hub --bin hub-bench
for build in before after; do
    bin="$before"
    [[ "$build" == after ]] && bin=target/release/hub
    for bench in payments reads; do
        echo "== ${build}: ${bench} (${bin})"
        perf_file=""
        [[ -n "${HUB_BENCH_PERF_DIR:-}" ]] && perf_file="${HUB_BENCH_PERF_DIR}/${build}-${bench}.data"
        HUB_BIN="$bin" HUB_BENCH_PERF="$perf_file" "scripts/bench-${bench}.sh" "$clients" "$duration"
    done
done
