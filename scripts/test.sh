#!/usr/bin/env bash
# The project's test command: installs the S3-compatible server the
# object-store tests start on 127.0.0.1 (moto, from PyPI, into a virtual
# environment outside the clone), then runs `cargo test` with any extra
# arguments. A second run reuses the environment.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${RFM_TEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/datafusion-rfm/test-venv}"
if [ ! -x "$venv/bin/moto_server" ]; then
    echo "== installing moto[server] into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.*'
fi
export RFM_MOTO_SERVER="$venv/bin/moto_server"

cargo test --locked "$@"
