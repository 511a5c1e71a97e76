"""Runs one SQL statement in DuckDB over the generated transactions (view
`t`) and prints the result.

usage: duckdb_query.py DATA_DIR SQL
"""
import sys

import duckdb

data, sql = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{data}/transactions/*.parquet')")
print(con.execute(sql).fetchall())
