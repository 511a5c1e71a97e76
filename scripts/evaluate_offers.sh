#!/usr/bin/env bash
# Offline evaluation of next_best_offer against a popularity baseline on the
# full Complete Journey grocery panel (sql/examples/evaluate_offers.sql).
# Usage, from the repository root after `cargo build`:
#   scripts/evaluate_offers.sh [path/to/rfm] [folder with transactions.parquet and products.parquet]
set -euo pipefail
rfm=${1:-${CARGO_TARGET_DIR:-target}/debug/rfm}
data=${2:-../shared/data/completejourney}
"$rfm" sql -t grocery="$data/transactions.parquet" -t products="$data/products.parquet" \
  -f sql/examples/evaluate_offers.sql
