"""Peak memory and time of ``ingest.load_orders`` on large orders files, CSV and Parquet.

For each size, a canonical orders CSV is built once from the sample generator (a base history
of ``--base-customers`` customers, repeated with suffixed order and customer ids until
``--rows`` rows are written; ``--csv FILE`` measures an existing file instead), plus a typed
Parquet copy of it (dates as timestamps, amounts and counts as numbers: a value that does not
parse becomes null, so the Parquet copy rejects those rows as missing values instead).  Each
file is then loaded in a fresh subprocess, one at a time, which reports its wall and CPU
seconds, its peak resident memory (``ru_maxrss``), the memory after imports and the accepted
frame's size; the 1-minute load average is printed next to every figure (the machine may be
shared, so compare ratios taken under the same load).

    .venv/bin/python bench/ingest_memory.py --rows 1000000 --rows 10000000 --work /some/scratch

Heavy (10M rows is about 1.3 GB of CSV): run it by hand, not in the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from churnctl import ingest
from churnctl.config import IngestConfig
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cpu0 = time.process_time()
t = time.perf_counter()
got = ingest.load_orders([sys.argv[1]], IngestConfig(block_kb=int(sys.argv[2])))
took = time.perf_counter() - t
s = got.stats[0]
print(json.dumps({"seconds": round(took, 1), "cpu": round(time.process_time() - cpu0, 1),
                  "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "base_kb": base, "read": s.read, "accepted": s.accepted, "rejected": s.rejected,
                  "collapsed": s.collapsed, "frame_mb": round(got.frame.memory_usage(deep=True).sum() / 2**20)}))
"""


def build(path: Path, rows: int, base_customers: int) -> None:
    """Write ``rows`` canonical order rows to ``path`` (skipped when it already has them)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    from churnctl import sample

    marker = path.with_suffix(".rows")
    if path.exists() and marker.exists() and marker.read_text() == str(rows):
        return
    orders = sample.generate(base_customers, seed=3).orders
    table = pa.Table.from_pandas(orders.astype(str), preserve_index=False)
    table = table.cast(pa.schema([(f.name, pa.string()) for f in table.schema]))
    written = 0
    with pacsv.CSVWriter(str(path), table.schema) as writer:
        copy = 0
        while written < rows:
            part = table.slice(0, min(len(table), rows - written))
            suffix = f"-{copy}"
            for col in ("order_id", "customer_id"):
                i = part.schema.get_field_index(col)
                part = part.set_column(i, col, pc.binary_join_element_wise(part[col], suffix, ""))
            writer.write_table(part)
            written += len(part)
            copy += 1
    marker.write_text(str(rows))


NUMBERS = ("amount", "discount_amount", "shipping_cost", "duties_amount", "review_score")
COUNTS = ("delivery_days", "promised_days", "items")


def typed_parquet(csv: Path, out: Path) -> None:
    """Write a typed Parquet copy of canonical orders CSV ``csv`` (skipped when up to date)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if out.exists() and out.stat().st_mtime > csv.stat().st_mtime:
        return
    reader = pacsv.open_csv(str(csv), convert_options=pacsv.ConvertOptions(
        column_types={"order_id": pa.string(), "customer_id": pa.string(), "order_date": pa.string()},
        strings_can_be_null=False))
    writer = None
    for batch in reader:
        frame = batch.to_pandas()
        frame["order_date"] = pd.to_datetime(frame["order_date"], errors="coerce", utc=True, format="ISO8601")
        for col in NUMBERS + COUNTS:
            if col in frame:
                values = pd.to_numeric(frame[col], errors="coerce")
                frame[col] = values.astype("Int64") if col in COUNTS and (values.dropna() % 1 == 0).all() else values
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(str(out), table.schema)
        writer.write_table(table.cast(writer.schema))
    writer.close()


def measure(path: Path, block_kb: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(block_kb)], check=True,
                         capture_output=True, text=True)
    m = json.loads(out.stdout.strip().splitlines()[-1])
    m["load"] = os.getloadavg()[0]
    return m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append", default=[], help="file sizes in rows (repeatable)")
    parser.add_argument("--csv", type=Path, action="append", default=[], help="existing orders CSV (repeatable)")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for the big files")
    parser.add_argument("--base-customers", type=int, default=20000)
    parser.add_argument("--block-kb", type=int, default=16384)
    parser.add_argument("--no-parquet", action="store_true", help="CSV only")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    files = list(args.csv)
    for rows in args.rows or ([] if files else [1_000_000]):
        path = args.work / f"orders_{rows}.csv"
        build(path, rows, args.base_customers)
        files.append(path)
    print("| rows | format | file (MB) | seconds | CPU s | peak RSS (MB) | peak / file | RSS after imports (MB) "
          "| accepted frame (MB) | load avg |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for csv in files:
        todo = [("CSV", csv)]
        if not args.no_parquet:
            pq_path = args.work / f"{csv.stem}_{csv.stat().st_size}.typed.parquet"
            typed_parquet(csv, pq_path)
            todo.append(("Parquet", pq_path))
        for fmt, path in todo:
            m = measure(path, args.block_kb)
            size = path.stat().st_size / 2**20
            peak = m["peak_kb"] / 1024
            print(f"| {m['read']:,} | {fmt} | {size:,.0f} | {m['seconds']} | {m['cpu']} | {peak:,.0f} | "
                  f"{peak / size:.2f} | {m['base_kb'] / 1024:,.0f} | {m['frame_mb']:,} | {m['load']:.1f} |", flush=True)
            print(f"<!-- {path.name}: accepted {m['accepted']:,}, rejected {m['rejected']:,}, "
                  f"collapsed {m['collapsed']:,} -->", flush=True)


if __name__ == "__main__":
    main()
