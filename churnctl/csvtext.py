"""CSV bytes exactly as ``DataFrame.to_csv(index=False, lineterminator="\\n")`` writes them, built by Arrow.

pandas formats every cell in Python (``float.__repr__`` and the ``csv`` module's quoting); on a
scores frame of 180k customers that is most of the export stage. Here each column is turned
into text by Arrow compute kernels, then the columns are joined row-wise, so the bytes come
out of C++ in a few passes. The output is byte-for-byte what pandas writes (the tests compare
the two on awkward frames):

* floats: Python's shortest round-trip ``repr`` (``15.0``, ``0.014449``, ``1e-05``,
  ``1e+16``, ``inf``); Arrow prints the same shortest digits, so only its layout is corrected
  (``.0`` added to whole numbers; values Arrow writes with an exponent, or that Python writes
  with one, are formatted by numpy, as pandas does);
* integers in decimal; booleans ``True``/``False``; missing values as empty cells;
* text quoted only when it holds the delimiter, a double quote or a line break (whatever the
  running Python's ``csv`` module quotes), with ``"`` doubled; those bytes are found by numpy
  in the UTF-8 buffer and only the rows holding one get quote marks.

Columns with few distinct floats (probabilities, day counts) are formatted once per distinct
value. Pieces of rows are formatted and joined on two worker threads (Arrow and numpy release
the GIL), so the writer uses both cores.

A frame with a column of any other dtype (dates, categories, mixed objects), a single column,
or non-text column names returns None from :func:`chunks`: callers then use pandas.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

#: Rows formatted per piece: bounds the memory of the text (about 260 bytes a scores row); two
#: pieces are formatted at a time, one per core.
CHUNK_ROWS = 100_000


def _quoted_chars() -> str:
    """Return the characters that make the ``csv`` module quote a field (QUOTE_MINIMAL, ``\\n``)."""
    out = []
    for ch in ',"\n\r':
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([f"a{ch}b", "x"])
        if buf.getvalue().startswith('"'):
            out.append(ch)
    return "".join(out)


_QUOTED = _quoted_chars()
_L = pa.large_string()


def _s(text: str) -> pa.Scalar:
    return pa.scalar(text, _L)


_QUOTE_PATTERN = "[" + "".join({"\n": "\\n", "\r": "\\r"}.get(c, c) for c in _QUOTED) + "]"


def _quote_name(name: str) -> str:
    if any(c in name for c in _QUOTED):
        return '"' + name.replace('"', '""') + '"'
    return name


def _is_text(s: pd.Series) -> bool:
    if pd.api.types.is_string_dtype(s.dtype) and s.dtype != object:
        return True
    return s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty")


def _columns(df: pd.DataFrame, index: bool) -> list[tuple[Any, pd.Series]]:
    cols = [(name, df.iloc[:, i]) for i, name in enumerate(df.columns)]
    if index:
        if isinstance(df.index, pd.MultiIndex):
            return []
        cols.insert(0, (df.index.name, pd.Series(df.index.array, copy=False)))
    return cols


def supported(df: pd.DataFrame, *, index: bool = False) -> bool:
    """Return True when :func:`chunks` can write ``df`` (else callers use pandas)."""
    cols = _columns(df, index)
    names = [name for name, _ in cols]
    if len(cols) < 2 or not all(isinstance(n, str) for n in names) or len(set(names)) < len(names):
        return False  # one column: pandas quotes empty cells ('""'); keep its writer for that
    for _, s in cols:
        kind = s.dtype.kind if isinstance(s.dtype, np.dtype) else None
        if kind in ("i", "u", "b") or s.dtype == np.float64:
            continue
        if isinstance(s.dtype, (pd.BooleanDtype, pd.core.arrays.integer.IntegerDtype)):
            continue
        if _is_text(s):
            continue
        return False
    return True


def _offsets(arr: pa.Array) -> np.ndarray:
    """Return the ``len(arr) + 1`` value offsets of a large_string array (int64, into its data buffer)."""
    return np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset: arr.offset + len(arr) + 1]


def _texts(n: int, mask: np.ndarray, data: bytes | pa.Buffer, lengths: np.ndarray | int) -> pa.Array:
    """Return a large_string array of ``n`` cells: the next piece of ``data`` where ``mask``, else ''.

    ``lengths``: the byte length of each masked cell (one per True, or one for all); the
    pieces lie back to back in ``data``. Built from buffers: no pass over the text.
    """
    sizes = np.zeros(n, dtype=np.int64)
    sizes[mask] = lengths
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    buf = data if isinstance(data, pa.Buffer) else pa.py_buffer(data)
    return pa.Array.from_buffers(_L, n, [None, pa.py_buffer(offsets), buf])


def _floats_plain(values: np.ndarray) -> pa.Array:
    valid = ~np.isnan(values)
    arr = pc.cast(pa.array(values, from_pandas=True), _L)  # NaN -> null
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(values)
        mag = np.abs(values)
        # Arrow switches to an exponent at 1e10 and below 1e-6, Python (repr) at 1e16 and below 1e-4.
        odd = finite & (values != 0) & ((mag < 1e-4) | (mag >= 1e10))
        # Whole numbers: Arrow writes "15", Python "15.0".
        whole = finite & ~odd & (values == np.trunc(values))
    has_odd, has_whole = bool(odd.any()), bool(whole.any())
    if not (has_odd or has_whole):
        return arr
    # One join of three aligned columns instead of masked replacements: Arrow's text with the
    # odd cells nulled (skipped), numpy's text of the odd cells, and ".0" after whole numbers.
    n = len(values)
    keep = np.packbits(valid & ~odd, bitorder="little")
    parts = [pa.Array.from_buffers(_L, n, [pa.py_buffer(keep), pa.py_buffer(_offsets(arr)), arr.buffers()[2]])]
    if has_odd:
        odd_text = pa.array(values[odd].astype(str), _L)
        offsets = _offsets(odd_text)
        parts.append(_texts(n, odd, odd_text.buffers()[2].slice(int(offsets[0])), np.diff(offsets)))
    if has_whole:
        parts.append(_texts(n, whole, b".0" * int(whole.sum()), 2))
    out = pc.binary_join_element_wise(*parts, _s(""), null_handling="skip")
    # "skip" turns a row of only nulls/empties (NaN) into "", as the writer wants.
    return out


#: Floats are formatted once per distinct value when a sample of this many cells ...
_SAMPLE = 4096
#: ... holds at most this share of distinct values (scores: probabilities, days, money).
_FEW = 0.25


def _floats(values: np.ndarray) -> pa.Array:
    values = np.ascontiguousarray(values, dtype=np.float64)
    n = len(values)
    if n > 2 * _SAMPLE:
        bits = values.view(np.int64)  # exact bit patterns: -0.0 and 0.0 stay apart
        if len(np.unique(bits[:_SAMPLE])) <= _FEW * _SAMPLE:
            enc = pc.dictionary_encode(pa.array(bits))
            if len(enc.dictionary) <= _FEW * n:
                text = _floats_plain(enc.dictionary.to_numpy().view(np.float64))
                return pc.take(text, enc.indices)
    return _floats_plain(values)


def _quote(arr: pa.Array) -> pa.Array:
    """Return ``arr`` (large_string, one chunk) with the cells the ``csv`` module quotes quoted.

    The quoting characters are found with numpy in the UTF-8 bytes (no multi-byte character
    holds an ASCII byte), the quote marks come in one join, and ``"`` is doubled only when the
    text holds one.
    """
    n = len(arr)
    offsets = _offsets(arr)
    if n == 0 or offsets[-1] == offsets[0]:
        return arr
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0]: offsets[-1]]
    found = np.zeros(len(data), dtype=bool)
    for ch in _QUOTED:
        found |= data == ord(ch)
    at = np.flatnonzero(found)
    if len(at) == 0:
        return arr
    hit = np.zeros(n, dtype=bool)
    hit[np.searchsorted(offsets, at + offsets[0], side="right") - 1] = True
    if '"' in _QUOTED and (data == ord('"')).any():
        arr = pc.replace_substring(arr, '"', '""')
    marks = _texts(n, hit, b'"' * int(hit.sum()), 1)
    return pc.binary_join_element_wise(marks, arr, marks, _s(""))


def _column(s: pd.Series) -> pa.Array:
    """Return the cells of ``s`` as CSV text (large_string, no nulls).

    Arrow is handed ``s.array``, never the Series: its attribute probing of a Series with a
    text index makes pandas build that index's hash table (slower than the formatting).
    """
    if s.dtype == np.float64:
        arr = _floats(s.to_numpy())
    elif s.dtype.kind == "b" or isinstance(s.dtype, pd.BooleanDtype):
        arr = pc.if_else(pa.array(s.array, type=pa.bool_(), from_pandas=True), _s("True"), _s("False"))
    elif _is_text(s):
        values = s.to_numpy(dtype=object, na_value=None) if s.dtype == object else s.array
        arr = pa.array(values, type=_L, from_pandas=True)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        arr = _quote(arr)
    else:  # integers, nullable or not
        arr = pc.cast(pa.array(s.array, from_pandas=True), _L)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return pc.fill_null(arr.cast(_L), _s(""))


def _joined(cols: list[pa.Array]) -> memoryview:
    """Return the bytes of the rows: the columns joined with ',' and each row ended by '\\n'."""
    last = pc.binary_join_element_wise(cols[-1], _s("\n"), _s(""))
    rows = pc.binary_join_element_wise(*cols[:-1], last, _s(","))
    if isinstance(rows, pa.ChunkedArray):
        rows = rows.combine_chunks()
    offsets = _offsets(rows)
    return memoryview(rows.buffers()[2])[int(offsets[0]): int(offsets[-1])]


def _piece(series: list[pd.Series]) -> memoryview:
    return _joined([_column(s) for s in series])


def chunks(df: pd.DataFrame, *, index: bool = False, chunk_rows: int = CHUNK_ROWS) -> Iterator[bytes | memoryview]:
    """Yield the UTF-8 CSV of ``df`` (header first) in pieces, as ``df.to_csv(index=index,
    lineterminator="\\n")`` writes it; see the module docstring.

    Raises ValueError when the frame is not :func:`supported`.
    """
    if not supported(df, index=index):
        raise ValueError("csvtext: frame not supported; use DataFrame.to_csv")
    cols = _columns(df, index)
    yield (",".join(_quote_name(name) for name, _ in cols) + "\n").encode("utf-8")
    # Each piece of rows is formatted and joined on a worker (Arrow kernels and numpy release
    # the GIL), two at a time on two cores, while this thread hands the finished ones out in order.
    workers = max(1, min(2, pa.cpu_count()))
    pending: deque[Future[memoryview]] = deque()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(df), chunk_rows):
            pending.append(pool.submit(_piece, [s.iloc[start: start + chunk_rows] for _, s in cols]))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def to_text(df: pd.DataFrame) -> str:
    """Return the CSV of ``df`` (no index) as text: this module's writer when supported, else pandas'."""
    if supported(df):
        return b"".join(chunks(df)).decode("utf-8")
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


def sha256_rows(parts: list[Any]) -> np.ndarray:
    """Return the sha256 digest (32 uint8) of each row's text ``parts`` joined (UTF-8).

    ``parts``: aligned text Series/arrays, or str constants. The row texts are assembled by
    Arrow in one buffer; only the hashing runs per row (hashlib has no vectorised form).
    """
    import hashlib

    n = next((len(p) for p in parts if not isinstance(p, str)), 0)
    if n == 0:
        return np.zeros((0, 32), dtype=np.uint8)
    cols = []
    for p in parts:
        if isinstance(p, str):
            cols.append(_s(p))
        else:
            arr = pa.array(p.array if isinstance(p, pd.Series) else p, type=_L, from_pandas=True)
            cols.append(arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr)
    text = pc.binary_join_element_wise(*cols, _s(""))
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    if text.null_count:
        raise ValueError("sha256_rows: a row has a missing part")
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int64)[text.offset: text.offset + n + 1].tolist()
    data = memoryview(text.buffers()[2])
    sha = hashlib.sha256
    blob = b"".join([sha(data[a:b]).digest() for a, b in zip(offsets[:-1], offsets[1:])])
    return np.frombuffer(blob, dtype=np.uint8).reshape(n, 32)
