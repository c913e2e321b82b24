"""The fast paths of ingest give exactly what the plain computations they replace give."""

from __future__ import annotations

import re
import threading

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from churnctl import ingest, mappings, readers

TEXT = ingest._TEXT
AWKWARD_NUMBERS = ["12", "12.50", "-3", "+4.5", ".5", "5.", "1e3", "nan", "inf", "", "abc", "1,234.56",
                   "1.234,56", "€12,50", "US$ 12.00", "12 EUR", "-3,5", "1.2.3", ".", "0012", "  ", "?"]


def _reference_numbers(s: pd.Series, decimal: str) -> tuple[np.ndarray, np.ndarray]:
    """What validation read before: the normalised text, then its float value."""
    text = mappings.normalise_numbers(s, decimal)
    return text.eq("").to_numpy(), ingest._to_float(text)


@pytest.mark.parametrize("decimal", [".", ","])
@pytest.mark.parametrize("values", [AWKWARD_NUMBERS, ["1", "2.5", "", "7"], ["3,5", "", "10"], ["", ""]])
def test_parse_numbers_reads_what_the_normalised_text_gave(values, decimal):
    s = pd.Series(values, dtype=TEXT)
    got = mappings.parse_numbers(s, decimal)
    missing, want = _reference_numbers(s, decimal)
    assert isinstance(got.dtype, pd.ArrowDtype)
    assert got.isna().to_numpy().tolist() == missing.tolist()
    floats = ingest._to_float(got)
    assert np.array_equal(floats, want, equal_nan=True)


def test_parse_numbers_known_values():
    got = mappings.parse_numbers(pd.Series(["1.234,56", "€12,50", "12.50", "", "x"], dtype=TEXT), ",")
    floats = ingest._to_float(got)
    assert floats[:2].tolist() == [1234.56, 12.5]
    assert np.isnan(floats[2:]).all() and got.isna().tolist() == [False, False, False, True, False]


def test_valid_where_shares_text_and_handles_slices():
    text = pa.array(["a", "", "b", "c"])
    got = mappings.valid_where(text, np.array([True, False, True, False]))
    assert got.to_pylist() == ["a", None, "b", None]
    assert got.buffers()[2].address == text.buffers()[2].address  # no copy of the values
    sliced = text.slice(1)
    assert mappings.valid_where(sliced, np.array([True, True, False])).to_pylist() == ["", "b", None]


def test_fast_iso_dates_agree_with_pandas_on_random_text():
    rng = np.random.default_rng(7)
    chars = list("0123456789-T :Z+")
    base = ["2024-02-29T23:59:59Z", "1700-01-01 00:00:00", "2261-12-31T23:59:59+14:00", "2023-04-30T12:00:00-05:30"]
    values = []
    for text in base:
        for _ in range(400):
            t = list(text)
            t[rng.integers(len(t))] = chars[rng.integers(len(chars))]
            values.append("".join(t))
    for _ in range(3000):
        y, m, d = rng.integers(1690, 2270), rng.integers(0, 14), rng.integers(0, 33)
        values.append(f"{y:04d}-{m:02d}-{d:02d}T{rng.integers(0, 25):02d}:{rng.integers(0, 61):02d}:"
                      f"{rng.integers(0, 61):02d}" + ["", "Z", "+01:30", "-23:59"][rng.integers(4)])
    ns, ok = ingest._iso_fast(pa.array(values))
    want = pd.to_datetime(pd.Series(values), errors="coerce", utc=True, format="ISO8601")
    assert ok.sum() > 1000
    # every value the fast path reads, pandas reads the same way (the rest goes to pandas)
    assert want[ok].notna().all()
    assert (want[ok].dt.tz_convert(None).to_numpy().astype("datetime64[ns]").view(np.int64) == ns[ok]).all()
    # and a value of the fast path's shapes and years that pandas reads is never left out
    shape = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})?")
    shaped = np.array([bool(shape.fullmatch(v)) and "1700" <= v[:4] <= "2261" for v in values])
    assert not (want.notna().to_numpy() & shaped & ~ok).any()


def _text(values):
    return pd.Series(values, dtype=TEXT)


@pytest.mark.parametrize("collide", [False, True])
def test_group_codes_of_some_rows_match_the_text(monkeypatch, collide):
    values = ["c1", "C1", "c2", "c1", "007", "7", "c2", "", "c1"]
    key = ingest._chain([pd.DataFrame({"k": _text(values[:4])}), pd.DataFrame({"k": _text(values[4:])})], "k")
    if collide:  # different texts with equal hashes: the exact path gives the answer
        monkeypatch.setattr(ingest, "_hash64", lambda k: np.asarray(k.str.len(), dtype=np.uint64) << np.uint64(61))
    for rows in (None, np.array([0, 1, 3, 5, 6, 8])):
        codes = ingest._group_codes(key, rows)
        picked = values if rows is None else [values[i] for i in rows]
        assert len(codes) == len(picked)
        pairs = {(a, b) for a, b in zip(picked, codes)}
        assert len(pairs) == len(set(picked)) == len(set(codes))  # equal text <=> equal code


@pytest.mark.parametrize("collide", [False, True])
def test_duplicated_last_keeps_the_last_version(monkeypatch, collide):
    values = ["A1", "a1", "A1", "007", "7", "A1", "x", "7"]
    key = _text(values)
    if collide:
        monkeypatch.setattr(ingest, "_hash64", lambda k: np.asarray(k.str.len(), dtype=np.uint64))
    rows = np.array([0, 1, 2, 3, 4, 6, 7])  # row 5 rejected: it does not replace row 2
    dup = ingest._duplicated_last(key, rows)
    assert dup.tolist() == [True, False, False, False, True, False, False]


def test_align_codes_categoricals_with_the_categories_kept_rows_use():
    cat = lambda v, c: pd.Series(pd.Categorical(v, categories=c))  # noqa: E731
    parts = [pd.DataFrame({"x": cat(["b", "a", None], ["a", "b"]), "n": [1.0, 2.0, 3.0]}),
             pd.DataFrame({"n": [4.0]}),
             pd.DataFrame({"x": cat(["z", "c"], ["c", "z"]), "n": [5.0, 6.0]})]
    keep = np.array([True, False, True, True, True, False])  # "a" and "c" only in dropped rows
    frame = ingest._align(parts, ["n", "x"], keep=keep)
    assert frame["n"].tolist() == [1.0, 3.0, 4.0, 5.0]
    assert list(frame["x"].cat.categories) == ["b", "z"]
    assert frame["x"].astype(object).where(frame["x"].notna(), None).tolist() == ["b", None, None, "z"]
    assert frame["x"].cat.codes.dtype == np.int8


def test_describe_counts_files_mixed_in_one_part():
    # the Dask engine describes one partition holding rows of several files, in any order
    frame = pd.DataFrame({
        "customer_id": _text(["c1", "c2", "c1", "c3", "c2"]),
        "channel": pd.Series(pd.Categorical(["web", "web", "shop", None, "web"])),
        "order_date": pd.to_datetime(["2024-01-05", "2024-03-01", "2023-12-31", "2024-02-02", "2024-02-01"]),
        "currency": pd.Series(pd.Categorical(["EUR", "USD", "EUR", "GBP", "EUR"])),
    })
    src = np.array([1, 0, 1, 0, 2])
    stats = [ingest.FileStats(f"f{i}", "orders", 0, 0, 0, 0, {}) for i in range(4)]
    ingest._describe([frame], np.arange(5), src, stats)
    assert [(s.customers, s.merged_customers) for s in stats[:3]] == [(2, 0), (1, 1), (1, 0)]
    assert (stats[1].first_date, stats[1].last_date, stats[1].currencies) == ("2023-12-31", "2024-01-05", ["EUR"])
    assert stats[0].currencies == ["GBP", "USD"]
    assert stats[3].customers is None and stats[3].first_date is None  # no row of this file


def test_prefetch_yields_in_order_and_raises_the_readers_error():
    def source():
        yield 1
        yield 2
        raise ValueError("broken block")

    got = []
    with pytest.raises(ValueError, match="broken block"):
        for item in readers.prefetch(source()):
            got.append(item)
    assert got == [1, 2]


def test_prefetch_stops_the_reading_thread_when_the_caller_stops():
    pulled = []

    def source():
        for i in range(1000):
            pulled.append(i)
            yield i

    ahead = readers.prefetch(source())
    assert next(ahead) == 0
    ahead.close()
    assert len(pulled) <= 3  # one in use, one waiting, one being read
    assert not any(t.name == "churnctl-read" for t in threading.enumerate())


@pytest.mark.parametrize("value, expected", [("1e3", 1000.0), ("-2.5E-1", -0.25), ("12.50", 12.5)])
@pytest.mark.parametrize("neighbour", ["2", "x", "€3", ""])
def test_a_number_is_read_the_same_whatever_the_other_values_of_its_column(value, expected, neighbour):
    # A clean column is cast whole by Arrow, a column with one awkward value goes through the
    # patterns: both must read each value alike (an exponent was accepted in the first case only).
    got = ingest._to_float(mappings.parse_numbers(pd.Series([value, neighbour], dtype=TEXT), "."))
    assert got[0] == expected
    text = mappings.normalise_numbers(pd.Series([value, neighbour], dtype=TEXT), ".")
    assert ingest._to_float(pd.Series([text[0]], dtype=TEXT))[0] == expected
