#!/usr/bin/env bash
# Installs the system packages the build and the tests need, when missing, and starts pcscd.
#
# - postgresql-client, redis-tools: the test script talks to the servers (the encryption tests read
#   pg_dump); redis-server: the Redis-outage tests start private servers of their own;
# - libpcsclite-dev, pkgconf: the reader agent links libpcsclite (PC/SC);
# - pcscd, vsmartcard-vpcd: the reader-agent tests run a virtual card behind a real pcscd, on the virtual
#   reader driver vpcd ("Virtual PCD 00 00", TCP 35963, loopback tests only);
# - chromium, chromium-driver: the /checkout and /ops pages are tested in headless Chromium.
# Packages come from Debian (apt-get, as root or through sudo). Nothing is installed when all are there.
set -euo pipefail

say() { printf '[system-deps] %s\n' "$*" >&2; }
if [ "$(id -u)" = 0 ]; then as_root=(); else as_root=(sudo); fi
pcscd_running() {
  if command -v pidof >/dev/null 2>&1; then pidof pcscd >/dev/null 2>&1
  elif command -v pgrep >/dev/null 2>&1; then pgrep -x pcscd >/dev/null 2>&1
  else [ -S /run/pcscd/pcscd.comm ]; fi
}

need_packages=()
{ command -v psql && command -v pg_dump; } >/dev/null 2>&1 || need_packages+=(postgresql-client)
command -v redis-cli >/dev/null 2>&1 || need_packages+=(redis-tools)
command -v redis-server >/dev/null 2>&1 || need_packages+=(redis-server)
command -v pkg-config >/dev/null 2>&1 || need_packages+=(pkgconf)
{ command -v pkg-config >/dev/null 2>&1 && pkg-config --exists libpcsclite; } || need_packages+=(libpcsclite-dev)
command -v pcscd >/dev/null 2>&1 || [ -x /usr/sbin/pcscd ] || need_packages+=(pcscd)
{ [ -e /etc/reader.conf.d/vpcd ] && [ -e /usr/lib/pcsc/drivers/serial/libifdvpcd.so ]; } || need_packages+=(vsmartcard-vpcd)
# The pages' tests drive Debian's headless Chromium through its WebDriver (chromedriver).
[ -x /usr/bin/chromium ] || need_packages+=(chromium)
[ -x /usr/bin/chromedriver ] || need_packages+=(chromium-driver)
if [ ${#need_packages[@]} -gt 0 ]; then
  say "installing ${need_packages[*]}"
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_packages[@]}"
  # A pcscd that the packages' scripts started may predate vpcd's reader configuration: restart it.
  if pcscd_running; then
    say "restarting pcscd to load the virtual reader driver"
    "${as_root[@]}" kill "$(pidof pcscd 2>/dev/null || pgrep -x pcscd)" || true
    for _ in $(seq 1 50); do pcscd_running || break; sleep 0.1; done
  fi
fi

# pcscd, without systemd: it daemonizes itself and is ready when its socket exists. One pcscd serves the
# whole run (the tests that use its virtual reader take turns).
if ! pcscd_running; then
  say "starting pcscd"
  "${as_root[@]}" /usr/sbin/pcscd
fi
for _ in $(seq 1 50); do [ -S /run/pcscd/pcscd.comm ] && break; sleep 0.2; done
[ -S /run/pcscd/pcscd.comm ] || { say "pcscd did not come up (/run/pcscd/pcscd.comm is missing)"; exit 1; }
