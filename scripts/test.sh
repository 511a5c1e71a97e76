#!/usr/bin/env bash
# The project's test command: installs the storage servers the object-store
# tests start on 127.0.0.1 (moto, an S3-compatible server from PyPI, in a
# virtual environment; Azurite, Azure's blob emulator from npm), then runs
# `cargo test` with any extra arguments. Both live outside the clone, under
# ~/.cache/datafusion-rfm, so a second run reuses them.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${XDG_CACHE_HOME:-$HOME/.cache}/datafusion-rfm"
venv="${RFM_TEST_VENV:-$cache/test-venv}"
if [ ! -x "$venv/bin/moto_server" ]; then
    echo "== installing moto[server] into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.*'
fi
azurite="$cache/azurite"
if [ ! -x "$azurite/node_modules/.bin/azurite-blob" ]; then
    echo "== installing azurite into $azurite" >&2
    mkdir -p "$azurite"
    npm install --silent --no-audit --no-fund --prefix "$azurite" azurite@3.35.0 >&2
fi
export RFM_MOTO_SERVER="$venv/bin/moto_server"
export RFM_AZURITE="$azurite/node_modules/.bin/azurite-blob"

cargo test --locked "$@"
