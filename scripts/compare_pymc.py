#!/usr/bin/env python3
"""Compares `rfm_customers(..., 'preset=pymc')` with PyMC-Marketing's own
`rfm_segments` on the CDNOW log, customer by customer.

Usage (from the repository root, after `cargo build`):
    python3 -m venv /tmp/pymc-venv && /tmp/pymc-venv/bin/pip install pymc-marketing
    /tmp/pymc-venv/bin/python scripts/compare_pymc.py [path/to/rfm]

Prints how many customers agree on each of frequency, recency, monetary value,
RFM code and segment, and exits 1 when any differ.
"""
import os
import subprocess
import sys
import tempfile
import warnings

import pandas as pd
from pymc_marketing.clv.utils import rfm_segments

RFM = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
    "RFM", os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "debug", "rfm"))
AS_OF = "1998-07-01"


def run(args):
    subprocess.run([RFM, *args], check=True, stdout=subprocess.DEVNULL)


with tempfile.TemporaryDirectory() as tmp:
    log = os.path.join(tmp, "cdnow.csv")
    ours = os.path.join(tmp, "ours.csv")
    run(["sql", "-t", "c=data/cdnow/cdnow_master.parquet", "--format", "csv", "-o", log,
         "SELECT * FROM c"])
    run(["sql", "-t", "cdnow=data/cdnow/cdnow_master.parquet", "--format", "csv", "-o", ours,
         f"SELECT customer_id, frequency, recency_days, monetary, rfm_code, segment "
         f"FROM rfm_customers('cdnow', 'customer_id', 'order_date', 'amount', '{AS_OF}', "
         f"'preset=pymc')"])
    transactions = pd.read_csv(log, parse_dates=["order_date"])
    mine = pd.read_csv(ours, dtype={"rfm_code": str}).set_index("customer_id")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    theirs = rfm_segments(transactions, "customer_id", "order_date", "amount",
                          observation_period_end=AS_OF).set_index("customer_id")

both = mine.merge(theirs, how="inner", left_index=True, right_index=True,
                  suffixes=("", "_pymc"))
checks = {
    "frequency": both["frequency"] == both["frequency_pymc"],
    "recency": both["recency_days"] == both["recency"],
    "monetary": (both["monetary"] - both["monetary_value"]).abs() < 1e-9,
    "rfm code": both["rfm_code"] == both["rfm_score"].astype(str),
    "segment": both["segment"] == both["segment_pymc"],
}
print(f"customers: ours {len(mine)}, PyMC-Marketing {len(theirs)}, joined {len(both)}")
failed = len(mine) != len(theirs) or len(both) != len(mine)
for name, same in checks.items():
    print(f"{name:10} agree for {int(same.sum())} of {len(both)}")
    failed |= not bool(same.all())
print("segments (ours):")
print(mine["segment"].value_counts().to_string())
sys.exit(1 if failed else 0)
