"""The RFM pipeline in Polars (lazy): metrics per customer, NTILE-like
quintile scores and the default 11-segment map, written to Parquet.

usage: polars_rfm.py DATA_DIR OUT.parquet
"""
import datetime
import sys

import polars as pl

data, out = sys.argv[1], sys.argv[2]
as_of = datetime.date(2025, 1, 1)
lines = (
    pl.scan_parquet(f"{data}/transactions/*.parquet")
    .filter(pl.col("customer_id").is_not_null())
    .with_columns(pl.col("order_ts").dt.date().alias("day"))
    .filter(pl.col("day") <= as_of)
)
buy = pl.col("amount") >= 0
metrics = lines.group_by("customer_id").agg(
    (pl.lit(as_of) - pl.col("day").filter(buy).max()).dt.total_days().alias("recency_days"),
    pl.col("order_id").filter(buy).n_unique().alias("frequency"),
    pl.col("amount").sum().alias("monetary"),
).filter(pl.col("recency_days").is_not_null())


def ntile(expr, n=5):
    # NTILE(5): rows in order, split into 5 buckets of near-equal size.
    return ((expr.rank("ordinal") - 1) * n // pl.len() + 1).cast(pl.Int32)


r, f, m = pl.col("r"), pl.col("f"), pl.col("m")
segment = (
    pl.when((r == 1) & (f <= 2) & (m <= 2)).then(pl.lit("Lost"))
    .when((r <= 2) & (f <= 2)).then(pl.lit("Hibernating"))
    .when((r <= 2) & (f <= 4)).then(pl.lit("At Risk"))
    .when((r <= 2) & (f == 5)).then(pl.lit("Can't Lose Them"))
    .when((r == 3) & (f <= 2)).then(pl.lit("About To Sleep"))
    .when((r == 3) & (f == 3)).then(pl.lit("Need Attention"))
    .when((r <= 4) & (f >= 4)).then(pl.lit("Loyal Customers"))
    .when((r == 4) & (f == 1)).then(pl.lit("Promising"))
    .when((r == 5) & (f == 1)).then(pl.lit("New Customers"))
    .when((r >= 4) & f.is_between(2, 3)).then(pl.lit("Potential Loyalists"))
    .when((r == 5) & (f >= 4)).then(pl.lit("Champions"))
    .otherwise(pl.lit("Other"))
)
(
    metrics.with_columns(
        ntile(-pl.col("recency_days")).alias("r"),
        ntile(pl.col("frequency")).alias("f"),
        ntile(pl.col("monetary")).alias("m"),
    )
    .with_columns(segment.alias("segment"))
    .sink_parquet(out)
)
