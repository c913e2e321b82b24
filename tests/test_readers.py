"""Reading any export as it is: encodings, delimiters, compression, Parquet, messy files, blocks."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churnctl import ingest, readers
from churnctl.config import IngestConfig
from churnctl.errors import InputError

EXPORTS = Path(__file__).parent / "fixtures" / "exports"
CFG = IngestConfig(fx_rates={"USD": 1.0, "EUR": 1.5, "GBP": 1.25})


def load(paths, **kw) -> ingest.Loaded:
    got = ingest.load_orders(paths if isinstance(paths, list) else [paths], kw.pop("config", CFG), **kw)
    for s in got.stats:
        assert s.read == s.accepted + s.rejected + s.collapsed, s
        assert sum(s.rejected_by_reason.values()) == s.rejected
    assert sum(s.rejected for s in got.stats) == len(got.rejects)
    return got


def test_utf16_excel_unicode_text_equals_the_utf8_file():
    plain = load(EXPORTS / "shopify_orders.csv")
    unicode = load(EXPORTS / "shopify_orders_unicode.txt")
    assert unicode.stats[0].encoding == "utf-16" and unicode.stats[0].delimiter == "\t"
    cols = ["order_id", "customer_id", "order_date", "amount", "status", "items"]
    pd.testing.assert_frame_equal(plain.frame[cols], unicode.frame[cols])


def test_cp1252_file_is_read_with_a_warning(caplog):
    with caplog.at_level("WARNING", logger="churnctl"):
        got = load(EXPORTS / "messy_cp1252.csv")
    assert got.frame["first_name"].tolist() == ["Zoë", "Jürgen"]
    assert got.frame["category"].tolist() == ["Café", "Bücher – neu"]
    assert got.stats[0].encoding == "cp1252"
    assert "messy_cp1252.csv: not UTF-8: read as Windows-1252" in caplog.text


def test_utf8_turning_bad_after_the_first_block_is_reread(tmp_path):
    path = tmp_path / "late.csv"
    body = "".join(f"o{i},c{i},2024-01-01,1,x\n" for i in range(3000))
    path.write_bytes(("order_id,customer_id,order_date,amount,category\n" + body).encode()
                     + "o-last,c1,2024-01-02,2,Café\n".encode("cp1252"))
    got = load(path, config=IngestConfig(fx_rates=CFG.fx_rates, block_kb=16))  # 16 KiB blocks
    assert got.stats[0].encoding == "cp1252" and got.stats[0].accepted == 3001
    assert got.frame["category"].iloc[-1] == "Café"


def test_bom_semicolon_and_empty_lines_and_repeated_header():
    got = load(EXPORTS / "messy_empty_lines_dup_header.csv")
    s = got.stats[0]
    # blank and ",,," lines are not records; the repeated header is skipped and counted;
    # E-1 appears twice: the later one wins, the earlier is collapsed
    assert (s.read, s.accepted, s.rejected, s.collapsed, s.skipped) == (3, 2, 0, 1, 1)
    assert sorted(got.frame["order_id"]) == ["E-1", "E-2"]


def test_broken_quoting_rejects_the_record_that_swallowed_others():
    got = load(EXPORTS / "messy_broken_quoting.csv")
    assert got.frame["order_id"].tolist() == ["Q-1", "Q-2"]
    assert got.rejects[["line", "reason"]].values.tolist() == [[4, "broken quoting"]]
    assert got.frame["category"].tolist() == ["toys", 'broken quote" here"']


def test_quoted_newlines_in_address_fields_are_kept():
    got = load(EXPORTS / "shopify_orders.csv")
    assert got.stats[0].rejected == 0  # "1 Main St\nFlat 2" is a value, not a broken quote


def test_mixed_date_formats_are_never_guessed():
    got = load(EXPORTS / "messy_mixed_dates.csv")
    assert got.frame["order_id"].tolist() == ["D-1", "D-3"]
    assert got.rejects[["line", "column", "reason"]].values.tolist() == [
        [3, "order_date", "unparsable date"], [5, "order_date", "unparsable date"]]


def test_trailing_summary_row_of_a_canonical_file_is_rejected_not_lost():
    got = load(EXPORTS / "messy_trailing_summary.csv")
    assert got.rejects[["line", "column", "reason"]].values.tolist() == [[4, "customer_id", "missing value"]]


@pytest.mark.parametrize("pack", ["gzip", "zip"])
def test_compressed_files(tmp_path, pack):
    text = (EXPORTS / "amazon_orders.txt").read_bytes()
    if pack == "gzip":
        path = tmp_path / "amazon.txt.gz"
        path.write_bytes(gzip.compress(text))
    else:
        path = tmp_path / "amazon.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("report.txt", text)
    got = load(path)
    assert got.stats[0].format == f"csv+{pack}" and got.stats[0].preset == "amazon"
    assert sorted(got.frame["order_id"]) == ["026-2222222-2222222", "302-1111111-1111111"]


def test_zip_with_several_members_is_refused(tmp_path):
    path = tmp_path / "two.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.csv", "x")
        zf.writestr("b.csv", "y")
    with pytest.raises(InputError, match=r"two.zip: zip archive must hold exactly one file, it holds 2"):
        load(path)


def test_parquet(tmp_path):
    path = tmp_path / "orders.parquet"
    table = pa.table({
        "order_id": ["p1", "p2", "p3"], "customer_id": ["007", "c2", "c3"],
        "order_date": pa.array([pd.Timestamp("2024-01-01 10:00"), pd.Timestamp("2024-01-02"), None],
                               type=pa.timestamp("us")),
        "amount": [10.5, 3.0, 1.0], "currency": ["EUR", None, "USD"],
    })
    pq.write_table(table, path)
    got = load(path)
    assert got.stats[0].format == "parquet"
    assert got.frame["customer_id"].tolist() == ["007", "c2"]
    assert got.frame["amount"].tolist() == [15.75, 3.0]
    assert got.frame["order_date"].tolist() == [pd.Timestamp("2024-01-01 10:00"), pd.Timestamp("2024-01-02")]
    assert got.rejects[["line", "column", "reason"]].values.tolist() == [[3, "order_date", "missing value"]]


def test_small_blocks_give_the_same_answer_and_line_numbers(tmp_path):
    """Line items split across read blocks still collapse to one order; lines stay exact."""
    rows = []
    for i in range(400):
        rows.append(f"#{i},u{i % 37}@x.org,paid,EUR,{i}.50,2024-01-0{1 + i % 9} 10:00:00 +0000,1")
        rows.append(f"#{i},,,,,2024-01-0{1 + i % 9} 10:00:00 +0000,2")
    rows[101] = "#50,,,,,bad-date,x"  # an unparsable quantity on a continuation row
    text = "Name,Email,Financial Status,Currency,Total,Created at,Lineitem quantity\n" + "\n".join(rows) + "\n"
    path = tmp_path / "shop.csv"
    path.write_text(text)
    small = load(path, config=IngestConfig(fx_rates=CFG.fx_rates, block_kb=16))
    big = load(path)
    pd.testing.assert_frame_equal(small.frame, big.frame)
    pd.testing.assert_frame_equal(small.rejects, big.rejects)
    assert (big.stats[0].read, big.stats[0].accepted, big.stats[0].collapsed) == (800, 399, 400)
    assert big.rejects[["line", "column", "reason"]].values.tolist() == [[102, "items", "unparsable number"]]
    assert big.frame.set_index("order_id").loc["#7", "items"] == 3.0


def test_blank_lines_above_header_and_line_numbers(tmp_path):
    path = tmp_path / "o.csv"
    path.write_text("\n\norder_id,customer_id,order_date,amount\no1,c1,2024-01-01,1\no2,c1,x,1\n")
    got = load(path)
    assert got.rejects["line"].tolist() == [5]  # physical line in the file


def test_expand_globs_and_urls(tmp_path):
    (tmp_path / "b.csv").write_text("x")
    (tmp_path / "a.csv").write_text("x")
    assert readers.expand([str(tmp_path / "*.csv"), "sqlite:///x.db#orders"]) == [
        str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "sqlite:///x.db#orders"]
    with pytest.raises(InputError, match=r"nothing\*.csv: no orders file matches this pattern"):
        readers.expand([str(tmp_path / "nothing*.csv")])
    assert readers.display_name("postgresql+psycopg://u:secret@h/db#orders") == \
        "postgresql+psycopg://u:***@h/db#orders"


def test_typed_parquet_and_csv_copies_agree(tmp_path):
    """Typed Parquet columns are validated without text: same frame, rejects and counts as CSV."""
    csv = tmp_path / "orders.csv"
    csv.write_text(
        "order_id,customer_id,order_date,amount,currency,status,channel,discount_amount,review_score,items\n"
        "0001,C1,2024-01-01T10:00:00Z,10.5,EUR,completed,Web,1.25,5,2\n"
        "0002,c1,2024-01-02T11:30:00Z,-3,USD,refunded,shop,,,1\n"  # negative amount
        "0003,C2,,7,usd,completed,web,0,4,1\n"  # missing date
        "0004,C3,1850-06-01T00:00:00Z,7,USD,completed,web,0,4,1\n"  # out of range
        "0005,C3,2024-03-01T08:00:00Z,,GBP,cancelled,web,0,,3\n"  # missing amount
        "0006,C4,2024-03-02T08:00:00Z,8,USD,completed,web,0,7,1\n"  # review out of range
        "0001,C1,2024-01-01T10:00:00Z,12,EUR,returned,web,0,3,2\n"  # later version of 0001
        "0007,C5,2024-03-03T09:15:00Z,2.5,XXX,completed,web,0,2,1\n"  # unknown currency
        "0008,C5,2024-03-04T09:15:00Z,4,USD,completed,web,-1,2,1\n"  # negative discount
        "0009,C6,2024-03-05T10:00:00+02:00,3,GBP,completed,Amazon,0,1,1\n"
        "0010,c6,2024-03-06,4.25,USD,payment_failed,web,0.5,,\n"
    )
    table = pa.table({
        "order_id": ["0001", "0002", "0003", "0004", "0005", "0006", "0001", "0007", "0008", "0009", "0010"],
        "customer_id": ["C1", "c1", "C2", "C3", "C3", "C4", "C1", "C5", "C5", "C6", "c6"],
        "order_date": pa.array([pd.Timestamp(t, tz="UTC") if t else None for t in (
            "2024-01-01 10:00", "2024-01-02 11:30", None, "1850-06-01", "2024-03-01 08:00", "2024-03-02 08:00",
            "2024-01-01 10:00", "2024-03-03 09:15", "2024-03-04 09:15", "2024-03-05 08:00", "2024-03-06")],
            type=pa.timestamp("us", tz="UTC")),
        "amount": pa.array([10.5, -3, 7, 7, None, 8, 12, 2.5, 4, 3, 4.25], type=pa.float64()),
        "currency": ["EUR", "USD", "usd", "USD", "GBP", "USD", "EUR", "XXX", "USD", "GBP", "USD"],
        "status": ["completed", "refunded", "completed", "completed", "cancelled", "completed", "returned",
                   "completed", "completed", "completed", "payment_failed"],
        "channel": ["Web", "shop", "web", "web", "web", "web", "web", "web", "web", "Amazon", "web"],
        "discount_amount": pa.array([1.25, None, 0, 0, 0, 0, 0, 0, -1, 0, 0.5], type=pa.float64()),
        "review_score": pa.array([5, None, 4, 4, None, 7, 3, 2, 2, 1, None], type=pa.int64()),
        "items": pa.array([2, 1, 1, 1, 3, 1, 2, 1, 1, 1, None], type=pa.int32()),
    })
    parquet = tmp_path / "orders.parquet"
    pq.write_table(table, parquet)
    a, b = load(csv), load(parquet)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert a.frame["order_id"].tolist() == ["0001", "0009", "0010"]
    assert a.frame["amount"].tolist() == [18.0, 3.75, 4.25]
    assert a.frame["order_date"].tolist() == [pd.Timestamp("2024-01-01 10:00"), pd.Timestamp("2024-03-05 08:00"),
                                              pd.Timestamp("2024-03-06")]
    assert a.frame["channel"].tolist() == ["web", "amazon", "web"] and pd.isna(a.frame["items"].iloc[2])
    key = ["column", "reason", "order_id", "amount", "review_score"]
    assert a.rejects[key].values.tolist() == b.rejects[key].values.tolist()
    assert (a.rejects["line"] - 1).tolist() == b.rejects["line"].tolist()  # CSV counts the header line
    assert sorted(a.rejects["reason"]) == sorted(["negative amount", "missing value", "out of range",
                                                  "missing value", "out of range", "unknown currency",
                                                  "negative amount"])
    same = ("read", "accepted", "rejected", "collapsed", "rejected_by_reason", "customers", "merged_customers",
            "first_date", "last_date", "currencies")
    assert [getattr(a.stats[0], k) for k in same] == [getattr(b.stats[0], k) for k in same]
    assert (a.stats[0].format, b.stats[0].format) == ("csv", "parquet")
    assert isinstance(b.frame["currency"].dtype, pd.CategoricalDtype)


# --- trimming: the quick test of whether a column needs it ------------------------------------
_PIECES = ["a", "7", "é", "中", "x y", "\u00a0", "\u3000", "\u2003", "\u1680", " ", "\t", "\u00e9\u00a0", "\u0085",
           "\u00c2", "\u00e2\u0080", "€", ""]


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_trim_equals_arrow_trim_on_every_kind_of_value(monkeypatch, compiled, seed):
    """readers.trim returns the column itself only when no value needs trimming, else Arrow's
    trim: the same text as utf8_trim_whitespace either way, by the numpy or the compiled test."""
    import numpy as np
    import pyarrow.compute as pc

    monkeypatch.setattr(readers, "COMPILED_TRIM_ROWS", 0 if compiled else 10**12)
    rng = np.random.default_rng(seed)
    clean = ["C0001", "0042", "DE", "2024-01-01T10:00:00Z", "12.50", "Ünïcödé", "中文", "€9", ""]
    for size in (1, 2, 50):
        for _ in range(40):
            values = list(rng.choice(clean, size))
            if rng.random() < 0.7:  # one value with something that may be white space at an end
                k = int(rng.integers(size))
                piece = str(rng.choice(_PIECES))
                values[k] = piece + values[k] if rng.random() < 0.5 else values[k] + piece
            column = pa.array(values, type=pa.string())
            for col in (column, column.slice(1) if size > 1 else column):
                got = readers.trim(col)
                assert got.to_pylist() == pc.utf8_trim_whitespace(col).to_pylist(), values
                if got is col:  # returned as it is: nothing needed trimming
                    assert col.to_pylist() == pc.utf8_trim_whitespace(col).to_pylist()


def test_trim_leaves_a_clean_column_untouched_and_trims_a_dirty_one(monkeypatch):
    for threshold in (0, 10**12):
        monkeypatch.setattr(readers, "COMPILED_TRIM_ROWS", threshold)
        clean = pa.array(["C1", "0007", "Zoë", "中"] * 1000)
        assert readers.trim(clean) is clean
        dirty = pa.array(["C1", "0007", "Zoë\u3000", "中"] * 1000)
        assert readers.trim(dirty).to_pylist()[2] == "Zoë"
        spaced = pa.array(["C1", " 0007", "x"])
        assert readers.trim(spaced).to_pylist() == ["C1", "0007", "x"]
