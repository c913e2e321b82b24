"""The benchmark script (bench/benchmark.py) end to end on its smallest size.

The figures themselves are measured by hand on a quiet machine (BENCHMARKS.md); this test
proves the script that produces them runs every stage and reports what it claims: yardstick
ratios, the Parquet/CSV ratios and the floor's parts, counted on the same files.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["read_csv", "read_parquet", "ingest", "ingest_parquet", "train", "score", "score_parquet", "floor",
          "read_csv_end"]


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    data = tmp_path_factory.mktemp("bench")
    results = data / "results.jsonl"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "benchmark.py"), "--data", str(data), "--sizes", "smoke",
         "--train", "smoke", "--stages", *STAGES, "--results", str(results)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = {r["stage"]: r for r in map(json.loads, results.read_text().splitlines())}
    return data, records


def test_every_stage_ran_without_error(bench_run):
    _, records = bench_run
    assert list(records) == STAGES
    for stage, rec in records.items():
        assert "error" not in rec, (stage, rec.get("error"))
        assert rec["seconds"] > 0 and rec["peak_rss_mb"] > 0


def test_ratios_are_against_the_same_runs_yardsticks(bench_run):
    _, r = bench_run
    assert r["ingest"]["x_read"] == pytest.approx(r["ingest"]["seconds"] / r["read_csv"]["seconds"])
    assert r["score"]["x_read"] == pytest.approx(r["score"]["seconds"] / r["read_csv"]["seconds"])
    assert r["ingest_parquet"]["x_read"] == pytest.approx(r["ingest_parquet"]["seconds"] / r["read_parquet"]["seconds"])
    assert r["ingest_parquet"]["csv_over_parquet"] == pytest.approx(r["ingest"]["seconds"] / r["ingest_parquet"]["seconds"])
    assert r["score_parquet"]["csv_over_parquet"] == pytest.approx(r["score"]["seconds"] / r["score_parquet"]["seconds"])


def test_floor_counts_the_same_file_and_customers(bench_run):
    data, r = bench_run
    with open(data / "smoke" / "orders.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    floor = r["floor"]
    assert floor["rows"] == len(rows)  # every data row parsed
    assert floor["customers"] == len({row["customer_id"] for row in rows})  # grouped by the exact id text
    assert floor["scored"] == r["score"]["customers"]  # predicted and explained: the customers score scored
    parts = floor["parts"]
    assert set(parts) == {"parse", "dates", "amounts", "group", "predict", "explain", "write"}
    assert floor["seconds"] == pytest.approx(sum(p["wall"] for p in parts.values()))
    assert floor["cpu_seconds"] == pytest.approx(sum(p["cpu"] for p in parts.values()))
    assert floor["max_csv_over_parquet"] == pytest.approx(
        floor["seconds"] / (floor["read_parquet_arrow"] + floor["seconds"] - parts["parse"]["wall"]))
    assert floor["parse_over_parquet_read"] == pytest.approx(parts["parse"]["wall"] / floor["read_parquet_arrow"])


def test_parquet_copy_is_typed_and_keeps_every_row(bench_run):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data, _ = bench_run
    table = pq.read_table(data / "smoke" / "orders.parquet")
    with open(data / "smoke" / "orders.csv", newline="") as fh:
        ids = [row["order_id"] for row in csv.DictReader(fh)]
    assert table["order_id"].to_pylist() == ids  # ids stay text, leading zeros kept
    assert pa.types.is_timestamp(table.schema.field("order_date").type)
    assert pa.types.is_floating(table.schema.field("amount").type)


def test_repeat_reports_the_fastest_run_and_every_run(bench_run):
    data, _ = bench_run
    results = data / "repeat.jsonl"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "benchmark.py"), "--data", str(data), "--sizes", "smoke",
         "--stages", "read_csv", "ingest", "--repeat", "2", "--results", str(results)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = {r["stage"]: r for r in map(json.loads, results.read_text().splitlines())}
    for rec in records.values():
        assert len(rec["seconds_all"]) == 2 and rec["seconds"] == min(rec["seconds_all"])
    assert records["ingest"]["x_read"] == pytest.approx(records["ingest"]["seconds"] / records["read_csv"]["seconds"])
    bad = subprocess.run([sys.executable, str(ROOT / "bench" / "benchmark.py"), "--repeat", "0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--repeat must be at least 1" in bad.stderr
