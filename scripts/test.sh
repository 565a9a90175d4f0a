#!/usr/bin/env bash
# Runs every test against real PostgreSQL and Redis.
#
# PostgreSQL: HUB_TEST_POSTGRES_URL, else DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres.
# Redis:      HUB_TEST_REDIS_URL, else REDIS_URL, else redis://127.0.0.1:6379.
# Each test creates its own database named hubtest_<run>_<random>; this script drops every database of
# its run when it ends, whatever happened. Under CI=true an unreachable service is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL="${HUB_TEST_POSTGRES_URL:-${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}}"
REDIS_URL_FOR_TESTS="${HUB_TEST_REDIS_URL:-${REDIS_URL:-redis://127.0.0.1:6379}}"
RUN_ID="r$(date +%s)$$"

say() { printf '[test.sh] %s\n' "$*" >&2; }

# --- system packages and pcscd (also run by .ci/run before clippy: building pcsc needs libpcsclite) --
scripts/system-deps.sh

# --- services ---------------------------------------------------------------------------------------
pg_up() { psql "$PG_URL" -XAtqc 'SELECT 1' >/dev/null 2>&1; }
redis_up() { [ "$(redis-cli -u "$REDIS_URL_FOR_TESTS" PING 2>/dev/null)" = PONG ]; }

if ! pg_up && [[ "$PG_URL" == *127.0.0.1* || "$PG_URL" == *localhost* ]] && command -v pg_ctlcluster >/dev/null; then
  say "PostgreSQL is not answering; starting the local cluster"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
if ! redis_up && [[ "$REDIS_URL_FOR_TESTS" == *127.0.0.1* || "$REDIS_URL_FOR_TESTS" == *localhost* ]] && command -v redis-server >/dev/null; then
  say "Redis is not answering; starting a local server"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
  for _ in $(seq 1 30); do redis_up && break; sleep 1; done
fi
pg_up || { say "PostgreSQL is unreachable at $PG_URL: the suite needs it (set HUB_TEST_POSTGRES_URL)"; exit 1; }
if ! redis_up; then
  if [ "${CI:-}" = true ]; then
    say "Redis is unreachable at $REDIS_URL_FOR_TESTS and CI=true: failing rather than skipping"; exit 1
  fi
  say "Redis is unreachable at $REDIS_URL_FOR_TESTS: the tests that need it will fail"
fi

cleanup() {
  psql "$PG_URL" -XAtq -v ON_ERROR_STOP=0 <<SQL >/dev/null 2>&1 || true
SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', datname) FROM pg_database
 WHERE datname LIKE 'hubtest\_${RUN_ID}\_%' \gexec
SQL
}
trap cleanup EXIT

export HUB_TEST_POSTGRES_URL="$PG_URL" HUB_TEST_REDIS_URL="$REDIS_URL_FOR_TESTS" HUB_TEST_RUN_ID="$RUN_ID"

# --- build and run ----------------------------------------------------------------------------------
# The binaries first: end-to-end tests run the real `hub` as a process.
cargo build --workspace --bins --locked
if cargo nextest --version >/dev/null 2>&1; then
  profile=default; [ "${CI:-}" = true ] && profile=ci
  cargo nextest run --workspace --locked --profile "$profile" "$@"
else
  cargo test --workspace --locked "$@"
fi
