#!/usr/bin/env bash
# Rebuilds the compact samples in data/ from the full public data sets in
# ../shared/data (see data/README.md). Needs a built `rfm` binary; run from the
# repository root: scripts/make-samples.sh [path/to/rfm]
set -euo pipefail

rfm=${1:-target/debug/rfm}
src=${SHARED_DATA:-../shared/data}

# CDNOW master log: whitespace-separated text with a header line -> Parquet.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
awk 'NR > 1 && NF == 4 {
       printf "%d,%s-%s-%s,%d,%s\n", $1, substr($2, 1, 4), substr($2, 5, 2),
              substr($2, 7, 2), $3, $4
     }' "$src/cdnow/CDNOW_master.txt" |
  { echo "customer_id,order_date,cds,amount"; cat; } > "$tmp/cdnow.csv"
"$rfm" sql -t c="$tmp/cdnow.csv" "
  COPY (SELECT CAST(customer_id AS INT) AS customer_id,
               CAST(order_date AS DATE) AS order_date,
               CAST(cds AS INT) AS cds,
               CAST(amount AS DOUBLE) AS amount
        FROM c ORDER BY customer_id, order_date)
  TO 'data/cdnow/cdnow_master.parquet' STORED AS PARQUET
  OPTIONS (compression 'zstd(9)')"

# Complete Journey grocery panel: every household whose id is divisible by 8,
# all of its 2017 lines, and the products those lines name.
cj="$src/completejourney"
"$rfm" sql -t t="$cj/transactions.parquet" -t p="$cj/products.parquet" "
  COPY (SELECT household_id, store_id, basket_id, product_id, quantity,
               sales_value, retail_disc, coupon_disc, week, transaction_timestamp
        FROM t WHERE household_id % 8 = 0
        ORDER BY transaction_timestamp, basket_id, product_id)
  TO 'data/completejourney/transactions.parquet' STORED AS PARQUET
  OPTIONS (compression 'zstd(9)');
  COPY (SELECT p.product_id, p.manufacturer_id,
               CAST(p.department AS VARCHAR) AS department,
               CAST(p.brand AS VARCHAR) AS brand,
               CAST(p.product_category AS VARCHAR) AS product_category,
               CAST(p.product_type AS VARCHAR) AS product_type,
               CAST(p.package_size AS VARCHAR) AS package_size
        FROM p WHERE p.product_id IN
          (SELECT product_id FROM t WHERE household_id % 8 = 0)
        ORDER BY p.product_id)
  TO 'data/completejourney/products.parquet' STORED AS PARQUET
  OPTIONS (compression 'zstd(9)')"

# A small CSV cut of CDNOW for the CSV input tests: the first 200 customers.
"$rfm" sql -t c=data/cdnow/cdnow_master.parquet --format csv \
  --output data/cdnow/cdnow_first200.csv \
  "SELECT * FROM c WHERE customer_id <= 200 ORDER BY customer_id, order_date"
