"""Peak memory and time of ``ingest.load_orders`` on large canonical orders files.

Builds the files once from the sample generator (a base history of ``--base-customers``
customers, repeated with suffixed order and customer ids until ``--rows`` rows are written),
then loads each in a fresh subprocess and reports its peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) next to the file size.

    .venv/bin/python bench/ingest_memory.py --rows 1000000 --rows 10000000 --work /some/scratch

Heavy (10M rows is about 1.3 GB of CSV): run it by hand, not in the test suite.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from churnctl import ingest
from churnctl.config import IngestConfig
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
got = ingest.load_orders([sys.argv[1]], IngestConfig(block_kb=int(sys.argv[2])))
took = time.perf_counter() - t
s = got.stats[0]
print(json.dumps({"seconds": round(took, 1), "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append", help="file sizes in rows (repeatable)")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for the big files")
    parser.add_argument("--base-customers", type=int, default=20000)
    parser.add_argument("--block-kb", type=int, default=16384)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print("| rows | CSV size (MB) | peak RSS (MB) | RSS after imports (MB) | accepted frame (MB) | seconds |")
    print("|---:|---:|---:|---:|---:|---:|")
    for rows in args.rows or [1_000_000]:
        path = args.work / f"orders_{rows}.csv"
        t = time.perf_counter()
        build(path, rows, args.base_customers)
        built = time.perf_counter() - t
        out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(args.block_kb)], check=True,
                             capture_output=True, text=True)
        m = json.loads(out.stdout.strip().splitlines()[-1])
        size = path.stat().st_size / 2**20
        print(f"| {m['read']:,} | {size:,.0f} | {m['peak_kb'] / 1024:,.0f} | {m['base_kb'] / 1024:,.0f} | "
              f"{m['frame_mb']:,} | {m['seconds']} |", flush=True)
        print(f"<!-- built in {built:.0f}s; accepted {m['accepted']:,}, rejected {m['rejected']:,}, "
              f"collapsed {m['collapsed']:,} -->", flush=True)


if __name__ == "__main__":
    main()
