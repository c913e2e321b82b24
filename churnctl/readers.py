"""Open an input - a text file, a compressed file, Parquet or a database table - as text batches.

:func:`open_source` returns a :class:`Source`: the header (column names as written), what was
detected (encoding, delimiter, compression) and an iterator of :class:`Batch` (every value as
stripped text, with the line number of each record; Parquet number, date and timestamp columns
stay typed, as ``pd.ArrowDtype`` columns, and :func:`as_text` turns them into text on demand).  Nothing here knows about orders: mapping
and validation live in :mod:`churnctl.mappings` and :mod:`churnctl.ingest`.

Memory: files are read with Arrow's streaming CSV reader, ``block_bytes`` at a time (default
16 MiB of input per block, parsed on all cores; :class:`SerialNeeded` asks for a one-thread
read when a line has a wrong field count, so its line number is known), Parquet ``chunk_rows`` rows at a time and databases through a
server-side cursor ``chunk_rows`` rows at a time, so only one block of raw text is held at once.

Detection (never a silent guess):

* compression from the file's first bytes: gzip, zip (one data member), Parquet;
* encoding: a UTF-16 byte-order mark (Excel "Unicode text"), else UTF-8 with or without BOM;
  a file that is not valid UTF-8 is read again as Windows-1252 (a superset of Latin-1) and the
  caller logs a warning;
* delimiter: the one of ``,``, ``;``, tab and ``|`` found most often in the header line;
* blank lines above the header (eBay reports) are skipped.

Line numbers count physical lines from 1 (the header's line, after any blank lines above it); a
value holding a quoted line break makes them record numbers.  For Parquet and database sources
``line`` is the row number, the first row being 1.
"""

from __future__ import annotations

import csv
import glob
import io
import queue
import re
import threading
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .errors import InputError

DELIMITERS = (",", ";", "\t", "|")
BLOCK_BYTES = 16 << 20
CHUNK_ROWS = 250_000
_URL = re.compile(r"^[a-z][a-z0-9+.\-]*://", re.IGNORECASE)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_MAGIC = (
    (b"\xd0\xcf\x11\xe0", "an Excel workbook; export it as CSV"),
    (b"%PDF", "a PDF document"),
)


class ReencodeNeeded(Exception):
    """Raised mid-file when text turns out not to be UTF-8: read the file again as cp1252."""


class SerialNeeded(Exception):
    """Raised mid-file when a row has a wrong field count: read the file again in one thread.

    Arrow's CSV reader parses blocks in parallel, but then it cannot tell a bad row's line
    number; such files (rare) are read again serially so the reject names the line.
    """


@dataclass
class Batch:
    """Records of one block: text columns ``f0..fN`` and their line numbers."""

    frame: pd.DataFrame
    line: np.ndarray


@dataclass
class Source:
    """An opened input: header, detected format and a one-shot iterator of batches."""

    name: str
    header: list[str]
    batches: Iterator[Batch]
    encoding: str = "utf-8"
    delimiter: str = ","
    compression: str = ""
    fmt: str = "csv"  # csv | parquet | database
    malformed: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Set by the caller before iterating: lines of a wrong field count whose first field
    #: matches it (e.g. eBay's "3 record(s) downloaded") are skipped, not malformed.
    skip_pattern: str | None = None
    skipped_lines: list[int] = field(default_factory=list)


def is_url(spec: str | Path) -> bool:
    """Return True for an SQLAlchemy URL such as ``sqlite:///shop.db#orders``."""
    return isinstance(spec, str) and bool(_URL.match(spec))


def expand(specs: Sequence[str | Path] | str | Path, kind: str = "orders") -> list[str]:
    """Return the inputs with glob patterns expanded (sorted by name) and URLs kept as given.

    A pattern matching no file raises :class:`InputError`; a plain path is kept even when it
    does not exist (the reader reports it).
    """
    if isinstance(specs, (str, Path)):
        specs = [specs]
    out: list[str] = []
    for spec in specs:
        text = str(spec)
        if is_url(text) or not any(ch in text for ch in "*?["):
            out.append(text)
            continue
        matches = sorted(glob.glob(text))
        if not matches:
            raise InputError(f"{text}: no {kind} file matches this pattern")
        out.extend(matches)
    return out


def display_name(spec: str) -> str:
    """Return the input's name for logs and manifests (a URL's password hidden)."""
    if not is_url(spec):
        return spec
    url, _, target = spec.partition("#")
    try:
        from sqlalchemy.engine import make_url

        url = make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a bad URL is reported when opened
        url = re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)
    return f"{url}#{target}" if target else url


def open_source(spec: str | Path, *, encoding: str | None = None, block_bytes: int = BLOCK_BYTES,
                chunk_rows: int = CHUNK_ROWS, kind: str = "input", serial: bool = False) -> Source:
    """Open ``spec`` (path or SQLAlchemy URL) and return its header and batch iterator.

    ``encoding`` forces a text encoding (used for the cp1252 retry); None detects it.
    ``serial`` parses text in one thread (needed for line numbers of malformed rows: a
    parallel read raises :class:`SerialNeeded` at the first one).
    """
    spec = str(spec)
    if is_url(spec):
        return _open_database(spec, chunk_rows)
    path = Path(spec)
    if not path.exists():
        raise InputError(f"{spec}: {kind} file not found")
    if path.is_dir():
        raise InputError(f"{spec}: is a directory, not a file")
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise InputError(f"{spec}: cannot read file ({exc.strerror or exc})") from None
    if head.startswith(b"PAR1"):
        return _open_parquet(path, chunk_rows)
    if head.startswith(b"\x1f\x8b"):
        return _open_text(spec, lambda: pa.input_stream(str(path), compression="gzip"), "gzip",
                          encoding, block_bytes, serial)
    if head.startswith(b"PK\x03\x04"):
        member = _zip_member(path, spec)
        return _open_text(spec, lambda: zipfile.ZipFile(path).open(member), "zip", encoding,
                          block_bytes, serial)
    return _open_text(spec, lambda: pa.OSFile(str(path), "rb"), "", encoding, block_bytes, serial)


_DONE = object()


def prefetch(batches: Iterator, depth: int = 1) -> Iterator:
    """Yield the items of ``batches`` (Arrow record batches), read ahead on a second thread.

    Arrow parses or decodes the next block, without the GIL, while the caller converts and
    validates the current one, so the read overlaps the validation.  The reading thread only
    pulls blocks (no Python work of its own, which would contend for the GIL).  At most
    ``depth`` blocks wait ready besides the one being read and the one being used (the memory
    bound of reading grows by that much).  An exception of the reader is raised here, at the
    point of the input where it happened.
    """
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not put((batch, None)):
                    break
                del batch
            else:
                put((_DONE, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put((None, exc))
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="churnctl-read", daemon=True)
    worker.start()
    try:
        while True:
            batch, exc = ready.get()
            if exc is not None:
                raise exc
            if batch is _DONE:
                break
            yield batch
            del batch
    finally:
        stop.set()
        worker.join()


# --- text files ---------------------------------------------------------------------------
def _zip_member(path: Path, spec: str) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/") and not n.startswith("__MACOSX")]
    except zipfile.BadZipFile:
        raise InputError(f"{spec}: not a readable zip archive") from None
    if any(n.startswith("xl/") or n == "[Content_Types].xml" for n in names):
        raise InputError(f"{spec}: not a CSV text file (looks like an Excel workbook; export it as CSV)")
    if len(names) != 1:
        raise InputError(f"{spec}: zip archive must hold exactly one file, it holds {len(names)}")
    return names[0]


def _detect_encoding(head: bytes) -> str:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8"
    if len(head) >= 4 and head[1:4:2] == b"\x00\x00" and head[0:4:2] != b"\x00\x00":
        return "utf-16-le"  # Unicode text without byte-order mark
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the end of the sample
            return "cp1252"
    return "utf-8"


def _open_text(spec: str, opener, compression: str, encoding: str | None, block_bytes: int,
               serial: bool = False) -> Source:
    try:
        with opener() as fh:
            head = fh.read(1 << 16)
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{spec}: cannot read file ({exc})") from None
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise InputError(f"{spec}: not a CSV text file (looks like {what})")
    enc = encoding or _detect_encoding(head)
    if b"\x00" in head and not enc.startswith("utf-16"):
        raise InputError(f"{spec}: not a CSV text file (binary data)")
    text = head.decode(enc, errors="replace").lstrip("\ufeff")
    lines = text.splitlines()
    if not text.strip():
        raise InputError(f"{spec}: empty file (no header line)")
    skip = 0
    while skip < len(lines) and not lines[skip].strip(" \t,;|\"'"):
        skip += 1
    if skip == len(lines):
        raise InputError(f"{spec}: empty file (no header line)")
    first = lines[skip]
    delimiter = max(DELIMITERS, key=lambda d: (first.count(d), -DELIMITERS.index(d)))
    if first.count(delimiter) == 0:
        delimiter = ","
    try:
        header = next(csv.reader([first], delimiter=delimiter), [])
    except csv.Error:
        raise InputError(f"{spec}: cannot read the header line") from None
    header = [h.strip().lstrip("\ufeff").strip() for h in header]
    source = Source(name=spec, header=header, batches=iter(()), encoding=enc, delimiter=delimiter,
                    compression=compression)
    source.batches = _text_batches(source, opener, enc, delimiter, skip, len(header), block_bytes, serial)
    return source


def _text_batches(source: Source, opener, enc: str, delimiter: str, skip: int, width: int,
                  block_bytes: int, serial: bool = False) -> Iterator[Batch]:
    cols = [f"f{i}" for i in range(width)]
    malformed = source.malformed
    invalid = []

    def on_bad(row: pacsv.InvalidRow) -> str:  # called for malformed rows only
        if not serial:  # parallel parsing gives no line number: read the file again serially
            invalid.append(row.text)
            return "skip"
        first_field = next(csv.reader([row.text], delimiter=delimiter), [""]) if row.text else [""]
        if source.skip_pattern and first_field and re.search(source.skip_pattern, first_field[0].strip()):
            source.skipped_lines.append(row.number)
        else:
            malformed.append(row.number)
        return "skip"

    read_options = pacsv.ReadOptions(column_names=cols, use_threads=not serial, skip_rows=skip,
                                     block_size=block_bytes,
                                     encoding="utf8" if enc == "utf-8" else enc)
    parse_options = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True,
                                       ignore_empty_lines=False, invalid_row_handler=on_bad)
    convert_options = pacsv.ConvertOptions(column_types=dict.fromkeys(cols, pa.string()),
                                           strings_can_be_null=False, quoted_strings_can_be_null=False)
    next_record = skip + 1  # the header's record number
    first = True
    ahead = None
    with opener() as fh:
        try:
            reader = pacsv.open_csv(fh, read_options=read_options, parse_options=parse_options,
                                    convert_options=convert_options)
            ahead = prefetch(_trimmed(reader))  # parsed and trimmed on the reading thread
            for columns, n in ahead:
                if invalid:
                    raise SerialNeeded(source.name)
                bad = np.asarray([m for m in (*malformed, *source.skipped_lines) if m >= next_record],
                                 dtype=np.int64)
                cand = np.arange(next_record, next_record + n + len(bad), dtype=np.int64)
                line = cand[~np.isin(cand, bad)][:n]
                next_record = int(line[-1]) + 1 if n else next_record
                frame = pa.table(columns, names=cols).to_pandas()
                del columns
                if first:
                    if skip + 1 in malformed:
                        raise InputError(f"{source.name}: cannot read the header line")
                    frame, line, first = frame.iloc[1:], line[1:], False
                if len(frame):
                    yield Batch(frame.reset_index(drop=True), line)
        except pa.ArrowInvalid as exc:
            if "UTF8" in str(exc) or "utf-8" in str(exc).lower() or "decode" in str(exc).lower():
                raise ReencodeNeeded(str(exc)) from None
            if "CSV parse error" in str(exc) and enc == "utf-8":
                # a row that is not valid UTF-8 cannot even be reported as malformed
                raise ReencodeNeeded(str(exc)) from None
            if "Empty CSV file" in str(exc):
                raise InputError(f"{source.name}: empty file (no header line)") from None
            raise InputError(f"{source.name}: not a readable CSV file ({str(exc).splitlines()[0]})") from None
        except (UnicodeDecodeError, UnicodeError) as exc:
            raise ReencodeNeeded(str(exc)) from None
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise InputError(f"{source.name}: cannot read file ({exc})") from None
        finally:
            if ahead is not None:
                ahead.close()  # the reading thread stops before the file is closed
    if first:
        raise InputError(f"{source.name}: empty file (no header line)")


#: First/last bytes a value needing a trim can have: ASCII white space, and any non-ASCII byte
#: (Unicode white space such as U+00A0 or U+3000 is multi-byte).
_SPACE = np.zeros(256, dtype=bool)
_SPACE[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True
_LEAD = _SPACE.copy()  # first byte of a value that may start with white space
_LEAD[[0xC2, 0xE1, 0xE2, 0xE3]] = True  # U+0085, U+00A0; U+1680; U+2000-U+205F; U+3000


#: Columns of at least this many values are checked by the compiled :func:`kernels.needs_trim`
#: (small ones by numpy: importing numba is not worth it for a small file).
COMPILED_TRIM_ROWS = 65_536


def trim(column: pa.Array) -> pa.Array:
    """Return a text column stripped of surrounding white space (as ``utf8_trim_whitespace``).

    Most columns (ids, numbers, dates, codes) have no value starting or ending with white space
    or a non-ASCII byte: they are returned as they are, found by looking at the first and last
    byte of each value through the offsets (no copy), which is cheaper than trimming.
    """
    if not pa.types.is_string(column.type) or column.null_count or len(column) == 0:
        return pc.utf8_trim_whitespace(column)
    _, offsets, data = column.buffers()
    if data is None or data.size == 0:
        return column
    off = np.frombuffer(offsets, dtype=np.int32, count=len(column) + 1, offset=column.offset * 4)
    raw = np.frombuffer(data, dtype=np.uint8)
    if len(column) >= COMPILED_TRIM_ROWS:
        # one compiled pass without the GIL (the reading thread must not hold up validation)
        from .kernels import needs_trim

        return pc.utf8_trim_whitespace(column) if needs_trim(off, raw, _LEAD, _SPACE) else column
    # An empty value shows a neighbour's byte here: at worst a trim that changes nothing.
    first = raw[np.minimum(off[:-1], len(raw) - 1)]
    last_at = np.maximum(off[1:] - 1, 0)
    last = raw[last_at]
    if _LEAD[first].any() or _SPACE[last].any():
        return pc.utf8_trim_whitespace(column)
    high = last_at[last >= 0x80]  # a value ending in a multi-byte character
    if len(high) and ((raw[np.maximum(high - 1, 0)] == 0xC2).any()
                      or np.isin(raw[np.maximum(high - 2, 0)], (0xE1, 0xE2, 0xE3)).any()):
        return pc.utf8_trim_whitespace(column)
    return column


def _trimmed(batches: Iterator[pa.RecordBatch]) -> Iterator[tuple[list[pa.Array], int]]:
    """Yield each record batch's columns stripped of surrounding white space, and its row count."""
    for batch in batches:
        yield [trim(c) for c in batch.columns], batch.num_rows


# --- Parquet ------------------------------------------------------------------------------
def is_typed(column: pa.DataType) -> bool:
    """Return True for Parquet/Arrow types validated without text: numbers, dates, timestamps."""
    return (pa.types.is_integer(column) or pa.types.is_floating(column) or pa.types.is_decimal(column)
            or pa.types.is_timestamp(column) or pa.types.is_date(column))


def as_text(s: pd.Series) -> pd.Series:
    """Return a typed column of a batch (``pd.ArrowDtype``) as stripped text, nulls empty."""
    if not isinstance(s.dtype, pd.ArrowDtype):
        return s
    text = _as_text(pa.array(s.array)).to_pandas()
    text.index, text.name = s.index, s.name
    return text


def _as_text(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Return a column as stripped text, nulls as empty strings (timestamps in ISO 8601)."""
    if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
        text = pc.strftime(column, format="%Y-%m-%dT%H:%M:%S" if pa.types.is_timestamp(column.type)
                           else "%Y-%m-%d")
        if pa.types.is_timestamp(column.type) and column.type.tz:
            text = pc.binary_join_element_wise(text, "Z", "")
    elif pa.types.is_dictionary(column.type):
        text = pc.cast(column.cast(column.type.value_type), pa.string())
    else:
        text = pc.cast(column, pa.string())
    return trim(pc.fill_null(text, ""))


def _open_parquet(path: Path, chunk_rows: int) -> Source:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(str(path))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    header = list(pf.schema_arrow.names)

    def batches() -> Iterator[Batch]:
        start = 1
        cols = [f"f{i}" for i in range(len(header))]
        # numbers, dates and timestamps stay typed (validated without text); the rest is text,
        # made on the reading thread
        ahead = prefetch([c if is_typed(c.type) else _as_text(c) for c in rb.columns]
                         for rb in pf.iter_batches(batch_size=chunk_rows))
        try:
            for columns in ahead:
                frame = pd.DataFrame({
                    col: (pd.Series(pd.arrays.ArrowExtensionArray(c)) if is_typed(c.type) else c.to_pandas())
                    for col, c in zip(cols, columns)}, copy=False)
                del columns
                yield Batch(frame, np.arange(start, start + len(frame), dtype=np.int64))
                start += len(frame)
        finally:
            ahead.close()

    return Source(name=str(path), header=header, batches=batches(), fmt="parquet",
                  encoding="", delimiter="")


# --- databases ----------------------------------------------------------------------------
def _open_database(spec: str, chunk_rows: int) -> Source:
    name = display_name(spec)
    url, _, target = spec.partition("#")
    target = target.strip()
    if not target:
        raise InputError(f"{name}: add the table or query after '#', e.g. {url.split('?')[0]}#orders")
    try:
        import sqlalchemy as sa
    except ImportError:  # pragma: no cover - a runtime dependency
        raise InputError(f"{name}: reading a database needs SQLAlchemy (pip install sqlalchemy)") from None
    is_query = bool(re.match(r"^(select|with)\b", target, re.IGNORECASE))
    if not is_query and not _IDENT.match(target):
        raise InputError(f"{name}: '{target}' is neither a table name nor a SELECT query")
    try:
        engine = sa.create_engine(url)
    except Exception as exc:  # noqa: BLE001 - bad URL or missing driver
        raise InputError(f"{name}: cannot open database ({_first_line(exc)})") from None
    if is_query:
        statement = sa.text(target)
    else:
        schema_name, _, table = target.rpartition(".")
        statement = sa.select(sa.text("*")).select_from(sa.table(table, schema=schema_name or None))
    try:
        conn = engine.connect()
        result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(statement)
    except Exception as exc:  # noqa: BLE001 - connection refused, no such table, SQL error
        engine.dispose()
        raise InputError(f"{name}: cannot read ({_first_line(exc)})") from None
    header = [str(k) for k in result.keys()]

    def batches() -> Iterator[Batch]:
        start = 1
        try:
            for rows in result.partitions(chunk_rows):
                frame = pd.DataFrame.from_records(rows, columns=range(len(header)))
                text = pd.DataFrame({f"f{i}": _db_text(frame[i]) for i in range(len(header))})
                yield Batch(text, np.arange(start, start + len(text), dtype=np.int64))
                start += len(text)
        except Exception as exc:  # noqa: BLE001 - connection lost mid-way
            raise InputError(f"{name}: cannot read ({_first_line(exc)})") from None
        finally:
            conn.close()
            engine.dispose()

    return Source(name=name, header=header, batches=batches(), fmt="database", encoding="",
                  delimiter="")


def _db_text(col: pd.Series) -> pd.Series:
    """Return database values as stripped text: dates in ISO 8601, NULL as empty."""
    if pd.api.types.is_datetime64_any_dtype(col):
        text = col.dt.strftime("%Y-%m-%dT%H:%M:%S%z") if col.dt.tz is not None else col.dt.strftime(
            "%Y-%m-%dT%H:%M:%S")
        return text.fillna("").astype(str)
    if pd.api.types.is_float_dtype(col):
        return col.astype(str).where(col.notna(), "")
    text = col.astype(object)
    missing = text.isna()
    text = text.astype(str).where(~missing, "")
    # datetime.datetime / date objects stringify with a space; ISO 8601 parsing accepts both
    return text.astype(str).str.strip()


def _first_line(exc: Exception) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(exc).__name__
