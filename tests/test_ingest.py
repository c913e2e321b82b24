"""Ingest: known answers on tiny hand-written CSVs, rejects, de-duplication and file errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnctl import ingest
from churnctl.config import IngestConfig
from churnctl.errors import ConfigError, InputError

DATA = Path(__file__).parent / "data" / "ingest"
# Rates exact in binary floating point, so converted amounts compare with ==.
CFG = IngestConfig(fx_rates={"USD": 1.0, "EUR": 1.5, "GBP": 1.25, "JPY": 0.0078125})
HEAD = "order_id,customer_id,order_date,amount"


def write(tmp_path: Path, text: str, name: str = "orders.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def orders(tmp_path: Path, text: str, **kw) -> ingest.Loaded:
    return ingest.load_orders([write(tmp_path, text)], kw.pop("config", CFG), **kw)


def reject_of(loaded: ingest.Loaded, line: int) -> tuple[str, str]:
    row = loaded.rejects.loc[loaded.rejects["line"] == line]
    assert len(row) == 1, loaded.rejects
    return row["column"].iloc[0], row["reason"].iloc[0]


def assert_invariant(loaded: ingest.Loaded) -> None:
    for s in loaded.stats:
        assert s.read == s.accepted + s.rejected + s.collapsed, s
        assert sum(s.rejected_by_reason.values()) == s.rejected, s
    assert sum(s.accepted for s in loaded.stats) == len(loaded.frame)
    assert sum(s.rejected for s in loaded.stats) == len(loaded.rejects)


# --- orders: values -------------------------------------------------------------------------
def test_currency_conversion_exact(tmp_path):
    got = orders(tmp_path, "order_id,customer_id,order_date,amount,currency,discount_amount,"
                           "shipping_cost,duties_amount\n"
                           "o1,c1,2024-01-01,100,EUR,10,4,2\n"
                           "o2,c1,2024-01-02,80,gbp,,8,\n"
                           "o3,c2,2024-01-03,1280,JPY,128,0,0\n"
                           "o4,c2,2024-01-04,7.25,,1,,\n"
                           "o5,c3,2024-01-05,3,usd,,,\n")
    f = got.frame.set_index("order_id")
    assert f["amount"].to_dict() == {"o1": 150.0, "o2": 100.0, "o3": 10.0, "o4": 7.25, "o5": 3.0}
    assert f.loc["o1", "discount_amount"] == 15.0
    assert f.loc["o1", "shipping_cost"] == 6.0 and f.loc["o2", "shipping_cost"] == 10.0
    assert f.loc["o3", "discount_amount"] == 1.0 and f.loc["o1", "duties_amount"] == 3.0
    assert np.isnan(f.loc["o2", "discount_amount"])
    # currency keeps the code paid in, upper-cased; an empty one means the base currency
    assert f["currency"].tolist() == ["EUR", "GBP", "JPY", "USD", "USD"]
    assert f["amount"].dtype == np.float64


def test_base_currency_rate_is_one_even_if_absent(tmp_path):
    cfg = IngestConfig(fx_rates={"USD": 0.5})  # units of EUR per USD
    got = orders(tmp_path, f"{HEAD},currency\no1,c1,2024-01-01,10,EUR\no2,c1,2024-01-02,10,USD\n",
                 config=cfg, base_currency="eur")
    assert got.frame["amount"].tolist() == [10.0, 5.0]


def test_base_currency_rate_other_than_one_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"ingest.fx_rates.EUR: the base currency's rate must be 1"):
        orders(tmp_path, f"{HEAD}\no1,c1,2024-01-01,1\n", config=IngestConfig(), base_currency="EUR")


def test_dates_to_naive_utc(tmp_path):
    got = orders(tmp_path, f"{HEAD}\n"
                           "o1,c1,2024-03-01T23:30:00-05:00,1\n"
                           "o2,c1,2024-03-01,1\n"
                           "o3,c1,2024-03-01 08:15:00,1\n"
                           "o4,c1,2024-03-01T10:00:00Z,1\n"
                           "o5,c1,2024-03-01T01:00:00+02:00,1\n")
    dates = got.frame["order_date"]
    assert dates.dtype == "datetime64[ns]"
    assert dates.tolist() == [pd.Timestamp("2024-03-02 04:30"), pd.Timestamp("2024-03-01"),
                              pd.Timestamp("2024-03-01 08:15"), pd.Timestamp("2024-03-01 10:00"),
                              pd.Timestamp("2024-02-29 23:00")]


def test_ids_kept_exactly_and_values_stripped(tmp_path):
    got = orders(tmp_path, f"{HEAD},status,country,channel,notes\n"
                           "00123,AbC,2024-01-01,5,Completed,de,Web,anything\n"
                           " 0042 , c01 , 2024-01-02 , 6 , REFUNDED , fr , App ,\n")
    f = got.frame
    assert f["order_id"].tolist() == ["00123", "0042"]
    assert f["customer_id"].tolist() == ["AbC", "c01"]
    assert f["status"].tolist() == ["completed", "refunded"]
    assert f["country"].tolist() == ["DE", "FR"]
    assert f["channel"].tolist() == ["web", "app"]
    assert "notes" not in f.columns  # unknown extra columns are ignored
    assert f["order_id"].map(type).eq(str).all()


def test_optional_columns_defaults_and_absence(tmp_path):
    got = orders(tmp_path, f"{HEAD}\no1,c1,2024-01-01,5\n")
    assert list(got.frame.columns) == ["order_id", "customer_id", "order_date", "amount",
                                       "currency", "status"]
    assert got.frame.loc[0, "currency"] == "USD" and got.frame.loc[0, "status"] == "completed"
    cfg = replace(CFG, default_status="cancelled")
    got = orders(tmp_path, f"{HEAD},status\no1,c1,2024-01-01,5,\no2,c1,2024-01-01,5,returned\n",
                 config=cfg)
    assert got.frame["status"].tolist() == ["cancelled", "returned"]


def test_numeric_optional_columns_are_float(tmp_path):
    got = orders(tmp_path, f"{HEAD},delivery_days,promised_days,review_score,items,category\n"
                           "o1,c1,2024-01-01,5,3,5,4,2,shoes\no2,c1,2024-01-02,5,,,,,\n")
    f = got.frame
    for col in ("delivery_days", "promised_days", "review_score", "items"):
        assert f[col].dtype == np.float64
    assert f.loc[0, ["delivery_days", "promised_days", "review_score", "items"]].tolist() == [3, 5, 4, 2]
    assert f.loc[1, ["delivery_days", "review_score"]].isna().all()
    assert f["category"].iloc[0] == "shoes" and pd.isna(f["category"].iloc[1])


# --- orders: rejects ------------------------------------------------------------------------
BAD = (f"{HEAD},currency,status,email,first_name,discount_amount,review_score,items,line\n"
       "o1,c1,2024-01-01,10,USD,completed,ann@example.com,Ann,,5,1,x\n"     # 2 ok
       ",c1,2024-01-01,10,USD,completed,bob@example.com,Bob,,,,x\n"         # 3 missing order_id
       "o3,c1,2024-13-45,10,USD,completed,,,,,,x\n"                         # 4 unparsable date
       "o4,c1,,10,USD,completed,,,,,,x\n"                                   # 5 missing date
       "o5,c1,2024-01-01,1O.5,USD,completed,,,,,,x\n"                       # 6 unparsable amount
       "o6,c1,2024-01-01,-2,USD,completed,,,,,,x\n"                         # 7 negative amount
       "o7,c1,2024-01-01,10,XYZ,completed,,,,,,x\n"                         # 8 unknown currency
       "o8,c1,2024-01-01,10,USD,lost,,,,,,x\n"                              # 9 unknown status
       "o9,c1,2024-01-01,10,USD,completed,,,abc,,,x\n"                      # 10 bad optional number
       "o10,c1,2024-01-01,10,USD,completed,,,,6,,x\n"                       # 11 review out of range
       "o11,c1,2024-01-01,10,USD,completed,,,,0,,x\n"                       # 12 review out of range
       "o12,c1,2024-01-01,10,USD,completed,,,-1,,,x\n"                      # 13 negative discount
       "o13,c1,2024-01-01,10,USD,completed,,,,,-3,x\n"                      # 14 negative items
       "o14,c1,2024-01-01\n"                                                # 15 too few fields
       "o15,c1,2024-01-01,,USD,completed,,,,,,x\n"                          # 16 missing amount
       "o16,c1,1850-01-01,10,USD,completed,,,,,,x\n")                       # 17 date out of range


@pytest.mark.parametrize(("line", "column", "reason"), [
    (3, "order_id", "missing value"),
    (4, "order_date", "unparsable date"),
    (5, "order_date", "missing value"),
    (6, "amount", "unparsable number"),
    (7, "amount", "negative amount"),
    (8, "currency", "unknown currency"),
    (9, "status", "unknown status"),
    (10, "discount_amount", "unparsable number"),
    (11, "review_score", "out of range"),
    (12, "review_score", "out of range"),
    (13, "discount_amount", "negative amount"),
    (14, "items", "out of range"),
    (15, "", "wrong field count"),
    (16, "amount", "missing value"),
    (17, "order_date", "out of range"),
])
def test_each_reject_reason_with_line_and_column(tmp_path, line, column, reason):
    got = orders(tmp_path, BAD)
    assert reject_of(got, line) == (column, reason)
    assert got.frame["order_id"].tolist() == ["o1"]


def test_reject_counts_and_frame_layout(tmp_path):
    got = orders(tmp_path, BAD)
    (s,) = got.stats
    assert (s.read, s.accepted, s.rejected, s.collapsed) == (16, 1, 15, 0)
    assert s.rejected_by_reason == {"missing value": 3, "out of range": 4, "unparsable number": 2,
                                    "negative amount": 2, "unknown currency": 1,
                                    "unknown status": 1, "unparsable date": 1,
                                    "wrong field count": 1}
    assert_invariant(got)
    r = got.rejects
    assert list(r.columns[:4]) == ["file", "line", "column", "reason"]
    assert "orig_line" in r.columns  # the input's own 'line' column does not clash
    assert r["line"].tolist() == sorted(r["line"])
    assert (r["file"] == str(tmp_path / "orders.csv")).all()
    row = r.loc[r["line"] == 6].iloc[0]
    assert (row["order_id"], row["amount"], row["orig_line"]) == ("o5", "1O.5", "x")


def test_pii_redacted_in_rejects(tmp_path):
    got = orders(tmp_path, BAD)
    r = got.rejects
    row = r.loc[r["line"] == 3].iloc[0]
    assert row["email"] == "[redacted]" and row["first_name"] == "[redacted]"
    text = r.to_csv(index=False)
    assert "bob@example.com" not in text and "Bob" not in text
    assert got.frame.loc[0, "email"] == "ann@example.com"  # the frame itself keeps it for exports


def test_pii_like_extra_columns_redacted(tmp_path):
    got = orders(tmp_path, f"{HEAD},customer_email,phone\no1,c1,never,1,x@y.z,555\n")
    row = got.rejects.iloc[0]
    assert row["customer_email"] == "[redacted]" and row["phone"] == "[redacted]"


def test_blank_lines_and_empty_field_lines_are_not_records(tmp_path):
    got = orders(tmp_path, f"{HEAD}\no1,c1,2024-01-01,1\n\n,,,\no4,c1,bad,1\n\n")
    assert got.stats[0].read == 2
    assert reject_of(got, 5) == ("order_date", "unparsable date")


def test_quoted_newline_line_is_record_number(tmp_path):
    got = orders(tmp_path, f'{HEAD},category\no1,c1,2024-01-01,1,"two\nlines"\no2,c1,x,1,a\n')
    assert got.frame.loc[0, "category"] == "two\nlines"
    assert reject_of(got, 3) == ("order_date", "unparsable date")


def test_line_numbers_after_malformed_rows(tmp_path):
    got = orders(tmp_path, f"{HEAD}\no1,c1,2024-01-01,1,extra\no2,c1,x,1\no3\no4,c1,y,1\n")
    assert got.rejects[["line", "reason"]].values.tolist() == [
        [2, "wrong field count"], [3, "unparsable date"], [4, "wrong field count"],
        [5, "unparsable date"]]


def test_header_names_are_case_and_space_insensitive(tmp_path):
    got = orders(tmp_path, "\ufeff Order_ID ,Customer_Id,ORDER_DATE,Amount\no1,c1,2024-01-01,2\n")
    assert got.frame["amount"].tolist() == [2.0]


# --- de-duplication ---------------------------------------------------------------------------
def test_repeated_order_ids_latest_wins_across_files(tmp_path):
    a = write(tmp_path, f"{HEAD},status\no1,c1,2024-01-01,10,completed\n"
                        "o1,c1,2024-01-01,10,completed\n"          # exact duplicate
                        "o2,c2,2024-01-02,20,completed\n"
                        "o2,c2,2024-01-02,25,completed\n"          # later line wins
                        "o3,c3,2024-01-03,30,completed\n", "a.csv")
    b = write(tmp_path, f"{HEAD},status\no3,c3,2024-01-03,30,refunded\n"  # later file wins
                        "o4,c4,bad,1,completed\n", "b.csv")
    got = ingest.load_orders([a, b], CFG)
    f = got.frame.set_index("order_id")
    assert sorted(f.index) == ["o1", "o2", "o3"]
    assert f.loc["o2", "amount"] == 25.0 and f.loc["o3", "status"] == "refunded"
    sa, sb = got.stats
    assert (sa.read, sa.accepted, sa.rejected, sa.collapsed) == (5, 2, 0, 3)
    assert (sb.read, sb.accepted, sb.rejected, sb.collapsed) == (2, 1, 1, 0)
    assert_invariant(got)
    # the same files in the other order: the other version wins
    got = ingest.load_orders([b, a], CFG)
    assert got.frame.set_index("order_id").loc["o3", "status"] == "completed"
    assert_invariant(got)


def test_rejected_latest_version_leaves_earlier_valid_one(tmp_path):
    got = orders(tmp_path, f"{HEAD}\no1,c1,2024-01-01,10\no1,c1,2024-01-01,oops\n")
    assert got.frame["amount"].tolist() == [10.0]
    (s,) = got.stats
    assert (s.accepted, s.rejected, s.collapsed) == (1, 1, 0)


def test_files_with_different_optional_columns(tmp_path):
    a = write(tmp_path, f"{HEAD},country,review_score\no1,c1,2024-01-01,1,de,4\n", "a.csv")
    b = write(tmp_path, f"{HEAD},channel\no2,c2,2024-01-02,2,web\n", "b.csv")
    f = ingest.load_orders([a, b], CFG).frame
    assert f["country"].tolist()[0] == "DE" and pd.isna(f["country"].iloc[1])
    assert pd.isna(f["channel"].iloc[0]) and f["channel"].iloc[1] == "web"
    assert f["review_score"].dtype == np.float64 and np.isnan(f["review_score"].iloc[1])
    # low-cardinality text is categorical across files (union of categories), ids stay text
    assert isinstance(f["country"].dtype, pd.CategoricalDtype) and list(f["country"].cat.categories) == ["DE"]
    assert isinstance(f["channel"].dtype, pd.CategoricalDtype) and f["order_id"].tolist() == ["o1", "o2"]


@pytest.mark.parametrize("seed", range(5))
def test_invariant_on_random_messy_files(tmp_path, seed):
    rng = np.random.default_rng(seed)
    files = []
    for k in range(3):
        n = int(rng.integers(5, 60))
        ids = rng.choice([f"o{i}" for i in range(40)], n)
        dates = rng.choice(["2024-01-01", "2024-02-30", "", "2024-05-05T10:00:00+01:00"], n)
        amounts = rng.choice(["1", "2.5", "-1", "x", ""], n)
        cur = rng.choice(["USD", "EUR", "ZZZ", ""], n)
        lines = [f"{a},c1,{d},{m},{c}" for a, d, m, c in zip(ids, dates, amounts, cur)]
        lines += ["o1,c1"] * int(rng.integers(0, 3))
        files.append(write(tmp_path, f"{HEAD},currency\n" + "\n".join(lines) + "\n", f"f{k}.csv"))
    got = ingest.load_orders(files, CFG)
    assert_invariant(got)
    assert got.frame["order_id"].is_unique


def test_customer_codes_kept_from_the_ingest(tmp_path):
    """The orders' customer codes come with the frame: first appearance order, exact id text,
    counted after de-duplication and rejects (a customer whose only order was rejected or whose
    order moved files has no code of its own), equal to export.customer_codes of the frame."""
    from churnctl import export

    a = write(tmp_path, f"{HEAD}\no1,007,2024-01-01,1\no2,C9,2024-01-02,2\no3,c9,2024-01-03,3\n"
                        "o4,Z1,bad,4\no5,007,2024-01-05,5\no6,0x,2024-01-06,6\n", "a.csv")
    b = write(tmp_path, f"{HEAD}\no6,7,2024-01-06,6\no7,c9,2024-01-07,7\n", "b.csv")  # o6 moves to '7'
    got = ingest.load_orders([a, b], CFG)
    codes, ids = got.customer_codes
    assert got.frame["order_id"].tolist() == ["o1", "o2", "o3", "o5", "o6", "o7"]
    assert ids.to_pylist() == ["007", "C9", "c9", "7"]  # '0x' lost its only order; 'Z1' rejected
    assert codes.tolist() == [0, 1, 2, 0, 3, 2]
    ref_codes, ref_ids = export.customer_codes(got.frame)
    assert np.array_equal(codes, ref_codes) and ids.equals(ref_ids)


def test_inputs_code_a_replaced_orders_frame_again(tmp_path):
    from churnctl import api
    from churnctl.config import Config

    path = write(tmp_path, f"{HEAD}\no1,b,2024-01-01,1\no2,a,2024-01-02,2\no3,b,2024-01-03,3\n")
    inputs = api.load_inputs([path], config=Config(ingest=CFG))
    assert inputs.order_customer_codes() is inputs.customer_codes  # the ingest's own
    inputs.orders = inputs.orders.iloc[[1, 2]].reset_index(drop=True)  # a caller's own frame
    codes, ids = inputs.order_customer_codes()
    assert codes.tolist() == [0, 1] and ids.to_pylist() == ["a", "b"]


# --- file-level errors -----------------------------------------------------------------------
def assert_input_error(call, message: str) -> None:
    with pytest.raises(InputError) as info:
        call()
    assert str(info.value) == message
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)


def test_missing_required_column(tmp_path):
    path = write(tmp_path, "order_id,customer_id,amount\n1,c1,5\n")
    assert_input_error(lambda: ingest.load_orders([path], CFG),
                       f"{path}: header matches no preset (pass --source); closest: "
                       "canonical (missing 'order_date')")
    path = write(tmp_path, "order_id,customer_id\n1,c1\n")
    assert_input_error(lambda: ingest.load_orders([path], CFG),
                       f"{path}: header matches no preset (pass --source); closest: "
                       "canonical (missing 'order_date', 'amount')")
    # with the preset named, the message is about the preset's columns
    assert_input_error(lambda: ingest.load_orders([path], CFG, source="canonical"),
                       f"{path}: missing required columns 'order_date', 'amount' (preset canonical)")


def test_semicolon_file_is_read(tmp_path):
    path = write(tmp_path, "order_id;customer_id;order_date;amount\n1;c1;2024-01-01;5\n")
    got = ingest.load_orders([path], CFG)
    assert got.frame["amount"].tolist() == [5.0] and got.stats[0].delimiter == ";"


def test_empty_files(tmp_path):
    path = write(tmp_path, "")
    assert_input_error(lambda: ingest.load_orders([path], CFG), f"{path}: empty file (no header line)")
    path = write(tmp_path, f"{HEAD}\n\n\n", "header.csv")
    assert_input_error(lambda: ingest.load_orders([path], CFG),
                       f"{path}: empty file (header but no rows)")
    path = write(tmp_path, HEAD, "nonewline.csv")
    assert_input_error(lambda: ingest.load_orders([path], CFG),
                       f"{path}: empty file (header but no rows)")


def test_binary_files(tmp_path):
    gz = DATA / "orders_gzip.csv"  # gzip is read whatever the file name says
    got = ingest.load_orders([gz], CFG)
    assert got.stats[0].format == "csv+gzip" and got.stats[0].read > 0
    assert_invariant(got)
    xlsx = DATA / "orders_xlsx.csv"
    with pytest.raises(InputError, match=r"orders_xlsx.csv: not a CSV text file \(looks like an Excel"):
        ingest.load_orders([xlsx], CFG)
    blob = tmp_path / "blob.csv"
    blob.write_bytes(b"order_id,customer_id\x00\x01\x02")
    assert_input_error(lambda: ingest.load_orders([blob], CFG),
                       f"{blob}: not a CSV text file (binary data)")


def test_not_utf8_is_read_as_cp1252_with_a_warning(tmp_path, caplog):
    path = DATA / "orders_latin1.csv"
    with caplog.at_level("WARNING", logger="churnctl"):
        got = ingest.load_orders([path], CFG)
    assert got.frame["first_name"].tolist() == ["Zo\u00eb"]
    assert got.stats[0].encoding == "cp1252" and got.stats[0].warnings
    assert "read as Windows-1252" in caplog.text


def test_missing_file_and_directory(tmp_path):
    path = tmp_path / "nope.csv"
    assert_input_error(lambda: ingest.load_orders([path], CFG), f"{path}: orders file not found")
    assert_input_error(lambda: ingest.load_events([tmp_path], CFG),
                       f"{tmp_path}: is a directory, not a file")


def test_duplicate_known_column(tmp_path):
    path = write(tmp_path, f"{HEAD},amount\no1,c1,2024-01-01,1,2\n")
    assert_input_error(lambda: ingest.load_orders([path], CFG), f"{path}: duplicate column 'amount'")


def test_bad_config_values(tmp_path):
    path = write(tmp_path, f"{HEAD}\no1,c1,2024-01-01,1\n")
    with pytest.raises(ConfigError, match=r"ingest.fx_rates.EUR: rate must be a positive number"):
        ingest.load_orders([path], IngestConfig(fx_rates={"EUR": 0.0}))
    with pytest.raises(ConfigError, match=r"ingest.default_status: 'done' is not one of"):
        ingest.load_orders([path], replace(CFG, default_status="done"))


# --- reject fraction ------------------------------------------------------------------------
def test_check_reject_fraction(tmp_path):
    got = orders(tmp_path, f"{HEAD}\no1,c1,2024-01-01,1\no2,c1,bad,1\no3,c1,2024-01-01,x\n"
                           "o4,c1,,1\no5,c1,2024-01-01,2\no6,c1,2024-01-01,3\no7,c1,2024-01-01,4\n"
                           "o8,c1,2024-01-01,5\n")
    ingest.check_reject_fraction(got.stats, 0.375)  # 3 of 8 is allowed at 37.5 %
    path = tmp_path / "orders.csv"
    assert_input_error(
        lambda: ingest.check_reject_fraction(got.stats, 0.05),
        f"{path}: 37.5% of rows rejected (3 of 8, mostly 'missing value'), above the limit of "
        "5.0% (ingest.max_reject_fraction)")


def test_stats_as_dict(tmp_path):
    got = orders(tmp_path, f"{HEAD}\no1,c1,2024-01-01,1\no2,c1,bad,1\n")
    assert got.stats[0].as_dict() == {
        "file": str(tmp_path / "orders.csv"), "kind": "orders", "read": 2, "accepted": 1,
        "rejected": 1, "collapsed": 0, "rejected_by_reason": {"unparsable date": 1},
        "preset": "canonical", "format": "csv", "encoding": "utf-8", "delimiter": ",",
        "skipped": 0, "customers": 1, "merged_customers": 0, "first_date": "2024-01-01",
        "last_date": "2024-01-01", "currencies": ["USD"]}


# --- events ---------------------------------------------------------------------------------
def test_events(tmp_path):
    path = write(tmp_path, "customer_id,event_time,event_type,topic,value,campaign\n"
                           "007,2024-01-05T10:00:00+01:00,Email_Open,,,x\n"
                           "007,2024-01-05T10:00:00+01:00,email_open,,,y\n"     # duplicate
                           "c2,2024-01-06,support_ticket,Logistics,2.5,\n"
                           "c3,yesterday,email_click,,,\n"
                           "c4,2024-01-07,page_view,,,\n"
                           "c5,2024-01-08,complaint,weather,,\n"
                           "c6,2024-01-09,review,product,five,\n"
                           ",2024-01-09,review,product,,\n", "events.csv")
    got = ingest.load_events([path], CFG)
    f = got.frame
    assert list(f.columns) == ["customer_id", "event_time", "event_type", "topic", "value"]
    assert f["customer_id"].tolist() == ["007", "c2"]
    assert f["event_time"].tolist() == [pd.Timestamp("2024-01-05 09:00"), pd.Timestamp("2024-01-06")]
    assert f["event_type"].tolist() == ["email_open", "support_ticket"]
    assert pd.isna(f["topic"].iloc[0]) and f["topic"].iloc[1] == "logistics"
    assert np.isnan(f["value"].iloc[0]) and f["value"].iloc[1] == 2.5
    assert [reject_of(got, n) for n in (5, 6, 7, 8, 9)] == [
        ("event_time", "unparsable date"), ("event_type", "unknown event type"),
        ("topic", "unknown topic"), ("value", "unparsable number"), ("customer_id", "missing value")]
    (s,) = got.stats
    assert (s.kind, s.read, s.accepted, s.rejected, s.collapsed) == ("events", 8, 2, 5, 1)
    assert_invariant(got)


def test_events_missing_column(tmp_path):
    path = write(tmp_path, "customer_id,event_time\nc1,2024-01-01\n", "events.csv")
    assert_input_error(lambda: ingest.load_events([path], CFG),
                       f"{path}: missing required column 'event_type'")


# --- customers ------------------------------------------------------------------------------
def test_customers_booleans_and_latest_wins(tmp_path):
    path = write(tmp_path, "customer_id,email,country,language,marketing_consent,unsubscribed\n"
                           "c1,old@example.com,de,DE,yes,no\n"
                           "c2,b@example.com,fr,fr,TRUE,\n"
                           "c3,,us,,0,Y\n"
                           "c4,,us,,n,1\n"
                           "c5,,us,,maybe,\n"
                           "c6,,us,,,False\n"
                           "c1,new@example.com,at,de,No,N\n", "customers.csv")
    got = ingest.load_customers([path], CFG)
    f = got.frame.set_index("customer_id")
    assert list(f.index) == ["c2", "c3", "c4", "c6", "c1"]
    assert f["marketing_consent"].dtype == "boolean"
    assert f["marketing_consent"].tolist() == [True, False, False, pd.NA, False]
    assert f["unsubscribed"].tolist() == [pd.NA, True, True, False, False]
    assert f.loc["c1", "email"] == "new@example.com" and f.loc["c1", "country"] == "AT"
    assert f.loc["c1", "language"] == "de"
    assert reject_of(got, 6) == ("marketing_consent", "unparsable boolean")
    assert got.rejects["email"].tolist() == [""]  # empty stays empty; values are redacted
    (s,) = got.stats
    assert (s.kind, s.read, s.accepted, s.rejected, s.collapsed) == ("customers", 7, 5, 1, 1)


def test_customers_keep_contact_columns_for_ad_profiles(tmp_path):
    path = write(tmp_path, "customer_id,email,first_name,last_name,phone,city,zip,country\n"
                           "007,a@example.com,Ana,Silva,+49 30 1234567,Berlin,10115,de\n", "customers.csv")
    f = ingest.load_customers([path], CFG).frame.set_index("customer_id")
    assert f.loc["007", ["last_name", "phone", "city", "zip", "country"]].tolist() == [
        "Silva", "+49 30 1234567", "Berlin", "10115", "DE"]


def test_customers_pii_redacted_in_rejects(tmp_path):
    path = write(tmp_path, "customer_id,email,first_name,marketing_consent\n"
                           "c1,ann@example.com,Ann,perhaps\n", "customers.csv")
    row = ingest.load_customers([path], CFG).rejects.iloc[0]
    assert (row["email"], row["first_name"]) == ("[redacted]", "[redacted]")


# --- shipped bad files (reused by CLI tests) --------------------------------------------------
def test_shipped_bad_files():
    got = ingest.load_orders([DATA / "orders_bad_rows.csv"], CFG)
    assert got.frame["order_id"].tolist() == ["A1", "A10"]
    assert got.frame["amount"].tolist() == [10.0, 23.25]
    assert got.stats[0].rejected_by_reason == {
        "missing value": 1, "negative amount": 1, "out of range": 1, "unknown currency": 1,
        "unknown status": 1, "unparsable date": 1, "unparsable number": 1,
        "wrong field count": 1}
    assert "bob@example.com" not in got.rejects.to_csv()
    path = DATA / "orders_no_date.csv"
    assert_input_error(lambda: ingest.load_orders([path], CFG),
                       f"{path}: header matches no preset (pass --source); closest: "
                       "canonical (missing 'order_date'); "
                       "amazon (missing 'purchase-date', 'sku', 'item-price')")
    path = DATA / "orders_empty.csv"
    assert_input_error(lambda: ingest.load_orders([path], CFG), f"{path}: empty file (no header line)")
    path = DATA / "orders_header_only.csv"
    assert_input_error(lambda: ingest.load_orders([path], CFG),
                       f"{path}: empty file (header but no rows)")
    events = ingest.load_events([DATA / "events_bad_rows.csv"], CFG)
    assert (events.stats[0].accepted, events.stats[0].rejected, events.stats[0].collapsed) == (2, 4, 1)
    customers = ingest.load_customers([DATA / "customers_bad_rows.csv"], CFG)
    assert customers.frame["customer_id"].tolist() == ["c1"]
    assert customers.stats[0].rejected_by_reason == {"missing value": 1, "unparsable boolean": 1}


def test_no_files_given():
    with pytest.raises(InputError, match="no orders file given"):
        ingest.load_orders([], CFG)


def test_latest_version_wins_even_when_hashes_collide(tmp_path, monkeypatch):
    text = f"{HEAD}\nA1,c1,2024-01-01,1\na1,c2,2024-01-02,2\nA1,c3,2024-01-03,3\n007,c1,2024-01-04,4\n7,c1,2024-01-05,5\n"
    got = orders(tmp_path, text)
    assert got.frame["order_id"].tolist() == ["a1", "A1", "007", "7"]  # exact text: case, zeros
    assert got.frame.set_index("order_id").loc["A1", "customer_id"] == "c3"
    assert (got.stats[0].collapsed, got.stats[0].customers) == (1, 3)
    # every hash equal: the text check catches the collision and the exact path gives the same
    monkeypatch.setattr(ingest, "_hash64", lambda key: np.zeros(len(key), dtype=np.uint64))
    again = orders(tmp_path, text)
    assert again.frame["order_id"].tolist() == ["a1", "A1", "007", "7"]
    assert (again.stats[0].collapsed, again.stats[0].customers) == (1, 3)


def test_fast_iso_dates_agree_with_pandas():
    values = ["2024-01-05T10:00:00Z", "2024-01-05 10:00:00", "2024-01-05T10:00:00", "2024-02-29T23:59:59Z",
              "2023-02-29T10:00:00Z", "2025-02-30T10:00:00Z", "2024-04-31T00:00:00Z", "2024-13-01T00:00:00Z",
              "2024-00-10T00:00:00Z", "2024-01-00T00:00:00Z", "2024-01-05T24:00:00Z", "2024-01-05T10:60:00Z",
              "2024-01-05T10:00:60Z", "2024-01-05T10:00:00+02:00", "2024-01-05T01:00:00-05:30",
              "2024-01-05T10:00:00+24:00", "1899-12-31T23:00:00Z", "1900-01-01T00:30:00+01:00",
              "2199-12-31T23:59:59Z", "2200-01-01T00:00:00Z", "0023-07-01T00:00:00Z", "2024-1-05T10:00:00Z",
              "2024-01-05", "2024-01-05T10:00:00.250Z", "2024/01/05T10:00:00Z", "2024-01-05X10:00:00Z",
              "20240-1-05T10:00:00Z", "2024-01-05T10:00:00z", "not a date", "30/02/2025 10:00", ""]
    raw = pd.DataFrame({"d": pd.Series(values, dtype=ingest._TEXT)})
    rej = ingest._Rejector(len(values))
    got = ingest._date(raw, "d", rej)
    want = pd.to_datetime(pd.Series(values), errors="coerce", utc=True, format="ISO8601")
    ok = want.notna() & (want >= ingest.DATE_MIN) & (want < ingest.DATE_MAX)
    assert got[ok.to_numpy()].tolist() == want[ok].dt.tz_convert(None).tolist()
    assert got[~ok.to_numpy()].isna().all()
    reasons = dict(zip(values, rej.reason))
    assert reasons["2023-02-29T10:00:00Z"] == reasons["2024-01-05T10:00:60Z"] == "unparsable date"
    assert reasons["1899-12-31T23:00:00Z"] == reasons["2200-01-01T00:00:00Z"] == "out of range"
    assert reasons["1900-01-01T00:30:00+01:00"] == "out of range"  # 1899-12-31 23:30 UTC
    assert reasons[""] == "missing value" and reasons["2024-01-05T01:00:00-05:30"] == ""
    assert got[values.index("2024-01-05T01:00:00-05:30")] == pd.Timestamp("2024-01-05 06:30")
