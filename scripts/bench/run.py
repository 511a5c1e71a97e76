"""Times whole processes on the same generated files and prints a table.

For each size it generates the data once (rfm generate, seed 42), then runs
every task RUNS times (default 3) and reports the median wall time and the
median peak resident memory (from wait4), with ratios against our runs.

usage: run.py RFM_BINARY PYTHON DATA_ROOT SIZE [SIZE ...]
SIZE: 1m, 10m, 100m (rows; customers are a tenth of the rows).
Environment: RUNS (default 3), MEMORY_LIMIT (e.g. 2g: also runs the pipeline
under that memory limit, ours and DuckDB's), TASKS (a comma list of pipeline,
scan, pairs; default all).
"""
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RUNS = int(os.environ.get("RUNS", "3"))
SIZES = {"1m": 1_000_000, "10m": 10_000_000, "100m": 100_000_000}

# Every value of the columns the pipeline reads; the filter keeps engines from
# answering from Parquet statistics.
SCAN = ("SELECT sum(customer_id % 7), sum(order_id % 7), "
        "max(order_ts) FILTER (WHERE amount > -1e18), sum(amount) FROM t")
MIN_PAIR = 50


def measure(cmd):
    """Wall seconds and peak RSS in MiB of one run of cmd."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err}")
    return wall, usage.ru_maxrss / 1024


def median_run(cmd, cleanup=None):
    walls, mems = [], []
    for _ in range(RUNS):
        if cleanup:
            cleanup()
        wall, mem = measure(cmd)
        walls.append(wall)
        mems.append(mem)
    return statistics.median(walls), statistics.median(mems)


def main():
    rfm, python, root = sys.argv[1], sys.argv[2], sys.argv[3]
    sizes = sys.argv[4:] or ["1m", "10m"]
    limit = os.environ.get("MEMORY_LIMIT")
    rows_out = []
    for size in sizes:
        rows = SIZES[size]
        data = os.path.join(root, size)
        if not os.path.isdir(os.path.join(data, "transactions")):
            print(f"generating {size} rows into {data}", file=sys.stderr)
            wall, _ = measure([rfm, "generate", "--rows", str(rows),
                               "--customers", str(rows // 10),
                               "--products", "20000", "-o", data])
            print(f"  generated in {wall:.1f} s", file=sys.stderr)
        out = os.path.join(root, f"out-{size}")
        os.makedirs(out, exist_ok=True)
        out_file = os.path.join(out, "customers.parquet")

        def clean():
            if os.path.exists(out_file):
                os.remove(out_file)

        report = [rfm, "report", "-i", f"{data}/transactions/", "--ts", "order_ts",
                  "--order-id", "order_id", "--as-of", "2025-01-01", "-o", out_file]
        pairs_sql = (f"SELECT count(*) FROM association_rules('t', 'order_id', "
                     f"'product_id', 'min_count={MIN_PAIR}, min_confidence=0')")
        duck_pairs = (
            "WITH b AS (SELECT DISTINCT order_id, product_id FROM t) "
            "SELECT count(*) FROM (SELECT x.product_id, y.product_id FROM b x "
            "JOIN b y ON x.order_id = y.order_id AND x.product_id <> y.product_id "
            f"GROUP BY 1, 2 HAVING count(*) >= {MIN_PAIR})")
        tasks = [
            ("rfm pipeline", "ours (ntile)", report + ["--method", "ntile"]),
            ("rfm pipeline", "ours (quantile, tie-safe)", report),
            ("rfm pipeline", "duckdb", [python, f"{HERE}/duckdb_rfm.py", data, out_file]),
            ("rfm pipeline", "polars", [python, f"{HERE}/polars_rfm.py", data, out_file]),
            ("scan floor", "ours", [rfm, "sql", "-t", f"t={data}/transactions/", SCAN]),
            ("scan floor", "duckdb", [python, f"{HERE}/duckdb_query.py", data, SCAN]),
            ("association pairs", "ours",
             [rfm, "sql", "-t", f"t={data}/transactions/", pairs_sql]),
            ("association pairs", "duckdb",
             [python, f"{HERE}/duckdb_query.py", data, duck_pairs]),
        ]
        if limit:
            tasks += [
                ("rfm pipeline, limit " + limit, "ours (ntile)",
                 report + ["--method", "ntile", "--memory-limit", limit]),
                ("rfm pipeline, limit " + limit, "duckdb",
                 [python, f"{HERE}/duckdb_rfm.py", data, out_file, limit.upper() + "B"]),
            ]
        wanted = os.environ.get("TASKS", "pipeline,scan,pairs").split(",")
        keys = {"rfm": "pipeline", "sca": "scan", "ass": "pairs"}
        tasks = [t for t in tasks if keys[t[0][:3]] in wanted]
        for task, who, cmd in tasks:
            print(f"{size} {task}: {who}", file=sys.stderr)
            wall, mem = median_run(cmd, clean)
            rows_out.append((size, task, who, wall, mem))
        shutil.rmtree(out, ignore_errors=True)

    print(f"| rows | task | engine | wall s (median of {RUNS}) | peak MiB "
          "| wall vs ours | memory vs ours |")
    print("|---|---|---|---|---|---|---|")
    for size, task, who, wall, mem in rows_out:
        ours = next(r for r in rows_out if r[0] == size and r[1] == task)
        print(f"| {size} | {task} | {who} | {wall:.2f} | {mem:.0f} | "
              f"{wall / ours[3]:.2f} | {mem / ours[4]:.2f} |")


if __name__ == "__main__":
    main()
