"""The RFM pipeline in DuckDB: metrics per customer, NTILE(5) scores and the
default 11-segment map as a CASE, written to Parquet.

usage: duckdb_rfm.py DATA_DIR OUT.parquet [MEMORY_LIMIT]
"""
import sys

import duckdb

data, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
if len(sys.argv) > 3:
    con.execute(f"SET memory_limit = '{sys.argv[3]}'")
con.execute(f"""
COPY (
  WITH lines AS (
    SELECT customer_id, order_id, CAST(order_ts AS DATE) AS day, amount
    FROM read_parquet('{data}/transactions/*.parquet')
    WHERE customer_id IS NOT NULL
  ),
  metrics AS (
    SELECT customer_id,
           DATE '2025-01-01' - max(day) FILTER (WHERE amount >= 0) AS recency_days,
           count(DISTINCT order_id) FILTER (WHERE amount >= 0) AS frequency,
           sum(amount) AS monetary
    FROM lines WHERE day <= DATE '2025-01-01'
    GROUP BY customer_id
  ),
  scored AS (
    SELECT *,
           ntile(5) OVER (ORDER BY recency_days DESC) AS r,
           ntile(5) OVER (ORDER BY frequency) AS f,
           ntile(5) OVER (ORDER BY monetary) AS m
    FROM metrics WHERE recency_days IS NOT NULL
  )
  SELECT *, CASE
      WHEN r = 1 AND f <= 2 AND m <= 2 THEN 'Lost'
      WHEN r <= 2 AND f <= 2 THEN 'Hibernating'
      WHEN r <= 2 AND f <= 4 THEN 'At Risk'
      WHEN r <= 2 AND f = 5 THEN 'Can''t Lose Them'
      WHEN r = 3 AND f <= 2 THEN 'About To Sleep'
      WHEN r = 3 AND f = 3 THEN 'Need Attention'
      WHEN r <= 4 AND f >= 4 THEN 'Loyal Customers'
      WHEN r = 4 AND f = 1 THEN 'Promising'
      WHEN r = 5 AND f = 1 THEN 'New Customers'
      WHEN r >= 4 AND f BETWEEN 2 AND 3 THEN 'Potential Loyalists'
      WHEN r = 5 AND f >= 4 THEN 'Champions'
      ELSE 'Other' END AS segment
  FROM scored
) TO '{out}' (FORMAT parquet)
""")
