#!/usr/bin/env bash
# The benchmark: our RFM pipeline, scan floor and association pairs against
# DuckDB and Polars on the same generated Parquet files, whole processes,
# median of 3 runs with peak memory.
#
# usage: scripts/bench.sh [1m] [10m] [100m]      (default: 1m 10m)
# Environment: BENCH_DIR (default /var/tmp/rfm-bench) holds the data,
# RUNS (default 3), MEMORY_LIMIT (e.g. 2g) adds runs under a memory limit.
# DuckDB and Polars are installed from PyPI into a virtual environment under
# ~/.cache/datafusion-rfm/bench-venv on the first run.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${XDG_CACHE_HOME:-$HOME/.cache}/datafusion-rfm/bench-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import duckdb, polars' 2>/dev/null; then
    echo "== installing duckdb and polars into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'duckdb==1.*' 'polars==1.*'
fi
cargo build --release --locked --bin rfm >&2
target="${CARGO_TARGET_DIR:-target}"
data="${BENCH_DIR:-/var/tmp/rfm-bench}"
mkdir -p "$data"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB;" \
    "duckdb $("$venv/bin/python" -c 'import duckdb; print(duckdb.__version__)')," \
    "polars $("$venv/bin/python" -c 'import polars; print(polars.__version__)')"
"$venv/bin/python" scripts/bench/run.py "$target/release/rfm" "$venv/bin/python" "$data" "$@"
