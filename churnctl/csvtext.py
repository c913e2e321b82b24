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
  running Python's ``csv`` module quotes), with ``"`` doubled.

A frame with a column of any other dtype (dates, categories, mixed objects), a single column,
or non-text column names returns None from :func:`chunks`: callers then use pandas.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

#: Rows formatted per piece: bounds the memory of the text (about 250 bytes a scores row).
CHUNK_ROWS = 200_000


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


def _floats(values: np.ndarray) -> pa.Array:
    arr = pc.cast(pa.array(values, from_pandas=True), _L)  # NaN -> null
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(values)
        mag = np.abs(values)
        # Arrow switches to an exponent at 1e10 and below 1e-6, Python (repr) at 1e16 and below 1e-4.
        odd = finite & (values != 0) & ((mag < 1e-4) | (mag >= 1e10))
        # Whole numbers: Arrow writes "15", Python "15.0".
        whole = finite & ~odd & (values == np.trunc(values))
    if odd.any():
        arr = pc.replace_with_mask(arr, pa.array(odd), pa.array(values[odd].astype(str), _L))
    if whole.any():
        mask = pa.array(whole)
        arr = pc.replace_with_mask(arr, mask, pc.binary_join_element_wise(arr.filter(mask), _s(".0"), _s("")))
    return arr


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
        hit = pc.match_substring_regex(arr, _QUOTE_PATTERN)
        if pc.any(hit).as_py():
            quoted = pc.binary_join_element_wise(_s('"'), pc.replace_substring(arr, '"', '""'), _s('"'), _s(""))
            arr = pc.if_else(hit, quoted, arr)
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
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int64)[rows.offset: rows.offset + len(rows) + 1]
    return memoryview(rows.buffers()[2])[int(offsets[0]): int(offsets[-1])]


def chunks(df: pd.DataFrame, *, index: bool = False, chunk_rows: int = CHUNK_ROWS) -> Iterator[bytes | memoryview]:
    """Yield the UTF-8 CSV of ``df`` (header first) in pieces, as ``df.to_csv(index=index,
    lineterminator="\\n")`` writes it; see the module docstring.

    Raises ValueError when the frame is not :func:`supported`.
    """
    if not supported(df, index=index):
        raise ValueError("csvtext: frame not supported; use DataFrame.to_csv")
    cols = _columns(df, index)
    yield (",".join(_quote_name(name) for name, _ in cols) + "\n").encode("utf-8")
    # Arrow kernels release the GIL: columns are formatted on Arrow's CPU count of threads.
    with ThreadPoolExecutor(max_workers=max(1, min(len(cols), pa.cpu_count()))) as pool:
        for start in range(0, len(df), chunk_rows):
            yield _joined(list(pool.map(_column, [s.iloc[start: start + chunk_rows] for _, s in cols])))


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
