# Sourced by the benchmark scripts: a fresh PostgreSQL database and a release `hub` on it with generated
# keys, all removed when the script exits. Set before sourcing: `bench_name` (the database name's stem)
# and `bench_port`; extra hub settings as exported HUB_* variables. Afterwards: `listen` (host:port),
# `database_url`, `admin_url`, `work` (a private directory), `$work/admin.token` (the retailer ADMIN's),
# `hub_pid`, and HUB_METRICS_TOKEN exported (hub-bench reads it to report statements per operation).
# HUB_BIN serves another build of the hub (e.g. an earlier commit's, to compare in one run).

admin_url="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
database="${bench_name}_$$"
# Hub and pgbench both talk to the database over loopback, so both without TLS (override to compare).
database_url="${admin_url%/*}/${database}${HUB_BENCH_URL_PARAMS-?sslmode=disable}"
listen="127.0.0.1:${HUB_BENCH_PORT:-$bench_port}"
work="$(mktemp -d)"

bench_cleanup() {
    # Under `set -e`: a failing kill or wait must not stop the cleanup before the hub is gone.
    if [[ -n "${perf_pid:-}" ]]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
    fi
    if [[ -n "${hub_pid:-}" ]]; then
        kill "$hub_pid" 2>/dev/null || true
        wait "$hub_pid" 2>/dev/null || true
    fi
    psql "$admin_url" -XAtqc "DROP DATABASE IF EXISTS ${database} WITH (FORCE)" >/dev/null || true
    rm -rf "$work"
}
trap bench_cleanup EXIT

psql "$admin_url" -XAtqc "CREATE DATABASE ${database}" >/dev/null
export DATABASE_URL="$database_url" HUB_DATA_DIR="$work" HUB_LOG_FORMAT=json RUST_LOG=warn
# The PostgreSQL mode never generates keys: give it a signing key, a number-hash key, a master key
# and an audit key.
target/release/hub keygen --out "$work/signing-key.pem" >/dev/null
export HUB_SIGNING_KEY_FILE="$work/signing-key.pem"
target/release/hub keygen --secret --out "$work/number-hash.key" >/dev/null
export HUB_NUMBER_HASH_KEY_FILE="$work/number-hash.key"
target/release/hub keygen --secret --out "$work/master.key" >/dev/null
export HUB_MASTER_KEY_FILE="$work/master.key"
target/release/hub keygen --secret --out "$work/audit.key" >/dev/null
export HUB_AUDIT_KEY_FILE="$work/audit.key"
export HUB_METRICS_TOKEN="bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
"${HUB_BIN:-target/release/hub}" serve --listen "$listen" >"$work/hub.log" 2>&1 &
hub_pid=$!
for _ in $(seq 100); do
    curl -fs "http://${listen}/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
# HUB_BENCH_PERF=file: sample the hub's CPU with perf for the whole run (`perf report -i file`).
if [[ -n "${HUB_BENCH_PERF:-}" ]]; then
    perf record -F 499 -o "$HUB_BENCH_PERF" -p "$hub_pid" >/dev/null 2>&1 &
    perf_pid=$!
fi
# The PostgreSQL mode writes no bootstrap token: mint the retailer ADMIN's.
target/release/hub token create --org "${HUB_RETAILER_NAME:-Retailer}" --role ADMIN >"$work/admin.token"
