"""Read input CSV files into canonical frames, row rejects and per-file counts.

:func:`load_orders`, :func:`load_events` and :func:`load_customers` take one or more files in
the canonical CSV shape (column names in :mod:`churnctl.schema`) and return a :class:`Loaded`:
the canonical frame, a rejects frame and one :class:`FileStats` per file.  Each file goes
through the same steps:

1. **read** - pyarrow's CSV reader, every column as text (ids keep leading zeros and case),
   values stripped of surrounding whitespace, header names stripped and lower-cased.  Blank
   lines (and lines of empty fields only, as spreadsheets write them) are not records.  A
   problem with the whole file (missing, empty, binary, not UTF-8, missing required column)
   raises :class:`~churnctl.errors.InputError` with one line naming the file.
2. **map** - reserved: a platform export (other column names and formats) will be turned
   into the canonical text columns here, so validation below stays the single source of rules.
3. **validate** - vectorised parsing of each canonical column (Arrow/numpy fast paths for
   clean number columns and ISO 8601 dates; typed Parquet columns are checked without text).
   A row failing a check is rejected with the first failing column and a short, stable reason
   (``REASONS``); unknown extra columns are ignored.  ``currency, status, country, channel,
   category`` become pandas categoricals.
4. **combine** - the frame is built once from the validated blocks of all files, in the given
   order, column by column: accepted rows only, and the latest version (later file, then later
   line) of an order id, a customer id or an exact event row; the dropped versions count as
   ``collapsed`` for the file they came from.

For every file ``read == accepted + rejected + collapsed``.  ``line`` in rejects counts the
header as line 1; a value holding a quoted line break makes it the record number instead.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import mappings, memory, readers, schema
from .config import IngestConfig
from .errors import ConfigError, InputError

# --- reject reasons (stable strings: counted per reason, shown in rejects.csv) ----------
MISSING = "missing value"
BAD_DATE = "unparsable date"
BAD_NUMBER = "unparsable number"
BAD_BOOLEAN = "unparsable boolean"
NEGATIVE = "negative amount"
OUT_OF_RANGE = "out of range"
UNKNOWN_CURRENCY = "unknown currency"
UNKNOWN_STATUS = "unknown status"
UNKNOWN_EVENT_TYPE = "unknown event type"
UNKNOWN_TOPIC = "unknown topic"
FIELD_COUNT = "wrong field count"
NO_FX_RATE = "no fx rate for date"
BROKEN_QUOTING = "broken quoting"
REASONS = (MISSING, BAD_DATE, BAD_NUMBER, BAD_BOOLEAN, NEGATIVE, OUT_OF_RANGE, UNKNOWN_CURRENCY,
           UNKNOWN_STATUS, UNKNOWN_EVENT_TYPE, UNKNOWN_TOPIC, FIELD_COUNT, NO_FX_RATE, BROKEN_QUOTING)
log = logging.getLogger("churnctl")

REJECT_COLUMNS = ("file", "line", "column", "reason")
REDACTED = "[redacted]"
TRUE_WORDS = ("true", "yes", "y", "1")
FALSE_WORDS = ("false", "no", "n", "0")
#: Dates outside [1900, 2200) are typos, and they would not fit datetime64[ns].
DATE_MIN = pd.Timestamp("1900-01-01", tz="UTC")
DATE_MAX = pd.Timestamp("2200-01-01", tz="UTC")

_TEXT = pd.Series(["a"]).dtype  # pandas' default text dtype: `str` on 3.x, object on 2.x
_PII_PARTS = ("email", "phone", "address", "first_name", "last_name", "full_name")
@dataclass
class FileStats:
    """Row counts of one input file: ``read == accepted + rejected + collapsed``."""

    file: str
    kind: str  # "orders" | "events" | "customers"
    read: int
    accepted: int
    rejected: int
    collapsed: int
    rejected_by_reason: dict[str, int]
    preset: str | None = None
    format: str | None = None
    encoding: str | None = None
    delimiter: str | None = None
    skipped: int = 0  # repeated header and summary lines: not records, not in ``read``
    customers: int | None = None
    merged_customers: int | None = None  # customers also seen on another channel
    first_date: str | None = None
    last_date: str | None = None
    currencies: list[str] | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Return the counts as a plain dict (for the run manifest; unset details left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None and v != []}


@dataclass
class Loaded:
    """Result of a loader: canonical ``frame``, ``rejects`` and one FileStats per file."""

    frame: pd.DataFrame
    rejects: pd.DataFrame
    stats: list[FileStats]
    #: orders only: ``(code per row of frame, distinct customer ids)`` as
    #: ``export.customer_codes(frame)`` returns them (codes in order of first appearance),
    #: kept from the ingest's own coding of the ids so later stages skip a hash pass
    customer_codes: tuple[np.ndarray, pa.Array] | None = None


class _Rejector:
    """Keeps, per row, the first failing column and its reason (as small codes)."""

    def __init__(self, n: int) -> None:
        self.bad = np.zeros(n, dtype=bool)
        self._column = np.zeros(n, dtype=np.uint16)  # index into _names ("" for none)
        self._reason = np.zeros(n, dtype=np.uint16)
        self._names: list[str] = [""]
        self._reasons: list[str] = [""]

    @staticmethod
    def _code(words: list[str], word: str) -> int:
        if word not in words:
            words.append(word)
        return words.index(word)

    def flag(self, mask: pd.Series | np.ndarray, column: str, reason: str) -> None:
        new = np.asarray(mask, dtype=bool) & ~self.bad
        if new.any():
            self._column[new] = self._code(self._names, column)
            self._reason[new] = self._code(self._reasons, reason)
            self.bad |= new

    def override(self, mask: np.ndarray, column: str, reason: str) -> None:
        """Reject the rows of ``mask`` for ``reason`` whatever an earlier check said."""
        self._column[mask] = self._code(self._names, column)
        self._reason[mask] = self._code(self._reasons, reason)
        self.bad |= mask

    def details(self, rows: np.ndarray | slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
        """Return the failing column and reason (object arrays) of ``rows``."""
        return (np.array(self._names, dtype=object)[self._column[rows]],
                np.array(self._reasons, dtype=object)[self._reason[rows]])

    @property
    def column(self) -> np.ndarray:
        return self.details()[0]

    @property
    def reason(self) -> np.ndarray:
        return self.details()[1]


# --- Arrow helpers ------------------------------------------------------------------------
def _arrow(s: pd.Series) -> pa.Array:
    """Return a batch column as one Arrow array (no copy for Arrow-backed columns)."""
    arr = s.array
    got = arr.__arrow_array__() if hasattr(arr, "__arrow_array__") else pa.array(
        np.asarray(arr, dtype=object), from_pandas=True)
    if isinstance(got, pa.ChunkedArray):
        got = got.combine_chunks() if got.num_chunks != 1 else got.chunk(0)
    return got


def _typed(s: pd.Series) -> bool:
    """Return True for a typed (number, date, timestamp) column of a Parquet batch."""
    return isinstance(s.dtype, pd.ArrowDtype)


def _bools(arr: pa.Array) -> np.ndarray:
    return np.array(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _empty(s: pd.Series) -> np.ndarray:
    """Return True where a value is empty: ``""`` in a text column, null in a typed one."""
    if _typed(s):
        return s.isna().to_numpy().copy()
    return _bools(pc.equal(_arrow(s), ""))


def _has_newline(s: pd.Series) -> bool:
    """Return True when some value of a text column may hold a line break (a byte scan)."""
    if _typed(s):
        return False
    arr = _arrow(s)
    data = arr.buffers()[2] if len(arr.buffers()) > 2 else None
    if data is None or data.size == 0:
        return False
    if _MEMCHR is not None:  # the C library's byte search: no array of the data's size
        return bool(_MEMCHR(data.address, 10, data.size))
    return bool((np.frombuffer(data, dtype=np.uint8) == 10).any())


def _find_memchr():
    try:
        import ctypes

        memchr = ctypes.CDLL(None).memchr
    except (OSError, AttributeError, TypeError):  # pragma: no cover - no C library to call
        return None
    memchr.restype = ctypes.c_void_p
    memchr.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t)
    return memchr


_MEMCHR = _find_memchr()


def _offsets(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Return the (value offsets, data bytes) of a string or large_string array without copying."""
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    _, off, data = arr.buffers()
    offsets = np.frombuffer(off, dtype=width, count=len(arr) + 1, offset=arr.offset * np.dtype(width).itemsize)
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    return offsets, raw


# --- reading ----------------------------------------------------------------------------
@dataclass
class _Plan:
    """How to turn one source's text batches into canonical text columns."""

    kind: str
    names: list[str]  # lower-cased unique header names (reject columns)
    mapping: mappings.Mapping | None = None
    canonical: dict[str, int] | None = None  # events/customers: canonical name -> position
    broken: np.ndarray | None = None  # per record of the current batch: unclosed quote


def _column_names(name: str, header: list[str], known: Sequence[str]) -> list[str]:
    names: list[str] = []
    for i, raw in enumerate(header):
        col = raw.strip().lower() or f"unnamed_{i + 1}"
        if col in names:
            if col in known:
                raise InputError(f"{name}: duplicate column '{col}'")
            col = f"{col}_{i + 1}"
        names.append(col)
    return names


def _plan(src: readers.Source, kind: str, required: Sequence[str], known: Sequence[str],
          mapping: mappings.Mapping | None, known_presets: dict | None) -> _Plan:
    if not any(h.strip() for h in src.header):
        raise InputError(f"{src.name}: empty file (no header line)")
    if kind != "orders":
        names = _column_names(src.name, src.header, known)
        missing = [c for c in required if c not in names]
        if missing:
            cols = ", ".join(f"'{c}'" for c in missing)
            plural = "s" if len(missing) > 1 else ""
            raise InputError(f"{src.name}: missing required column{plural} {cols}")
        return _Plan(kind, names, canonical={c: names.index(c) for c in known if c in names})
    names = _column_names(src.name, src.header, ())
    if mapping is None:
        mapping = mappings.detect(src.name, src.header, known_presets or {})
    mappings.check_header(mapping, src.name, src.header)
    return _Plan(kind, names, mapping=mapping)


def _records(src: readers.Source, batch: readers.Batch, plan: _Plan) -> tuple[pd.DataFrame, np.ndarray, int]:
    """Drop lines that are not records; return the rows, their lines and how many were skipped.

    Blank lines and lines of empty fields are not records (not counted).  A repeated header
    line and, for presets with ``skip_lines_matching``, summary lines are skipped and counted.
    """
    frame, line = batch.frame, batch.line
    n, width = len(frame), frame.shape[1]
    # a record needs a non-empty field: only rows whose first field is empty are looked at further
    blank = _empty(frame.iloc[:, 0])
    for i in range(1, width):
        rows = np.flatnonzero(blank)
        if not len(rows):
            break
        blank[rows] = _empty(frame.iloc[rows, i])
    keep = ~blank
    skip = np.zeros(n, dtype=bool)
    if src.fmt == "csv" and width > 1:
        first = frame.iloc[:, 0]
        rows = np.flatnonzero(_bools(pc.equal(pc.utf8_length(_arrow(first)), len(plan.names[0]))))
        if len(rows):
            same = np.array(first.iloc[rows].str.lower().eq(plan.names[0]), dtype=bool)
            for i in (1, width - 1):
                same &= frame.iloc[rows, i].str.lower().eq(plan.names[i]).to_numpy(dtype=bool)
            skip[rows[same]] = True
    if plan.mapping is not None and plan.mapping.skip_lines_matching:
        with warnings.catch_warnings():  # groups in the user's pattern are fine here
            warnings.simplefilter("ignore", UserWarning)
            summary = readers.as_text(frame.iloc[:, 0]).str.contains(plan.mapping.skip_lines_matching,
                                                                      regex=True)
        skip |= summary.to_numpy(dtype=bool)
    if src.fmt == "csv" and src.delimiter and width > 1:
        # An unclosed quote swallows the following lines into one value: such a record is
        # rejected (reason BROKEN_QUOTING) instead of silently losing the records inside it.
        swallowed = np.zeros(n, dtype=bool)
        for i in range(width):
            col = frame.iloc[:, i]
            if not _has_newline(col):
                continue
            multiline = col.str.contains("\n", regex=False).to_numpy(dtype=bool)
            if multiline.any():
                many = col[multiline].str.count(re.escape(src.delimiter)).ge(width - 1)
                swallowed[np.flatnonzero(multiline)[many.to_numpy(dtype=bool)]] = True
        plan.broken = swallowed & ~skip
    else:
        plan.broken = np.zeros(n, dtype=bool)
    skip &= keep
    keep &= ~skip
    if keep.all():
        return frame, line, 0
    plan.broken = plan.broken[keep]
    return frame[keep].reset_index(drop=True), line[keep], int(skip.sum())


def _to_canonical(plan: _Plan, name: str, header: list[str], frame: pd.DataFrame,
                  config: IngestConfig) -> pd.DataFrame:
    if plan.mapping is not None:
        # amounts come as numbers, except line items: they are summed as text first
        return mappings.apply(plan.mapping, name, header, frame, config.identity, config.decimal,
                              numbers=not plan.mapping.line_items)
    return pd.DataFrame({c: frame.iloc[:, i] for c, i in plan.canonical.items()}, index=frame.index)


def _collapse_items(canon: pd.DataFrame, raw: pd.DataFrame, line: np.ndarray,
                    sums: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, int]:
    """Collapse line-item rows sharing an order id into one row (the first row's line).

    Each column takes the first non-empty value of the order's rows; ``sums`` columns take
    the sum (a row with an unparsable value keeps that text, so validation rejects the order).
    """
    key = canon["order_id"]
    codes, _ = pd.factorize(key)
    empty = key.eq("").to_numpy()
    codes = np.where(empty, codes.max(initial=0) + 1 + np.arange(len(key)), codes)
    codes = pd.factorize(codes)[0]
    n_groups = int(codes.max(initial=-1)) + 1
    if n_groups == len(canon):
        return canon, raw, line, 0
    first = np.full(n_groups, len(canon), dtype=np.int64)
    np.minimum.at(first, codes, np.arange(len(canon)))
    out = {}
    for col in canon.columns:
        s = canon[col]
        if col in sums:
            values = pd.Series(_to_float(s), index=s.index)
            bad = np.isnan(values.to_numpy()) & s.ne("").to_numpy()
            total = values.groupby(codes).sum(min_count=1)
            text = total.astype(str)
            text = text.where(total.notna(), "")
            any_bad = pd.Series(bad).groupby(codes).any()
            if any_bad.any():
                first_bad = s.where(bad).groupby(codes).first()
                text = text.where(~any_bad, first_bad)
            out[col] = text.to_numpy()
        else:
            out[col] = s.mask(s.eq("")).groupby(codes).first().reindex(range(n_groups)).fillna("").to_numpy()
    collapsed = pd.DataFrame(out).astype(str)
    return collapsed, raw.iloc[first].reset_index(drop=True), line[first], len(canon) - n_groups

# --- column parsers (vectorised; each flags its failures on the rejector) ----------------
def _text(raw: pd.DataFrame, col: str, rej: _Rejector, *, required: bool = False,
          case: str | None = None) -> pd.Series:
    s = readers.as_text(raw[col])
    missing = _empty(s)
    if required:
        rej.flag(missing, col, MISSING)
    if case == "upper":
        s = s.str.upper()
    elif case == "lower":
        s = s.str.lower()
    return s if required else s.mask(missing)


def _category(raw: pd.DataFrame, col: str, rej: _Rejector, *, case: str | None = None,
              allowed: Sequence[str] | None = None, reason: str = "", default: str | None = None,
              required: bool = False, categorical: bool = True) -> pd.Series:
    """Validate a low-cardinality text column through its distinct values (Arrow dictionary).

    Same rules as :func:`_text` (and the ``allowed`` check of :func:`_choice`), computed once
    per distinct value; returns a pandas Categorical (``categorical``) or text.  Empty values
    become ``default`` (NaN when None).
    """
    s = readers.as_text(raw[col])
    enc = pc.dictionary_encode(_arrow(s))
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    values = pd.Index(enc.dictionary.to_pylist(), dtype=object)
    if case == "upper":
        values = values.str.upper()
    elif case == "lower":
        values = values.str.lower()
    empty = np.asarray(values == "", dtype=bool)
    if required:
        rej.flag(empty[codes], col, MISSING)
    values = values.where(~empty, default if default is not None else np.nan)
    if allowed is not None:
        bad = np.asarray(~values.isin(list(allowed)) & values.notna(), dtype=bool)
        rej.flag(bad[codes], col, reason)
    if required and default is None:
        values = values.where(~empty, "")  # required: missing rows are rejected; keep text
    cats = pd.Index(sorted(set(values.dropna())), dtype=_TEXT)
    remap = np.append(cats.get_indexer(values), -1)
    out = pd.Categorical.from_codes(remap[codes], categories=cats)
    if categorical:
        return pd.Series(out, index=raw.index)
    return pd.Series(np.asarray(out, dtype=object), index=raw.index).astype(_TEXT)


def _choice(raw: pd.DataFrame, col: str, rej: _Rejector, allowed: Sequence[str], reason: str, *,
            case: str, default: str | None = None, required: bool = False,
            categorical: bool = False) -> pd.Series:
    if col not in raw:
        s = pd.Series(default if default is not None else np.nan, index=raw.index, dtype=_TEXT)
        return s.astype(pd.CategoricalDtype(pd.Index([] if default is None else [default], dtype=_TEXT))) if (
            categorical) else s
    return _category(raw, col, rej, case=case, allowed=allowed, reason=reason, default=default,
                     required=required, categorical=categorical)


_DATE_LO, _DATE_HI = DATE_MIN.value, DATE_MAX.value  # ns since the epoch
_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
_YEAR_LO, _YEAR_HI = 1700, 2262  # the years the fast path reads (datetime64[ns] holds them)
_NO_DAY = np.iinfo(np.int32).min


@functools.cache
def _day_numbers() -> np.ndarray:
    """Return days since the epoch of each date at ``(year - 1700) * 512 + month * 32 + day``.

    ``_NO_DAY`` where there is no such date (month 0 or above 12, day 0 or past the month's
    end): one lookup checks a date and converts it.
    """
    years = np.arange(_YEAR_LO, _YEAR_HI)
    out = np.full((len(years), 16, 32), _NO_DAY, dtype=np.int32)
    first = (years - 1970).astype("datetime64[Y]").astype("datetime64[M]")
    for month in range(1, 13):
        start = (first + (month - 1)).astype("datetime64[D]")
        length = ((first + month).astype("datetime64[D]") - start).astype(np.int64)
        for day in range(1, 32):
            out[:, month, day] = np.where(day <= length, start.astype(np.int64) + day - 1, _NO_DAY)
    return out.reshape(-1)


def _iso_fast(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Parse the usual ISO 8601 shapes in numpy; return (ns since epoch, parsed mask).

    ``YYYY-MM-DD[T ]HH:MM:SS`` followed by nothing (UTC), ``Z`` or ``+HH:MM``/``-HH:MM``, years
    1700-2261, every field range-checked (day within its month): exactly what
    ``pandas.to_datetime(format="ISO8601")`` accepts for these shapes.  Other values are left
    to pandas by the caller.
    """
    n = len(arr)
    ns = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)) or arr.null_count:
        return ns, ok
    offsets, raw = _offsets(arr)
    length = np.diff(offsets)
    table = _day_numbers()
    for size in (19, 20, 25):
        rows = np.flatnonzero(length == size)
        if not len(rows):
            continue
        # the value's bytes as a (rows, size) matrix through a sliding window (no index matrix)
        window = np.ndarray(shape=(max(len(raw) - size + 1, 0), size), dtype=np.uint8, buffer=raw,
                            strides=(1, 1))
        b = window[offsets[rows]]
        d = b[:, _DIGITS] - np.uint8(48)  # a byte below "0" wraps above 9
        good = (d <= 9).all(axis=1)
        good &= (b[:, 4] == 45) & (b[:, 7] == 45) & ((b[:, 10] == 84) | (b[:, 10] == 32))
        good &= (b[:, 13] == 58) & (b[:, 16] == 58)
        shift = 0
        if size == 20:
            good &= b[:, 19] == 90
        elif size == 25:
            z = b[:, [20, 21, 23, 24]] - np.uint8(48)
            good &= (z <= 9).all(axis=1) & ((b[:, 19] == 43) | (b[:, 19] == 45)) & (b[:, 22] == 58)
            z = z.astype(np.int32)
            oh, om = z[:, 0] * 10 + z[:, 1], z[:, 2] * 10 + z[:, 3]
            good &= (oh <= 23) & (om <= 59)
            shift = np.where(b[:, 19] == 43, -1, 1) * (oh * 3600 + om * 60)
        d = d.astype(np.int32)
        year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
        month, day, hour = d[:, 4] * 10 + d[:, 5], d[:, 6] * 10 + d[:, 7], d[:, 8] * 10 + d[:, 9]
        good &= (year >= _YEAR_LO) & (year < _YEAR_HI) & (month <= 15) & (day <= 31)
        good &= (hour <= 23) & (d[:, 10] <= 5) & (d[:, 12] <= 5)  # minutes and seconds <= 59
        days = table[np.where(good, (year - _YEAR_LO) * 512 + month * 32 + day, 0)]
        good &= days != _NO_DAY
        secs = (days.astype(np.int64) * 86400 + hour * 3600 + (d[:, 10] * 10 + d[:, 11]) * 60
                + d[:, 12] * 10 + d[:, 13] + shift)
        ns[rows] = np.where(good, secs * 1_000_000_000, 0)
        ok[rows] = good
    return ns, ok


def _date(raw: pd.DataFrame, col: str, rej: _Rejector, formats: Sequence[str] = ()) -> pd.Series:
    """Parse ISO 8601 dates, or with each of ``formats`` in turn (never a guessed format).

    A typed (Parquet) date or timestamp column is checked without text: null is missing,
    naive timestamps are taken as UTC like naive text.
    """
    s = raw[col]
    if _typed(s):
        return _date_typed(s, col, rej)
    missing = _empty(s)
    if formats:
        parsed = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]")
        for fmt in formats:
            todo = parsed.isna() & ~missing
            if not todo.any():
                break
            got = pd.to_datetime(s[todo], errors="coerce", utc=True, format=fmt)
            parsed[todo] = got.astype("datetime64[ns, UTC]")
        values = parsed.dt.tz_convert(None).to_numpy().astype("datetime64[ns]").view(np.int64)
        bad = parsed.isna().to_numpy() & ~missing
    else:
        values, ok = _iso_fast(_arrow(s))
        rest = np.flatnonzero(~ok & ~missing)
        bad = np.zeros(len(s), dtype=bool)
        if len(rest):
            got = pd.to_datetime(s.iloc[rest], errors="coerce", utc=True, format="ISO8601")
            got = got.dt.tz_convert(None).to_numpy().astype("datetime64[ns]")
            bad[rest] = np.isnat(got)
            values[rest] = np.where(np.isnat(got), 0, got.view(np.int64))
    rej.flag(missing, col, MISSING)
    rej.flag(bad, col, BAD_DATE)
    valid = ~missing & ~bad
    outside = valid & ((values < _DATE_LO) | (values >= _DATE_HI))
    rej.flag(outside, col, OUT_OF_RANGE)
    values = np.where(valid & ~outside, values, np.iinfo(np.int64).min)  # NaT elsewhere
    return pd.Series(values.view("datetime64[ns]"), index=raw.index)


def _date_typed(s: pd.Series, col: str, rej: _Rejector) -> pd.Series:
    arr = _arrow(s)
    if pa.types.is_date(arr.type):
        arr = pc.cast(pc.cast(arr, pa.date32()), pa.timestamp("s"))
    if not pa.types.is_timestamp(arr.type):  # a number column mapped to a date
        text = readers.as_text(s)
        return _date(pd.DataFrame({col: text}, index=s.index), col, rej)
    per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[arr.type.unit]
    missing = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    ticks = pc.fill_null(pc.cast(arr, pa.int64()), 0).to_numpy(zero_copy_only=False)
    lo, hi = _DATE_LO // (10**9 // per_second), _DATE_HI // (10**9 // per_second)
    outside = ~missing & ((ticks < lo) | (ticks >= hi))
    rej.flag(missing, col, MISSING)
    rej.flag(outside, col, OUT_OF_RANGE)
    values = np.where(missing | outside, np.iinfo(np.int64).min, ticks * (10**9 // per_second))
    return pd.Series(values.view("datetime64[ns]"), index=s.index)


_NUMBER = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"


def _plain_numbers(text: pa.Array) -> np.ndarray:
    """Return True where ``text`` is a plain decimal number (``_NUMBER``).

    Digits with at most one ``.`` are found without a regular expression (one ``.`` removed,
    then all ASCII digits); only the other non-empty values go through the regex.
    """
    ok = _bools(pc.ascii_is_decimal(pc.replace_substring(text, ".", "", max_replacements=1)))
    rest = np.flatnonzero(~ok & _bools(pc.not_equal(text, "")))
    if len(rest):
        ok[rest] = _bools(pc.match_substring_regex(text.take(pa.array(rest)), _NUMBER))
    return ok


def _to_float(s: pd.Series) -> np.ndarray:
    """Return ``s`` parsed as float64, NaN where it is not a plain decimal number.

    Same results as ``pd.to_numeric(errors="coerce")`` on stripped text (``inf``/``nan`` words
    aside, which callers reject anyway), done in Arrow.
    """
    if _typed(s):
        return pc.cast(_arrow(s), pa.float64()).to_numpy(zero_copy_only=False)
    text = _arrow(s)
    floats = mappings.cast_numbers(text)  # every value a number (or empty): done
    if floats is None:
        floats = pc.cast(mappings.valid_where(text, _plain_numbers(text)), pa.float64())
    return floats.to_numpy(zero_copy_only=False)


def _number(raw: pd.DataFrame, col: str, rej: _Rejector, *, required: bool = False,
            low: float | None = None, high: float | None = None,
            low_reason: str = OUT_OF_RANGE) -> pd.Series:
    s = raw[col]
    missing = _empty(s)
    values = np.asarray(_to_float(s), dtype=np.float64)
    if required:
        rej.flag(missing, col, MISSING)
    rej.flag(~np.isfinite(values) & ~missing, col, BAD_NUMBER)
    if low is not None:
        rej.flag(values < low, col, low_reason)
    if high is not None:
        rej.flag(values > high, col, OUT_OF_RANGE)
    return pd.Series(values, index=raw.index)


def _boolean(raw: pd.DataFrame, col: str, rej: _Rejector) -> pd.Series:
    s = readers.as_text(raw[col]).str.lower()
    yes = s.isin(TRUE_WORDS).to_numpy()
    no = s.isin(FALSE_WORDS).to_numpy()
    rej.flag(~(yes | no) & s.ne("").to_numpy(), col, BAD_BOOLEAN)
    return pd.Series(pd.arrays.BooleanArray(yes, ~(yes | no)), index=raw.index)


# --- validation per kind ------------------------------------------------------------------
def _fx_rates(config: IngestConfig, base: str) -> dict[str, float]:
    rates = {str(k).strip().upper(): v for k, v in config.fx_rates.items()}
    for code, rate in rates.items():
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (
            math.isfinite(rate) and rate > 0
        ):
            raise ConfigError(f"ingest.fx_rates.{code}: rate must be a positive number, got {rate!r}")
    if rates.get(base, 1.0) != 1.0:
        raise ConfigError(
            f"ingest.fx_rates.{base}: the base currency's rate must be 1, got {rates[base]!r}"
            " (rates are units of base currency per unit of currency)"
        )
    rates[base] = 1.0
    return {k: float(v) for k, v in rates.items()}


def _fx_table(config: IngestConfig, base: str) -> pd.DataFrame | None:
    """Return dated rates (``date, currency, rate``, sorted by date) or None when not configured.

    From ``ingest.fx_history`` (inline: currency -> {date: rate}) and ``ingest.fx_table`` (a
    CSV with columns ``date, currency, rate``); rates are units of base currency per unit.
    """
    parts = []
    for code, by_date in config.fx_history.items():
        if not isinstance(by_date, dict):
            raise ConfigError(f"ingest.fx_history.{code}: must be a mapping of date: rate")
        dates = pd.to_datetime(pd.Series([str(d) for d in by_date], dtype=object), errors="coerce",
                               format="ISO8601")
        if dates.isna().any():
            bad = list(by_date)[int(np.flatnonzero(dates.isna().to_numpy())[0])]
            raise ConfigError(f"ingest.fx_history.{code}.{bad}: not a date (use YYYY-MM-DD)")
        parts.append(pd.DataFrame({"date": dates.to_numpy(), "currency": str(code).strip().upper(),
                                   "rate": list(by_date.values())}))
    if config.fx_table:
        path = Path(config.fx_table)
        try:
            table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        except FileNotFoundError:
            raise ConfigError(f"{path}: fx table not found (ingest.fx_table)") from None
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            raise ConfigError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
        table.columns = [c.strip().lower() for c in table.columns]
        missing = [c for c in ("date", "currency", "rate") if c not in table]
        if missing:
            raise ConfigError(f"{path}: fx table lacks column {', '.join(repr(c) for c in missing)}")
        dates = pd.to_datetime(table["date"].str.strip(), errors="coerce", format="ISO8601")
        rates = pd.to_numeric(table["rate"].str.strip(), errors="coerce")
        bad = dates.isna() | rates.isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            what = "date" if dates.isna().iloc[row] else "rate"
            raise ConfigError(f"{path}: line {row + 2}: unparsable {what}")
        parts.append(pd.DataFrame({"date": dates.to_numpy(),
                                   "currency": table["currency"].str.strip().str.upper().to_numpy(),
                                   "rate": rates.to_numpy()}))
    if not parts:
        return None
    table = pd.concat(parts, ignore_index=True)
    rate = pd.to_numeric(table["rate"], errors="coerce")
    if (~np.isfinite(rate) | (rate <= 0)).any():
        row = table[~np.isfinite(rate) | (rate <= 0)].iloc[0]
        raise ConfigError(f"ingest.fx_table: rate for {row['currency']} on {row['date'].date()} must be "
                          f"a positive number")
    table["rate"] = rate.astype(float)
    table["date"] = table["date"].astype("datetime64[ns]")
    table = table[table["currency"] != base]
    return table.sort_values("date", kind="stable", ignore_index=True)


def _rates(currency: pd.Series, dates: pd.Series, rates: dict[str, float],
           table: pd.DataFrame | None, rej: _Rejector) -> pd.Series:
    """Return each row's rate: dated (latest on or before the order date), else the fixed one."""
    codes, uniques = pd.factorize(currency)
    rate = pd.Series(np.array([rates.get(u, np.nan) for u in uniques] + [np.nan])[codes],
                     index=currency.index)
    if table is None or table.empty:
        return rate
    dated = currency.isin(set(table["currency"])) & dates.notna()
    if dated.any():
        left = pd.DataFrame({"date": dates[dated].astype("datetime64[ns]"),
                             "currency": currency[dated].astype(table["currency"].dtype),
                             "pos": np.flatnonzero(dated.to_numpy())})
        left = left.sort_values("date", kind="stable")
        got = pd.merge_asof(left, table, on="date", by="currency", direction="backward")
        values = rate.to_numpy().copy()
        values[got["pos"].to_numpy()] = got["rate"].to_numpy()
        rate = pd.Series(values, index=currency.index)
        rej.flag(dated.to_numpy() & np.isnan(values), "currency", NO_FX_RATE)
    return rate


def _validate_orders(raw: pd.DataFrame, mapping: mappings.Mapping | None, config: IngestConfig,
                     rates: dict[str, float], table: pd.DataFrame | None,
                     base: str) -> tuple[pd.DataFrame, _Rejector]:
    rej = _Rejector(len(raw))
    out = {
        "order_id": _text(raw, "order_id", rej, required=True),
        "customer_id": _text(raw, "customer_id", rej, required=True),
        "order_date": _date(raw, "order_date", rej, mapping.date_formats if mapping else ()),
    }
    amount = _number(raw, "amount", rej, required=True, low=0.0, low_reason=NEGATIVE)
    known = tuple(rates) + (tuple(table["currency"].unique()) if table is not None else ())
    currency = _choice(raw, "currency", rej, known, UNKNOWN_CURRENCY, case="upper", default=base,
                       categorical=True)
    rate = _rates(currency, out["order_date"], rates, table, rej)
    out["amount"] = amount * rate
    out["currency"] = currency
    out["status"] = _choice(raw, "status", rej, schema.ORDER_STATUSES, UNKNOWN_STATUS,
                            case="lower", default=config.default_status, categorical=True)
    cases = {"country": "upper", "channel": "lower"}
    for col in ("country", "channel", "email", "first_name", "category"):
        if col in raw:
            if col in schema.ORDER_CATEGORIES:
                out[col] = _category(raw, col, rej, case=cases.get(col))
            else:
                out[col] = _text(raw, col, rej, case=cases.get(col))
    for col in schema.ORDER_MONEY:
        if col in raw:
            out[col] = _number(raw, col, rej, low=0.0, low_reason=NEGATIVE) * rate
    for col in schema.ORDER_NUMERIC:
        if col in raw:
            high = 5.0 if col == "review_score" else None
            out[col] = _number(raw, col, rej, low=1.0 if high else 0.0, high=high)
    return pd.DataFrame(out, index=raw.index, copy=False), rej


def _validate_events(raw: pd.DataFrame, _mapping=None) -> tuple[pd.DataFrame, _Rejector]:
    rej = _Rejector(len(raw))
    out = {
        "customer_id": _text(raw, "customer_id", rej, required=True),
        "event_time": _date(raw, "event_time", rej),
        "event_type": _choice(raw, "event_type", rej, schema.EVENT_TYPES, UNKNOWN_EVENT_TYPE,
                              case="lower", required=True),
    }
    if "topic" in raw:
        out["topic"] = _choice(raw, "topic", rej, schema.EVENT_TOPICS, UNKNOWN_TOPIC, case="lower")
    if "value" in raw:
        out["value"] = _number(raw, "value", rej)
    return pd.DataFrame(out, index=raw.index), rej


def _validate_customers(raw: pd.DataFrame, _mapping=None) -> tuple[pd.DataFrame, _Rejector]:
    rej = _Rejector(len(raw))
    out = {"customer_id": _text(raw, "customer_id", rej, required=True)}
    cases = {"country": "upper", "language": "lower"}
    for col in ("email", "first_name", "last_name", "phone", "city", "zip", "country", "language", "timezone"):
        if col in raw:
            out[col] = _text(raw, col, rej, case=cases.get(col))
    for col in ("marketing_consent", "unsubscribed"):
        if col in raw:
            out[col] = _boolean(raw, col, rej)
    return pd.DataFrame(out, index=raw.index), rej


# --- one file ------------------------------------------------------------------------------
# Platform exports: buyer names, addresses, notes (free text) and tax ids are redacted too.
_PII_PARTS_EXTRA = ("name", "street", "zip", "postal", "postcode", "city", "username", "recipient", "note",
                    "tax identifier", "company")


def _is_pii(column: str) -> bool:
    return (column in schema.PII_COLUMNS or any(part in column for part in _PII_PARTS)
            or any(part in column for part in _PII_PARTS_EXTRA))


def _batch_rejects(name: str, names: list[str], raw: pd.DataFrame, line: np.ndarray,
                   rej: _Rejector) -> pd.DataFrame:
    rows = raw[rej.bad]
    values = {}
    for i, c in enumerate(names):
        col = readers.as_text(rows.iloc[:, i])
        values[f"orig_{c}" if c in REJECT_COLUMNS else c] = (
            col.mask(col.ne(""), REDACTED) if _is_pii(c) else col).to_numpy()
    column, reason = rej.details(rej.bad)
    return pd.DataFrame({"file": name, "line": line[rej.bad], "column": column, "reason": reason, **values})


@dataclass
class _FileResult:
    parts: list[pd.DataFrame]  # validated blocks, in file order
    valid: np.ndarray  # per row of the parts: not rejected
    rejects: pd.DataFrame | None
    stats: FileStats


def _ingest_file(spec: str, kind: str, required: Sequence[str], order: Sequence[str],
                 validate: Callable[[pd.DataFrame, mappings.Mapping | None], tuple[pd.DataFrame, _Rejector]],
                 config: IngestConfig, mapping: mappings.Mapping | None,
                 known_presets: dict | None) -> _FileResult:
    encoding = None
    serial = False
    while True:
        try:
            result = _ingest_once(spec, kind, required, order, validate, config, mapping,
                                  known_presets, encoding, serial)
        except readers.SerialNeeded:
            serial = True
            continue
        except readers.ReencodeNeeded:
            if encoding == "latin-1":  # pragma: no cover - Latin-1 decodes every byte
                raise InputError(f"{spec}: cannot decode the text") from None
            # cp1252 leaves 5 bytes undefined; Latin-1 then reads any byte
            encoding = "cp1252" if encoding is None else "latin-1"
            continue
        if encoding:
            name = "Windows-1252" if encoding == "cp1252" else "Latin-1"
            warning = f"not UTF-8: read as {name}; save it as UTF-8 to be sure"
            result.stats.warnings.append(warning)
            log.warning("%s: %s", result.stats.file, warning)
        return result


def _ingest_once(spec, kind, required, order, validate, config, mapping, known_presets,
                 encoding, serial=False) -> _FileResult:
    src = readers.open_source(spec, encoding=encoding, block_bytes=max(config.block_kb, 4) << 10,
                              chunk_rows=config.chunk_rows, kind=kind, serial=serial)
    if src.encoding == "cp1252" and encoding is None:
        raise readers.ReencodeNeeded("detected from the first bytes")
    plan = _plan(src, kind, required, order, mapping, known_presets)
    if plan.mapping is not None:
        src.skip_pattern = plan.mapping.skip_lines_matching
    if plan.mapping is not None:
        log.info("ingest   %s: preset %s%s", src.name, plan.mapping.name,
                 "" if mapping is not None else " (detected from header)")
    sums = [t for t, f in plan.mapping.fields.items() if f.aggregate == "sum"] if (
        plan.mapping is not None) else []
    line_items = plan.mapping is not None and plan.mapping.line_items
    parts, valid, rejects = [], [], []
    read = skipped = collapsed = 0
    carry = None

    def process(raw: pd.DataFrame, canon: pd.DataFrame, line: np.ndarray) -> None:
        nonlocal collapsed
        if line_items:
            canon, raw, line, n = _collapse_items(canon, raw, line, sums)
            collapsed += n
        flag = canon.pop("_broken")
        broken = flag.eq("1").to_numpy(dtype=bool) if line_items else flag.to_numpy(dtype=bool)
        typed, rej = validate(canon, plan.mapping)
        if broken.any():
            rej.override(broken, "", BROKEN_QUOTING)
        ok = ~rej.bad
        parts.append(typed)  # rejected rows are dropped when the frame is built (one copy)
        valid.append(ok)
        if rej.bad.any():
            rejects.append(_batch_rejects(src.name, plan.names, raw, line, rej))

    try:
        for batch in src.batches:
            raw, line, n_skip = _records(src, batch, plan)
            skipped += n_skip
            read += len(raw)
            if not len(raw):
                continue
            if line_items:  # items are merged as text: typed Parquet columns become text first
                raw = raw.apply(readers.as_text)
            canon = _to_canonical(plan, src.name, src.header, raw, config)
            canon["_broken"] = np.where(plan.broken, "1", "") if line_items else plan.broken
            if line_items:
                if carry is not None:
                    raw = pd.concat([carry[0], raw], ignore_index=True)
                    canon = pd.concat([carry[1], canon], ignore_index=True)
                    line = np.concatenate([carry[2], line])
                last = canon["order_id"].iloc[-1]
                same = canon["order_id"].eq(last).to_numpy(dtype=bool) if last != "" else np.zeros(len(canon), bool)
                tail = same & (np.arange(len(canon)) >= np.flatnonzero(~same).max(initial=-1) + 1)
                carry = (raw[tail].reset_index(drop=True), canon[tail].reset_index(drop=True), line[tail])
                if tail.all():
                    continue
                raw, canon, line = raw[~tail], canon[~tail], line[~tail]
            process(raw, canon, line)
    finally:  # a validation error mid-file stops the reading thread now, not when collected
        getattr(src.batches, "close", lambda: None)()
    if carry is not None and len(carry[0]):
        process(*carry)
    skipped += len(src.skipped_lines)
    if src.malformed:
        rejects.append(pd.DataFrame({"file": src.name, "line": np.asarray(src.malformed, dtype=np.int64),
                                     "column": "", "reason": FIELD_COUNT}))
        read += len(src.malformed)
    if read == 0 and skipped == 0 and src.fmt == "csv":
        raise InputError(f"{src.name}: empty file (header but no rows)")
    if not parts:
        parts = [pd.DataFrame({c: pd.Series(dtype=object) for c in required})]
        valid = [np.zeros(0, dtype=bool)]
    file_rejects = _concat_rejects(rejects)
    if len(src.malformed) and len(file_rejects):
        file_rejects = file_rejects.sort_values("line", kind="stable", ignore_index=True)
    counts = file_rejects["reason"].value_counts()
    stats = FileStats(
        file=src.name, kind=kind, read=read, accepted=int(sum(v.sum() for v in valid)), rejected=len(file_rejects),
        collapsed=collapsed,
        rejected_by_reason={r: int(counts[r]) for r in sorted(counts.index, key=lambda r: (-counts[r], r))},
        preset=plan.mapping.name if plan.mapping is not None else None,
        format=src.fmt + (f"+{src.compression}" if src.compression else ""),
        encoding=src.encoding or None, delimiter=src.delimiter or None, skipped=skipped)
    return _FileResult(parts, np.concatenate(valid), file_rejects if len(file_rejects) else None, stats)


def _concat_rejects(rejects: list[pd.DataFrame]) -> pd.DataFrame:
    rejects = [r for r in rejects if len(r)]
    if rejects:
        return pd.concat(rejects, ignore_index=True) if len(rejects) > 1 else rejects[0]
    return pd.DataFrame({"file": pd.Series(dtype=_TEXT), "line": pd.Series(dtype="int64"),
                         "column": pd.Series(dtype=_TEXT), "reason": pd.Series(dtype=_TEXT)})


# --- combining files ------------------------------------------------------------------------
def _align(parts: list[pd.DataFrame], order: Sequence[str], keep: np.ndarray | None = None) -> pd.DataFrame:
    """Build the frame once from validated blocks whose optional columns differ.

    Column by column (two columns at a time, on two threads: the copies and Arrow filters
    release the GIL), each column's pieces released as it is built (and keeping only the rows
    of ``keep`` when given), so the peak is the result plus two columns rather than twice the
    data.  Text columns (Arrow) are chained without another copy, number columns are filled
    into one array, categorical columns get the union of the parts' categories (sorted).
    The parts are emptied.
    """
    sizes = [len(p) for p in parts]
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    masks = [None if keep is None else keep[bounds[i]:bounds[i + 1]] for i in range(len(parts))]
    total = int(bounds[-1]) if keep is None else int(keep.sum())
    dtypes: dict[str, object] = {}
    for part in parts:
        dtypes.update({c: t for c, t in part.dtypes.items() if c not in dtypes})
    columns = [c for c in order if c in dtypes] + [c for c in dtypes if c not in order]
    # each column's pieces (None where a part lacks it); the parts themselves are let go
    pieces_of = {c: [p[c] if c in p else None for p in parts] for c in columns}
    parts.clear()

    def build(c: str) -> pd.Series:
        pieces = pieces_of.pop(c)
        dtype = dtypes[c]
        if isinstance(dtype, pd.CategoricalDtype):
            built = _align_categorical(pieces, sizes, masks, total)
        elif isinstance(dtype, np.dtype) and dtype.kind in "fiumMb" and all(p is not None for p in pieces):
            values = np.empty(total, dtype=dtype)
            at = 0
            for j, mask in enumerate(masks):
                piece = pieces[j].to_numpy()
                pieces[j] = None
                piece = piece if mask is None else piece[mask]
                values[at:at + len(piece)] = piece
                at += len(piece)
                del piece
            built = pd.Series(values, copy=False)
        else:
            for j, mask in enumerate(masks):
                if pieces[j] is None:
                    piece = pd.Series(np.nan, index=pd.RangeIndex(sizes[j]), dtype=object).astype(dtype).array
                else:
                    piece = pieces[j].array
                pieces[j] = pd.Series(piece if mask is None or mask.all() else piece[mask], copy=False)
            built = pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else pieces[0]
        del pieces
        memory.release()
        return built

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="churnctl-frame") as pool:
        out = dict(zip(columns, pool.map(build, columns)))
    return pd.DataFrame(out, copy=False)


def _align_categorical(pieces: list, sizes: list[int], masks: list, total: int) -> pd.Series:
    """Return a categorical column of the parts' kept rows from its pieces (None: no column).

    The categories are those the kept rows use, sorted: the union of the parts' categories
    (``union_categoricals(sort_categories=True)``) without the ones only rejected or replaced
    rows had.  Codes are written once into the result, part by part.
    """
    cats = [None if p is None else p.cat.categories for p in pieces]
    union = pd.api.types.union_categoricals(
        [pd.Categorical([], categories=k) for k in cats if k is not None], sort_categories=True).categories
    codes = np.empty(total, dtype=np.int16 if len(union) < 2**15 else np.int32)
    at = 0
    for j, (mask, k) in enumerate(zip(masks, cats)):
        n = sizes[j] if mask is None else int(mask.sum())
        if k is None:
            codes[at:at + n] = -1
        else:
            lookup = np.append(union.get_indexer(k), -1).astype(codes.dtype)  # code -1 stays -1
            piece = pieces[j].cat.codes.to_numpy()
            pieces[j] = None
            codes[at:at + n] = lookup[piece if mask is None else piece[mask]]
        at += n
    used = np.bincount(codes.astype(np.intp) + 1, minlength=len(union) + 1)[1:] > 0
    if not used.all():
        renumber = np.append(np.cumsum(used) - 1, -1).astype(codes.dtype)
        codes, union = renumber[codes], union[used]
    return pd.Series(pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(union, ordered=False)))


def _take(frame: pd.DataFrame, keep: np.ndarray) -> pd.DataFrame:
    """Return ``frame[keep]`` built column by column (peak: the result plus one column)."""
    out = {}
    for c in list(frame.columns):
        out[c] = frame.pop(c)[keep].reset_index(drop=True)
    return pd.DataFrame(out, copy=False)


def _load(paths: Sequence[Path | str] | Path | str, kind: str, required: Sequence[str],
          order: Sequence[str], validate, key: Sequence[str] | None, config: IngestConfig,
          mapping: mappings.Mapping | None = None, known_presets: dict | None = None) -> Loaded:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    specs = readers.expand(list(paths), kind)
    if not specs:
        raise InputError(f"no {kind} file given")
    parts, valid, rejects, stats, sizes = [], [], [], [], []
    for spec in specs:
        result = _ingest_file(spec, kind, required, order, validate, config, mapping, known_presets)
        parts.extend(result.parts)
        valid.append(result.valid)
        sizes.append(int(result.valid.sum()))
        if result.rejects is not None:
            rejects.append(result.rejects)
        stats.append(result.stats)
        del result

    memory.release()
    src = np.repeat(np.arange(len(specs)), sizes)  # per accepted row: its file
    rows = np.flatnonzero(np.concatenate(valid))  # accepted rows among the parts' rows
    del valid
    describe = None
    if kind == "orders" and len(src):
        # customers, dates and currencies are counted on a second thread during the de-duplication
        # (hashing, sorting and Arrow comparisons release the GIL)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="churnctl-describe")
        describe = pool.submit(_describe_facts, _DescribeInput.of(parts), rows, src, stats)
        pool.shutdown(wait=False)
    customers = None  # orders: the accepted rows' customer codes, from the description
    if key:
        # the frame is built once, from the validated blocks: accepted rows, latest version only
        dup = _duplicated_last(_chain(parts, key[0]), rows)
        if describe is not None:
            customers = describe.result()  # before the frame is built: the peak stays one step's arrays
        keep = np.zeros(sum(len(p) for p in parts), dtype=bool)
        keep[rows[~dup]] = True
        frame = _align(parts, order, keep=None if keep.all() else keep)
    else:
        frame = _align(parts, order, keep=np.isin(np.arange(sum(len(p) for p in parts)), rows))
        dup = frame.duplicated(keep="last").to_numpy()
        frame = _take(frame, ~dup) if dup.any() else frame
    codes = None
    if customers is not None:
        codes = _first_appearance(customers[~dup] if dup.any() else customers, frame["customer_id"])
        del customers
    collapsed = np.bincount(src[dup], minlength=len(specs))
    accepted = np.bincount(src[~dup], minlength=len(specs))
    for i, s in enumerate(stats):
        s.collapsed += int(collapsed[i])
        s.accepted = int(accepted[i])
    memory.release()
    return Loaded(frame=frame, rejects=_concat_rejects(rejects), stats=stats, customer_codes=codes)


def _first_appearance(codes: np.ndarray, ids: pd.Series) -> tuple[np.ndarray, pa.Array]:
    """Return ``codes`` (equal id, equal code; any numbering) renumbered in order of first
    appearance, and the distinct ids in that order: what ``export.customer_codes(frame)``
    computes with a second hash pass over the ids, from the ingest's own coding.

    ``ids`` is the frame's ``customer_id``; ``codes`` its codes, row for row (every row has one:
    an order without a customer id is rejected).
    """
    n = len(codes)
    k = int(codes.max(initial=-1)) + 1
    first = np.full(k, n, dtype=np.int64)
    np.minimum.at(first, codes, np.arange(n, dtype=np.int64))
    by_first = np.argsort(first, kind="stable")
    by_first = by_first[first[by_first] < n]  # a code no kept row has (cannot happen: defensive)
    rank = np.full(k, -1, dtype=np.intp)
    rank[by_first] = np.arange(len(by_first), dtype=np.intp)
    text = pa.chunked_array(ids.array.__arrow_array__().chunks) if hasattr(ids.array, "__arrow_array__") \
        else pa.chunked_array([pa.array(ids.array, from_pandas=True)])
    uniques = text.take(pa.array(first[by_first])).combine_chunks()
    return rank[codes], uniques


def _filter(frame: pd.DataFrame, keep: np.ndarray) -> pd.DataFrame:
    """Return ``frame[keep]`` column by column (one array per column, never consolidated)."""
    return pd.DataFrame({c: frame[c][keep].reset_index(drop=True) for c in frame.columns}, copy=False)


def _chain(parts: list[pd.DataFrame], col: str) -> pd.Series:
    """Return column ``col`` of all parts as one Series (Arrow text: chunks chained, no copy)."""
    pieces = [p[col] for p in parts]
    if all(isinstance(getattr(x.array, "__arrow_array__", None), Callable) for x in pieces) and all(
            not isinstance(x.dtype, pd.CategoricalDtype) for x in pieces):
        chunks = [c for x in pieces for c in x.array.__arrow_array__().chunks]
        chained = pa.chunked_array(chunks, type=chunks[0].type) if chunks else pa.chunked_array([], pa.large_string())
        return pd.Series(pd.arrays.ArrowExtensionArray(chained))
    return pd.concat(pieces, ignore_index=True)


def _codes(s: pd.Series) -> np.ndarray:
    """Return integer codes of a text column (equal text, equal code) computed in Arrow.

    Hashing Arrow strings directly avoids pandas' conversion to Python objects, which for 10M
    ids costs about 2 GB.
    """
    if isinstance(s.dtype, pd.CategoricalDtype):
        codes = s.cat.codes.to_numpy().astype(np.int64)
        return np.where(codes < 0, len(s.cat.categories), codes)
    codes, uniques = s.array.factorize()  # Arrow-backed text: hashed in Arrow, chunk by chunk
    codes = np.asarray(codes, dtype=np.int64)
    return np.where(codes < 0, len(uniques), codes)


def _hash64(key: pd.Series) -> np.ndarray | None:
    """Return a 64-bit FNV-1a hash of each text value, computed in numpy over the Arrow bytes.

    About 8 bytes a row and no hash table: for 10M order ids this replaces a dictionary
    encoding that needs about 900 MB.  Returns None for a column that is not Arrow text.
    """
    arr = getattr(key.array, "__arrow_array__", None)
    if arr is None:
        return None
    chunks = arr().chunks
    if not all(pa.types.is_string(c.type) or pa.types.is_large_string(c.type) for c in chunks):
        return None
    out = np.empty(sum(len(c) for c in chunks), dtype=np.uint64)
    at = 0
    prime = np.uint64(1099511628211)
    for chunk in chunks:
        chunk = pc.fill_null(chunk, "")
        offsets, raw = _offsets(chunk)
        starts, lengths = offsets[:-1].astype(np.int64), np.diff(offsets).astype(np.int64)
        h = np.full(len(chunk), np.uint64(14695981039346656037), dtype=np.uint64)
        h ^= lengths.astype(np.uint64)
        # 8 bytes at a time: unaligned little-endian words read through a 1-byte stride view
        padded = np.zeros(len(raw) + 8, dtype=np.uint8)
        padded[:len(raw)] = raw
        words = np.ndarray(shape=(len(raw) + 1,), dtype="<u8", buffer=padded, strides=(1,))
        rows = np.arange(len(chunk))
        for j in range(0, int(lengths.max(initial=0)), 8):
            if j:
                rows = rows[lengths[rows] > j]
            word = words[starts[rows] + j]
            left = lengths[rows] - j
            short = left < 8
            if short.any():  # the last word of a value: bytes past its end are not its own
                word[short] &= (np.uint64(1) << (left[short].astype(np.uint64) * np.uint64(8))) - np.uint64(1)
            x = h[rows] ^ word
            x *= prime
            x ^= x >> np.uint64(29)
            h[rows] = x
        out[at:at + len(h)] = h
        at += len(h)
    return out


def _duplicated_last(key: pd.Series, rows: np.ndarray) -> np.ndarray:
    """Return, for ``key[rows]``, True where the key appears again later (the last version is kept).

    Rows are grouped by a 64-bit hash of the key (sorted in 8 groups by the hash's top 3 bits,
    so the sort's arrays are an eighth of the rows); every row found to repeat a later one is
    checked against it by its text, so a hash collision can never drop an order (the exact,
    slower dictionary encoding is used then).
    """
    n = len(rows)
    h = _hash64(key)
    if h is None:
        return _duplicated_exact(key.iloc[rows])
    group = (h >> np.uint64(61)).astype(np.uint8)[rows]
    dup = np.zeros(n, dtype=bool)
    mine, theirs = [], []  # rows of key: each duplicate, and the later row it gives way to
    for g in range(8):
        pos = np.flatnonzero(group == g)  # positions in rows, ascending
        if len(pos) < 2:
            continue
        hg = h[rows[pos]]
        order = np.argsort(hg, kind="stable")
        hs = hg[order]
        del hg
        last_of_run = np.ones(len(pos), dtype=bool)
        last_of_run[:-1] = hs[1:] != hs[:-1]
        del hs
        if last_of_run.all():
            continue
        dup[pos[order[~last_of_run]]] = True
        # the row each duplicate gives way to: the last row of its run of equal hashes
        run_end = np.flatnonzero(last_of_run)
        later = order[run_end[np.searchsorted(run_end, np.flatnonzero(~last_of_run))]]
        mine.append(rows[pos[order[~last_of_run]]])
        theirs.append(rows[pos[later]])
    del h, group
    if mine:
        text = pa.chunked_array(key.array.__arrow_array__().chunks)
        equal = pc.equal(text.take(pa.array(np.concatenate(mine))), text.take(pa.array(np.concatenate(theirs))))
        if not _bools(equal).all():  # a 64-bit collision
            return _duplicated_exact(key.iloc[rows])
    return dup


def _group_codes(key: pd.Series, rows: np.ndarray | None = None) -> np.ndarray:
    """Return integer codes of a text column (equal text, equal code) from its 64-bit hashes.

    ``rows`` (ascending): code only these rows (default all).  The hashes are coded in 8
    groups (by their top 3 bits), each with a hash table an eighth the size: faster and
    smaller than one table for all rows.  Each row's text is compared with the first row of
    its code, so a hash collision falls back to the exact dictionary encoding.
    """
    h = _hash64(key)
    if h is None:
        return _codes(key) if rows is None else _codes(key)[rows]
    group = (h >> np.uint64(61)).astype(np.uint8)
    if rows is not None:
        group = group[rows]
    codes = np.empty(len(group), dtype=np.int64)
    firsts, k = [], 0
    for g in range(8):
        pos = np.flatnonzero(group == g)
        if not len(pos):
            continue
        at = pos if rows is None else rows[pos]
        local, uniques = pd.factorize(h[at])  # codes in order of first appearance
        codes[pos] = local + k
        new = np.ones(len(local), dtype=bool)
        new[1:] = local[1:] > np.maximum.accumulate(local)[:-1]
        firsts.append(at[new])  # first row of each of the group's codes, by code
        k += len(uniques)
    del h, group
    first = np.concatenate(firsts) if firsts else np.zeros(0, dtype=np.int64)
    text = pa.chunked_array(key.array.__arrow_array__().chunks)
    firsts = text.take(pa.array(first)).combine_chunks()  # one text per code
    start = 0
    for chunk in text.chunks:  # chunk by chunk: a copy of one block's text at a time
        if rows is None:
            lo, hi, values = start, start + len(chunk), chunk
        else:
            lo, hi = np.searchsorted(rows, [start, start + len(chunk)])
            values = chunk.take(pa.array(rows[lo:hi] - start))
        if not _bools(pc.equal(values, firsts.take(pa.array(codes[lo:hi])))).all():
            return _codes(key) if rows is None else _codes(key)[rows]  # a collision
        start += len(chunk)
    return codes


def _duplicated_exact(key: pd.Series) -> np.ndarray:
    codes = _codes(key)
    n = len(codes)
    k = int(codes.max(initial=-1)) + 1
    if k == n:
        return np.zeros(n, dtype=bool)
    last = np.full(k, -1, dtype=np.int64)
    np.maximum.at(last, codes, np.arange(n, dtype=np.int64))
    return last[codes] != np.arange(n)


def _describe(parts: list[pd.DataFrame], rows: np.ndarray, src: np.ndarray, stats: list[FileStats]) -> None:
    """Fill each file's customers, merges, date range and currencies (from its valid rows).

    ``rows`` are the accepted rows among the parts' rows, ``src`` their file.  Dates and
    currencies are read part by part (no column of all rows is built); customers are coded
    over all rows at once.
    """
    _describe_facts(_DescribeInput.of(parts), rows, src, stats)


@dataclass
class _DescribeInput:
    """The columns :func:`_describe` reads, taken from the parts (they stay valid while the
    frame is built from the parts on another thread)."""

    customer_id: pd.Series
    channel: list | None  # per part: (codes, categories), or None when no part has a channel
    order_date: list[np.ndarray]
    currency: list[tuple[np.ndarray, pd.Index]]
    sizes: list[int]

    @classmethod
    def of(cls, parts: list[pd.DataFrame]) -> "_DescribeInput":
        return cls(customer_id=_chain(parts, "customer_id"),
                   channel=[_categorical_of(p, "channel") for p in parts] if any(
                       "channel" in p for p in parts) else None,
                   order_date=[p["order_date"].to_numpy() for p in parts],
                   currency=[_categorical_of(p, "currency") for p in parts],
                   sizes=[len(p) for p in parts])


def _describe_facts(facts: _DescribeInput, rows: np.ndarray, src: np.ndarray, stats: list[FileStats]
                    ) -> np.ndarray:
    """Fill :func:`_describe`'s facts; return the customer code of each of ``rows`` (equal id,
    equal code), which the caller keeps for the later stages."""
    n_files = len(stats)
    cust = _group_codes(facts.customer_id, rows)
    n_cust = int(cust.max(initial=-1)) + 1
    multi = np.zeros(n_cust, dtype=bool)
    bounds = np.concatenate([[0], np.cumsum(facts.sizes)]).astype(np.int64)
    cuts = np.searchsorted(rows, bounds)  # the accepted rows of part j: rows[cuts[j]:cuts[j + 1]]
    if facts.channel is not None:
        pieces = facts.channel
        union = pd.api.types.union_categoricals([pd.Categorical([], categories=k) for _, k in pieces],
                                                sort_categories=True).categories
        channel = np.empty(len(rows), dtype=np.int32)
        for j, (codes, k) in enumerate(pieces):  # a missing channel is a channel of its own
            lookup = np.append(union.get_indexer(k), len(union)).astype(np.int32)
            channel[cuts[j]:cuts[j + 1]] = lookup[codes[rows[cuts[j]:cuts[j + 1]] - bounds[j]]]
        del pieces
        seen = np.zeros((n_cust, len(union) + 1), dtype=bool)
        seen[cust, channel] = True
        multi = seen.sum(axis=1) > 1
        del seen, channel
    first: list = [None] * n_files  # per file: earliest and latest order date, currencies used
    last: list = [None] * n_files
    currencies: list[set] = [set() for _ in range(n_files)]
    for j in range(len(facts.sizes)):
        at = rows[cuts[j]:cuts[j + 1]] - bounds[j]
        if not len(at):
            continue
        part_src = src[cuts[j]:cuts[j + 1]]
        dates = facts.order_date[j][at]
        codes, names = facts.currency[j]
        codes = codes[at]
        one = (part_src == part_src[0]).all()
        for i in ([int(part_src[0])] if one else np.unique(part_src).tolist()):
            mine = slice(None) if one else part_src == i
            lo, hi = dates[mine].min(), dates[mine].max()
            first[i] = lo if first[i] is None else min(first[i], lo)
            last[i] = hi if last[i] is None else max(last[i], hi)
            c = codes[mine]
            currencies[i].update(names[np.bincount(c[c >= 0], minlength=len(names)) > 0].tolist())
    one = len(src) == 0 or (src == src[0]).all()
    for i, s in enumerate(stats):
        if first[i] is None:  # no accepted row
            continue
        present = np.zeros(n_cust, dtype=bool)
        present[cust if one else cust[src == i]] = True
        s.customers = int(present.sum())
        s.merged_customers = int((multi & present).sum())
        s.first_date = str(pd.Timestamp(first[i]).date())
        s.last_date = str(pd.Timestamp(last[i]).date())
        s.currencies = sorted(currencies[i])
    return cust


def _categorical_of(part: pd.DataFrame, col: str) -> tuple[np.ndarray, pd.Index]:
    """Return the codes (-1: missing) and categories of a part's column, as a categorical."""
    if col not in part:
        return np.full(len(part), -1, dtype=np.int8), pd.Index([], dtype=_TEXT)
    x = part[col].array
    if not isinstance(x, pd.Categorical):
        x = pd.Categorical(pd.Series(x, dtype=_TEXT))
    return x.codes, x.categories


def _categories_chain(parts: list[pd.DataFrame], col: str) -> pd.Series:
    """Return a categorical column of all parts as one categorical (union of categories)."""
    none = pd.Index([], dtype=_TEXT)
    pieces = [p[col].array if col in p else pd.Categorical.from_codes(np.full(len(p), -1), none)
              for p in parts]
    pieces = [x if isinstance(x, pd.Categorical) else pd.Categorical(pd.Series(x, dtype=_TEXT))
              for x in pieces]
    return pd.Series(pd.api.types.union_categoricals(pieces, sort_categories=True))


# --- public API ---------------------------------------------------------------------------
def load_orders(paths: Sequence[Path | str], config: IngestConfig, *,
                base_currency: str = "USD", source: str | None = None) -> Loaded:
    """Return the canonical orders frame (one row per order_id), rejects and per-file counts.

    Parameters
    ----------
    paths : sequence of path or str
        Orders exports: files (CSV/TSV text, gzip, zip, Parquet), glob patterns (expanded,
        sorted by name) or SQLAlchemy URLs ``URL#table`` / ``URL#SELECT ...``; a later
        input's version of an order wins.
    config : IngestConfig
        ``fx_rates``/``fx_table``/``fx_history``, ``default_status``, ``identity``,
        ``mapping_dirs``, ``source``, ``decimal``, ``block_kb``, ``chunk_rows``.
    base_currency : str
        Currency of all money columns in the result; its rate is 1.
    source : str, optional
        Preset name or mapping YAML for every input (else ``config.source``, else detected
        per input from its header).

    Returns
    -------
    Loaded
        ``frame`` with the columns of :mod:`churnctl.schema` (optional ones only when some file
        had them; ``currency`` and ``status`` always), ``rejects`` (``file, line, column,
        reason`` then the row's original text, personal data redacted) and ``stats``.

    Raises
    ------
    InputError
        One line naming the file: not found, empty, binary or not UTF-8, missing column.
    ConfigError
        An fx rate is not positive, the base currency's rate is not 1, or the default status
        is unknown.
    """
    r = reader("orders", config, base_currency=base_currency, source=source)
    return _load(paths, r.kind, r.required, r.order, r.validate, r.key, r.config, r.mapping, r.known_presets)


def load_events(paths: Sequence[Path | str], config: IngestConfig) -> Loaded:
    """Return the canonical events frame (one row per distinct event), rejects and counts.

    Parameters
    ----------
    paths : sequence of path
        Events CSV files: ``customer_id, event_time, event_type`` and optional ``topic``,
        ``value``.  Rows equal in every canonical column are kept once.
    config : IngestConfig
        Ingest settings (kept for symmetry with :func:`load_orders`).

    Returns
    -------
    Loaded
        ``frame`` with ``customer_id, event_time, event_type[, topic][, value]``.

    Raises
    ------
    InputError
        One line naming the file: not found, empty, binary or not UTF-8, missing column.
    """
    return _load(paths, "events", schema.EVENT_REQUIRED, schema.EVENT_COLUMNS, _validate_events,
                 key=None, config=config)


def load_customers(paths: Sequence[Path | str], config: IngestConfig) -> Loaded:
    """Return the canonical customers frame (one row per customer_id), rejects and counts.

    Parameters
    ----------
    paths : sequence of path
        Customers CSV files: ``customer_id`` and optional columns of
        :data:`churnctl.schema.CUSTOMER_OPTIONAL`; a later file's version of a customer wins.
    config : IngestConfig
        Ingest settings (kept for symmetry with :func:`load_orders`).

    Returns
    -------
    Loaded
        ``frame`` with ``customer_id`` and the optional columns present; ``marketing_consent``
        and ``unsubscribed`` are nullable booleans (true/false/yes/no/y/n/1/0, any case).

    Raises
    ------
    InputError
        One line naming the file: not found, empty, binary or not UTF-8, missing column.
    """
    return _load(paths, "customers", schema.CUSTOMER_REQUIRED, schema.CUSTOMER_COLUMNS,
                 _validate_customers, key=("customer_id",), config=config)


@dataclass(frozen=True)
class Reader:
    """How one input kind is read and validated (picklable: sent to Dask workers)."""

    kind: str  # "orders" | "events" | "customers"
    required: tuple
    order: tuple  # canonical column order
    validate: Callable
    key: tuple | None  # de-duplication key (None: exact row)
    config: IngestConfig
    mapping: mappings.Mapping | None = None
    known_presets: dict | None = None


def reader(kind: str, config: IngestConfig, *, base_currency: str = "USD",
           source: str | None = None) -> Reader:
    """Return the :class:`Reader` of ``kind``: for orders, the checked fx rates, fx table, default
    status, decimal mark, identity rule and mapping of :func:`load_orders`.

    Raises
    ------
    ConfigError
        As :func:`load_orders` (same checks, same order).
    """
    if kind == "events":
        return Reader(kind, tuple(schema.EVENT_REQUIRED), tuple(schema.EVENT_COLUMNS), _validate_events,
                      None, config)
    if kind == "customers":
        return Reader(kind, tuple(schema.CUSTOMER_REQUIRED), tuple(schema.CUSTOMER_COLUMNS),
                      _validate_customers, ("customer_id",), config)
    if kind != "orders":
        raise ValueError(f"unknown input kind {kind!r}")
    base = base_currency.strip().upper()
    rates = _fx_rates(config, base)
    if config.default_status not in schema.ORDER_STATUSES:
        raise ConfigError(
            f"ingest.default_status: '{config.default_status}' is not one of "
            f"{', '.join(schema.ORDER_STATUSES)}"
        )
    if config.decimal not in (None, ".", ","):
        raise ConfigError(f"ingest.decimal: must be '.' or ',', got {config.decimal!r}")
    if config.identity not in mappings.IDENTITY_RULES:
        raise ConfigError(f"ingest.identity: '{config.identity}' is not one of "
                          f"{', '.join(mappings.IDENTITY_RULES)}")
    table = _fx_table(config, base)
    source = source or config.source
    mapping = mappings.resolve(source, config.mapping_dirs) if source else None
    known = None if mapping else mappings.presets(config.mapping_dirs)
    validate = functools.partial(_validate_orders, config=config, rates=rates, table=table, base=base)
    return Reader("orders", tuple(schema.ORDER_REQUIRED), tuple(schema.ORDER_COLUMNS), validate,
                  ("order_id",), config, mapping, known)


def read_file(spec: str | Path, rd: Reader) -> Loaded:
    """Return one file's accepted rows, its rejects and its counts, before combining files.

    For engines that combine files themselves (the Dask engine reads byte ranges of a file
    as files of their own).  The frame holds the accepted rows in file order, *not*
    de-duplicated (``stats[0].accepted`` counts them; ``collapsed`` only counts merged line
    items); categorical columns hold the categories of these rows.  The loaders' cross-file
    step (latest version wins, ``collapsed``, customers and dates) is left to the caller.
    """
    result = _ingest_file(str(spec), rd.kind, rd.required, rd.order, rd.validate, rd.config,
                          rd.mapping, rd.known_presets)
    frame = _align(result.parts, rd.order, keep=None if result.valid.all() else result.valid)
    rejects = result.rejects if result.rejects is not None else _concat_rejects([])
    return Loaded(frame=frame, rejects=rejects, stats=[result.stats])


def check_reject_fraction(stats: list[FileStats], max_fraction: float) -> None:
    """Return None when every file's share of rejected rows is within ``max_fraction``.

    Parameters
    ----------
    stats : list of FileStats
        Counts from the loaders.
    max_fraction : float
        Largest allowed ``rejected / read`` per file (``ingest.max_reject_fraction``).

    Raises
    ------
    InputError
        For the first file above the limit, naming it, its reject share, the most frequent
        reason and the limit.
    """
    for s in stats:
        if s.read and s.rejected / s.read > max_fraction:
            top = max(s.rejected_by_reason.items(), key=lambda kv: kv[1])[0]
            raise InputError(
                f"{s.file}: {100 * s.rejected / s.read:.1f}% of rows rejected "
                f"({s.rejected} of {s.read}, mostly '{top}'), above the limit of "
                f"{100 * max_fraction:.1f}% (ingest.max_reject_fraction)"
            )


def stats_table(stats: list[FileStats]) -> str:
    """Return the per-file accounting as a fixed-width text table (``churnctl validate``).

    Columns: file, kind, preset, read, accepted, rejected (with the reasons), collapsed,
    skipped, customers, date range and currencies.
    """
    head = ("file", "kind", "preset", "read", "accepted", "rejected", "collapsed", "skipped",
            "customers", "dates", "currencies", "rejected by reason")
    rows = [head]
    for s in stats:
        dates = f"{s.first_date}..{s.last_date}" if s.first_date else "-"
        reasons = "; ".join(f"{r}: {n}" for r, n in s.rejected_by_reason.items()) or "-"
        rows.append((s.file, s.kind, s.preset or "-", str(s.read), str(s.accepted), str(s.rejected),
                     str(s.collapsed), str(s.skipped), "-" if s.customers is None else str(s.customers),
                     dates, ",".join(s.currencies or []) or "-", reasons))
    total = ("total", "", "", *(str(sum(int(r[i]) for r in rows[1:])) for i in range(3, 8)),
             "", "", "", "")
    rows.append(total)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    right = {3, 4, 5, 6, 7, 8}
    lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in rows]
    return "\n".join(lines)
