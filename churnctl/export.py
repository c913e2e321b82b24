"""Outputs: campaign CSVs, rejects, manifest - every file written atomically.

Every file appears whole or not at all: it is written to a temporary name in the same folder
(``.<name>.<random>.tmp``), flushed to disk, then renamed over the target with ``os.replace``.
CSVs are UTF-8 with ``\\n`` line endings; ids are written exactly as read (text, never floats).

Campaign files (``<out>/campaigns/<campaign>.csv``, one per campaign)
--------------------------------------------------------------------
* ``email``, ``survey`` and ``account_manager`` channels: ``email, first_name, language,
  country, customer_id, campaign, channel, offer_code, offer_type, offer_value,
  offer_min_spend, template, churn_probability, risk_tier, top_cause``; account-manager files
  add ``value_tier, monetary_total, reasons, marketing_consent, unsubscribed``.
* ``ads_audience``: ``email_sha256, country, customer_id, campaign`` - the sha256 hex of the
  trimmed, lower-cased email; the clear email is never written.
* Marketing channels (email, survey, ads_audience) leave out, counted by the first reason that
  applies: ``no_email`` (missing, blank or without ``@``), ``no_consent``
  (``marketing_consent`` false, or unknown while ``export.require_consent`` is true),
  ``unsubscribed``. Account-manager lists keep everyone: a service follow-up is not marketing.
* Rows are sorted by ``churn_probability`` (highest first), then ``customer_id``.
* A campaign with no recipient still gets a header-only file, so importers see a stable set.
* Cells of customer text (``email, first_name, language, country, reasons``) starting with
  ``=``, ``+``, ``-``, ``@``, tab or carriage return get a leading ``'`` so spreadsheets do not
  run them as formulas; ``customer_id`` is never altered (ids must join back exactly).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from .config import ExportConfig
from .errors import ConfigError

NO_ACTION = "no_action"  # same value as rules.NO_ACTION (stages do not import each other)
CONSENT_REASONS = ("no_email", "no_consent", "unsubscribed")
#: Every reason a candidate is left out (consent first, then the contact policy: policy.REASONS).
EXCLUSION_REASONS = (*CONSENT_REASONS, "suppressed", "cooldown", "campaign_cap", "over_budget")
MARKETING_CHANNELS = ("email", "survey", "ads_audience")
CONTACT_COLUMNS = ("email", "first_name", "language", "country", "marketing_consent", "unsubscribed",
                   "last_name", "phone", "city", "zip", "timezone")
#: Optional personal columns of the customers file used only by export profiles.
PROFILE_CONTACT_COLUMNS = ("last_name", "phone", "city", "zip", "timezone")
MAIL_COLUMNS = ("email", "first_name", "language", "country", "customer_id", "campaign", "channel",
                "offer_code", "offer_type", "offer_value", "offer_min_spend", "template",
                "churn_probability", "risk_tier", "top_cause", "send_at_utc")
ACCOUNT_MANAGER_EXTRA = ("value_tier", "monetary_total", "reasons", "marketing_consent", "unsubscribed")
ADS_COLUMNS = ("email_sha256", "country", "customer_id", "campaign")
#: Text cells from customer data that are neutralised against spreadsheet formulas.
NEUTRALISED_COLUMNS = ("email", "first_name", "language", "country", "reasons")
#: Header of rejects.csv when the rejects frame has no columns at all.
REJECT_COLUMNS = ("file", "line", "reason")
CODE_LENGTH = 10

_FORMULA_START = r"[=+\-@\t\r]"
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_]{0,16}$")
_CAMPAIGN_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")  # as rules.py checks at load
_B32 = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", dtype=np.uint8)
_TEXT = "str" if int(pd.__version__.split(".")[0]) >= 3 else object
_TRUE = {"true": True, "1": True, "yes": True, "y": True, "t": True,
         "false": False, "0": False, "no": False, "n": False, "f": False}


@dataclass
class CampaignResult:
    """What :func:`write_campaigns` wrote.

    ``files``: one dict per campaign file (``path`` under the output folder, ``rows``,
    ``campaign``, ``channel``), in rule order. ``excluded``: customers left out of marketing
    lists by reason (``no_email``, ``no_consent``, ``unsubscribed``); ``excluded_by_campaign``:
    the same per campaign. ``recipients``: rows written per campaign.
    """

    files: list[dict[str, Any]] = field(default_factory=list)
    excluded: dict[str, int] = field(default_factory=dict)
    excluded_by_campaign: dict[str, dict[str, int]] = field(default_factory=dict)
    recipients: dict[str, int] = field(default_factory=dict)
    holdout: dict[str, int] = field(default_factory=dict)
    #: Estimated offer cost per campaign if every treated customer redeems (base currency).
    offer_cost: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: Ledger rows: one per treated or holdout (customer, campaign), no personal data.
    contacts: pd.DataFrame | None = None


# --- atomic writes ----------------------------------------------------------------------
def _atomic_write(path: Path, write: Callable[[IO[Any]], None], *, binary: bool = False) -> None:
    """Write ``path`` through ``write(handle)`` into a temp file in the same folder, then rename.

    ``binary``: the handle takes bytes instead of text (UTF-8, no newline translation).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        # "x": a fresh file with the usual umask permissions (mkstemp would force 0600).
        with (open(tmp, "xb") if binary else open(tmp, "x", encoding="utf-8", newline="")) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable; not possible on every OS
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_csv(df: pd.DataFrame, path: Path, *, index: bool = False) -> int:
    """Return the number of data rows written to ``path`` (UTF-8, ``\\n``; atomic replace).

    The bytes are those of ``df.to_csv(index=index, lineterminator="\\n")``; frames of plain
    numbers, booleans and text are formatted by Arrow (:mod:`churnctl.csvtext`), several times
    faster, others by pandas.

    Parameters
    ----------
    df : DataFrame
        Written as is: text (ids included) exactly, missing values as empty cells.
    path : Path
        Target file; its folder is created if needed.
    index : bool
        Write the index as the first column (with its name as header).
    """
    from . import csvtext

    if csvtext.supported(df, index=index):
        def write(handle: IO[bytes]) -> None:
            for piece in csvtext.chunks(df, index=index):
                handle.write(piece)

        _atomic_write(Path(path), write, binary=True)
    else:
        _atomic_write(Path(path), lambda handle: df.to_csv(handle, index=index, lineterminator="\n"))
    return len(df)


def _json_ready(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj
        return [_json_ready(v) for v in items]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, (pd.Timestamp, datetime, date)):
        return obj.isoformat()
    if isinstance(obj, Path):
        return obj.as_posix()
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def write_json(obj: Any, path: Path) -> None:
    """Write ``obj`` as JSON to ``path`` (sorted keys, indent 2, UTF-8; atomic replace).

    NaN and infinities become ``null``; timestamps and dates ISO text; paths POSIX text.
    """
    text = json.dumps(_json_ready(obj), sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    _atomic_write(Path(path), lambda handle: handle.write(text + "\n"))


def write_rejects(rejects: pd.DataFrame | None, out_dir: Path) -> int:
    """Return the number of rejected rows written to ``out_dir/rejects.csv`` (header-only if none).

    Text cells are neutralised against spreadsheet formulas (they hold raw input).
    """
    if rejects is None or len(rejects.columns) == 0:
        rejects = pd.DataFrame(columns=list(REJECT_COLUMNS))
    text_cols = [c for c in rejects.columns if _is_text(rejects[c])]
    return write_csv(_neutralise(rejects, text_cols), Path(out_dir) / "rejects.csv")


def write_manifest(out_dir: Path, manifest: dict) -> Path:
    """Return the path of ``out_dir/run.json`` after writing ``manifest`` to it atomically."""
    path = Path(out_dir) / "run.json"
    write_json(manifest, path)
    return path


# --- text helpers -----------------------------------------------------------------------
def _is_text(s: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(s) or s.dtype == object


def _neutralise(df: pd.DataFrame, columns: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """Return ``df`` with text cells starting with = + - @ tab CR prefixed by an apostrophe."""
    out = df.copy()
    for col in columns:
        if col not in out.columns or not _is_text(out[col]):
            continue
        s = out[col]
        hit = s.str.match(_FORMULA_START, na=False).to_numpy(dtype=bool)
        if hit.any():
            fixed = s.astype(object)
            fixed[hit] = "'" + s[hit].astype(str)
            out[col] = fixed.astype(s.dtype)
    return out


def _clean_text(s: pd.Series) -> pd.Series:
    """Return ``s`` as trimmed text with blank cells missing."""
    s = s.astype(_TEXT).str.strip()
    return s.mask(s.eq("").to_numpy(dtype=bool, na_value=False))


def _to_boolean(s: pd.Series) -> pd.Series:
    """Return ``s`` as nullable boolean: bools kept; true/false/yes/no/1/0 text read; else <NA>."""
    if pd.api.types.is_bool_dtype(s):
        return s.astype("boolean")
    text = s.astype(str).where(s.notna())
    return text.str.strip().str.lower().map(_TRUE).astype("boolean")


def _format_numbers(s: pd.Series) -> pd.Series:
    """Return numbers as text without a spurious ``.0`` (15.0 -> "15"), missing kept missing."""
    uniques = s.dropna().unique()
    lookup = {v: (str(int(v)) if float(v).is_integer() else repr(float(v))) for v in uniques}
    return s.map(lookup).astype(_TEXT)


# --- offer codes ------------------------------------------------------------------------
def _b32(digests: np.ndarray, length: int) -> np.ndarray:
    """Return ``length`` base32 characters (uint8 codes) per row of sha256 ``digests``."""
    if length <= 12:  # fast path: the first 64 bits as one big-endian integer
        word = np.ascontiguousarray(digests[:, :8]).view(">u8").ravel().astype(np.uint64)
        shifts = np.uint64(59) - np.arange(length, dtype=np.uint64) * np.uint64(5)
        return _B32[((word[:, None] >> shifts) & np.uint64(31)).astype(np.intp)]
    nbytes = -(-length * 5 // 8)
    bits = np.unpackbits(digests[:, :nbytes], axis=1)[:, : length * 5]
    groups = bits.reshape(len(digests), length, 5)
    index = (groups * np.array([16, 8, 4, 2, 1], dtype=np.uint8)).sum(axis=2)
    return _B32[index]


def offer_codes(customer_ids: pd.Series, campaigns: pd.Series, as_of: pd.Timestamp, prefix: str,
                *, salt: str = "") -> pd.Series:
    """Return one offer code per row, e.g. ``CC-7QKD2M4XZA``, indexed like ``customer_ids``.

    The code is ``<prefix>-`` plus the first 10 base32 characters of
    ``sha256(salt | len(id):id | campaign | as_of date)``: the same inputs always give the same
    code, another ``as_of`` gives new codes. Codes are checked for uniqueness (vectorised);
    colliding codes are lengthened by two characters until all are unique.

    Parameters
    ----------
    customer_ids, campaigns : Series
        Aligned, one row per customer offer; (customer, campaign) pairs must be unique.
    as_of : Timestamp
        Run date; only its date part is used.
    prefix : str
        Up to 16 letters, digits or ``_`` (``export.offer_code_prefix``); empty: no prefix.
    salt : str
        Optional secret mixed into the hash so codes cannot be derived from ids alone.

    Raises
    ------
    ConfigError
        The prefix has characters that do not belong in a code.
    ValueError
        A (customer, campaign) pair repeats: the codes could not be unique.
    """
    if not _PREFIX_RE.match(prefix):
        raise ConfigError(f"export.offer_code_prefix {prefix!r} must be up to 16 letters, digits or '_'")
    ids = customer_ids.astype(_TEXT)
    camps = campaigns.astype(_TEXT).to_numpy()
    n = len(ids)
    if n == 0:
        return pd.Series([], index=customer_ids.index, dtype=_TEXT)
    from .csvtext import sha256_rows

    day = pd.Timestamp(as_of).strftime("%Y-%m-%d")
    digests = sha256_rows([f"{salt}|", _text_length(ids), ":", ids, "|", camps, f"|{day}"])
    head = (f"{prefix}-" if prefix else "").encode("ascii")
    lengths = np.full(n, CODE_LENGTH)
    codes = _assemble(head, _b32(digests, CODE_LENGTH))
    while True:
        dup = pd.Series(codes).duplicated(keep=False).to_numpy()
        if not dup.any():
            break
        if len(np.unique(digests[dup], axis=0)) < int(dup.sum()):  # equal digests: equal inputs
            raise ValueError("offer_codes: a (customer_id, campaign) pair repeats; codes cannot be unique")
        longer = int(lengths[dup].max()) + 2
        lengths[dup] = longer
        codes[dup] = _assemble(head, _b32(digests[dup], longer))
    return pd.Series(codes, index=customer_ids.index).astype(_TEXT)


def _text_length(s: pd.Series) -> pd.Series:
    """Return the length in characters of each text as decimal text (``str(len(text))``)."""
    return s.str.len().astype(str)


def _assemble(head: bytes, chars: np.ndarray) -> np.ndarray:
    """Return an object array of ``head + chars`` strings, one per row of ``chars``."""
    n, length = chars.shape
    width = len(head) + length
    buf = np.empty((n, width), dtype=np.uint8)
    buf[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    buf[:, len(head):] = chars
    return buf.view(f"S{width}").ravel().astype(f"U{width}").astype(object)


def email_sha256(emails: pd.Series) -> pd.Series:
    """Return the sha256 hex of each trimmed, lower-cased email (missing stays missing)."""
    norm = _clean_text(emails).str.lower()
    present = norm.notna().to_numpy()
    out = np.full(len(norm), None, dtype=object)
    out[present] = [hashlib.sha256(e.encode("utf-8")).hexdigest() for e in norm[present].tolist()]
    return pd.Series(out, index=emails.index).astype(_TEXT)


# --- contacts ---------------------------------------------------------------------------
def _unique_ids(indexes: list[pd.Index]) -> pd.Index:
    """Return the distinct ids of ``indexes`` as text, in order of first appearance (an Arrow hash
    pass; pandas' ``append().drop_duplicates()`` hashes Python strings)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not indexes:
        return pd.Index([], dtype=_TEXT, name="customer_id")
    chunks = [pa.array(i.astype(_TEXT).array, type=pa.large_string(), from_pandas=True) for i in indexes]
    uniq = pc.unique(pa.chunked_array(chunks, type=pa.large_string()))
    return pd.Index(uniq.to_numpy(zero_copy_only=False), dtype=_TEXT, name="customer_id")


def _positions(index: pd.Index, labels: pd.Index) -> np.ndarray:
    """Return the position in ``labels`` (unique) of each value of ``index``, -1 when absent."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if index.equals(labels):
        return np.arange(len(index))
    pos = pc.index_in(pa.array(index.astype(_TEXT).array, from_pandas=True),
                      value_set=pa.array(labels.astype(_TEXT).array, from_pandas=True))
    return pos.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.intp)


def _reindexed(s: pd.Series, positions: np.ndarray, index: pd.Index) -> pd.Series:
    """Return ``s.reindex(index)`` given :func:`_positions` (missing where -1), dtype kept."""
    if len(positions) == len(s) and np.array_equal(positions, np.arange(len(s))):
        return pd.Series(s.array, index=index, name=s.name, copy=False)  # same rows, same order
    return pd.Series(s.array.take(positions, allow_fill=True), index=index, name=s.name)


def _map_text(s: pd.Series, mapping: Mapping[Any, Any]) -> pd.Series:
    """Return ``s.map(mapping).astype(str)``, looking each distinct value up once."""
    codes, uniques = pd.factorize(s)
    looked = pd.Series(uniques, dtype=object).map(mapping).astype(_TEXT)
    return pd.Series(looked.array.take(codes, allow_fill=True), index=s.index, name=s.name)


def customer_codes(orders: pd.DataFrame) -> tuple[np.ndarray, Any]:
    """Return (code per order, -1 without a customer id; the distinct ids as an Arrow array).

    Codes number the ids in order of first appearance; one Arrow hash pass over the ids, shared
    by the passes over the orders that group by customer (contacts, the report's tables).
    """
    import pyarrow as pa

    ids = pa.array(orders["customer_id"].array, from_pandas=True)  # .array: see csvtext._column
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    enc = ids.dictionary_encode()
    codes = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.intp)
    return codes, enc.dictionary


def _latest(orders: pd.DataFrame, cols: list[str], codes: tuple[np.ndarray, Any]
            ) -> tuple[np.ndarray, dict[str, pd.Series]]:
    """Return, per customer of ``orders``, the latest non-blank value of each of ``cols`` (trimmed).

    Returns (customer codes in group order, column -> values in that order). The same values,
    in the same order, as sorting the orders by ``order_date`` (stable, missing dates last),
    trimming the columns (blank -> missing) and taking ``groupby("customer_id", sort=False).last()``,
    computed on integer customer codes (``codes``: :func:`customer_codes` of ``orders``): only
    the winning values are trimmed (one per customer, not one per order), and a customer whose
    latest value is blank falls back to the latest non-blank one.
    """
    n = len(orders)
    codes, dictionary = codes
    has_id = codes >= 0
    m = len(dictionary)
    # rank: each order's position in the stable date order (missing dates last).
    rank = np.arange(n)
    if "order_date" in orders and not orders["order_date"].is_monotonic_increasing:
        when = orders["order_date"].to_numpy(dtype="datetime64[ns]").view(np.int64).copy()
        when[when == np.iinfo(np.int64).min] = np.iinfo(np.int64).max  # NaT sorts last
        order = np.argsort(when, kind="stable")
        del when
        rank = np.empty(n, dtype=np.intp)
        rank[order] = np.arange(n)
    else:
        order = rank
    # Groups in order of first appearance in date order, as groupby(sort=False) lists them.
    first = np.full(m, n, dtype=np.intp)
    np.minimum.at(first, codes[has_id], rank[has_id])
    groups = np.argsort(first, kind="stable")[: int((first < n).sum())]

    def latest(valid: np.ndarray) -> np.ndarray:
        """Position (in date order) of each customer's latest order with ``valid``, -1 if none."""
        best = np.full(m, -1, dtype=np.intp)
        np.maximum.at(best, codes[valid], rank[valid])
        return best

    out = {}
    for col in cols:
        s = orders[col]
        if isinstance(s.dtype, pd.CategoricalDtype):  # blank categories are known up front
            cat_ok = _clean_text(pd.Series(s.cat.categories)).notna().to_numpy()
            cc = s.cat.codes.to_numpy()
            valid = has_id & (cc >= 0)
            valid[valid] = cat_ok[cc[valid]]
        else:
            valid = has_id & s.notna().to_numpy()
        best = latest(valid)[groups]
        value = _clean_text(pd.Series(s.array.take(np.where(best >= 0, order[np.maximum(best, 0)], -1),
                                                   allow_fill=True), name=col))
        # A blank latest value: leave the customer's blank values out and look again.
        redo = np.flatnonzero((best >= 0) & value.isna().to_numpy())
        while len(redo):
            valid[order[best[redo]]] = False
            stale = np.zeros(m, dtype=bool)
            stale[groups[redo]] = True
            again = latest(valid & stale[codes])[groups[redo]]
            best[redo] = again
            redo = redo[again >= 0]
            fresh = _clean_text(pd.Series(s.array.take(order[best[redo]]), name=col))
            value.iloc[redo] = fresh.to_numpy()
            redo = redo[fresh.isna().to_numpy()]
        out[col] = value
    return groups, out


def build_contacts(orders: pd.DataFrame, customers: pd.DataFrame | None, config: ExportConfig,
                   *, events: pd.DataFrame | None = None,
                   codes: tuple[np.ndarray, Any] | None = None) -> pd.DataFrame:
    """Return one contact row per customer, indexed by ``customer_id``.

    Columns ``email, first_name, language, country`` (text) and ``marketing_consent,
    unsubscribed`` (nullable boolean; <NA> when unknown).

    * The customers file wins wherever it has a value; otherwise ``email``, ``first_name`` and
      ``country`` come from the customer's latest order that has them.
    * ``language``: the customers file, else ``config.country_languages[country]``, else
      ``config.default_language``.
    * ``events`` (optional): a customer with an ``unsubscribe`` event is ``unsubscribed``.
    * ``codes`` (optional): :func:`customer_codes` of ``orders``, when the caller has them.
    """
    import pyarrow as pa

    cols = [c for c in ("email", "first_name", "country") if c in orders.columns]
    latest = None
    if cols and len(orders):
        codes = codes if codes is not None else customer_codes(orders)
        latest = _latest(orders, cols, codes)
    # Every customer once: the customers file first (its last row per id, in file order, as
    # drop_duplicates(keep="last") keeps), then customers known from orders only, in the order
    # the latest-values pass lists them. One Arrow hash pass codes both lists of ids.
    chunks = []
    if customers is not None and "customer_id" in customers.columns:
        chunks.append(pa.array(customers["customer_id"].array, type=pa.large_string(), from_pandas=True))
    if latest is not None:
        chunks.append(codes[1].take(pa.array(latest[0])).cast(pa.large_string()))
    both = pa.chunked_array(chunks, type=pa.large_string()).combine_chunks().dictionary_encode()
    k = len(both.dictionary)
    ids = both.indices.fill_null(k).to_numpy(zero_copy_only=False).astype(np.intp)  # k: a missing id
    cust = None
    n_cust = 0
    if customers is not None and "customer_id" in customers.columns:
        rows = len(customers)
        last = np.full(k + 1, -1, dtype=np.intp)
        np.maximum.at(last, ids[:rows], np.arange(rows))
        kept = np.sort(last[last >= 0])
        frame = customers if len(kept) == rows else customers.iloc[kept]
        cust = frame.set_index("customer_id")
        n_cust = len(kept)
        index_codes = ids[kept]
    else:
        index_codes = np.zeros(0, dtype=np.intp)
    from_orders = None
    if latest is not None:
        group_codes = ids[len(ids) - len(latest[0]):]
        seen = np.zeros(k + 1, dtype=bool)
        seen[index_codes] = True
        new = ~seen[group_codes]
        position = np.full(k + 1, -1, dtype=np.intp)  # combined code -> position in the groups
        position[group_codes] = np.arange(len(group_codes))
        if n_cust:
            index_codes = np.concatenate([index_codes, group_codes[new]])
            at = position[index_codes]
        else:
            index_codes, at = group_codes, None
    labels = both.dictionary.take(pa.array(index_codes, type=pa.int64(), mask=index_codes == k))  # k: null
    index = pd.Index(pd.array(labels, dtype=_TEXT) if _TEXT == "str" else labels.to_numpy(zero_copy_only=False),
                     dtype=_TEXT, name="customer_id")
    if latest is not None:
        values = latest[1]
        from_orders = {col: (v.set_axis(index) if at is None else _reindexed(v, at, index))
                       for col, v in values.items()}
    at_cust = None
    if cust is not None:
        at_cust = np.where(np.arange(len(index)) < n_cust, np.arange(len(index)), -1)

    def pick(col: str) -> pd.Series:
        base = (from_orders[col].astype(_TEXT) if from_orders is not None and col in from_orders
                else pd.Series(None, index=index, dtype=_TEXT))
        if cust is not None and col in cust.columns:
            return _clean_text(_reindexed(cust[col], at_cust, index)).combine_first(base).astype(_TEXT)
        return base

    country = pick("country")
    mapped = _map_text(country, config.country_languages).fillna(config.default_language)
    if cust is not None and "language" in cust.columns:
        language = _clean_text(_reindexed(cust["language"], at_cust, index)).fillna(mapped)
    else:
        language = mapped

    def flag(col: str) -> pd.Series:
        if cust is not None and col in cust.columns:
            return _reindexed(_to_boolean(cust[col]), at_cust, index)
        return pd.Series(pd.NA, index=index, dtype="boolean")

    unsubscribed = flag("unsubscribed")
    if events is not None and {"customer_id", "event_type"} <= set(events.columns):
        gone = pd.Index(events.loc[events["event_type"].eq("unsubscribe").to_numpy(dtype=bool,
                                                                           na_value=False),
                                   "customer_id"].astype(_TEXT).unique())
        unsubscribed = unsubscribed.mask(index.isin(gone), True)
    return pd.DataFrame({
        "email": pick("email"),
        "first_name": pick("first_name"),
        "language": language.astype(_TEXT),
        "country": country,
        "marketing_consent": flag("marketing_consent"),
        "unsubscribed": unsubscribed,
        **{col: pick(col) for col in PROFILE_CONTACT_COLUMNS},
    }, index=index)


# --- campaigns --------------------------------------------------------------------------
def _campaign_channel_pairs(campaign: pd.Series, channel: pd.Series) -> list[tuple[Any, Any]]:
    """Return the distinct (campaign, channel) pairs in order of first appearance (as
    ``drop_duplicates`` lists them), from integer codes: a few pairs among many rows."""
    c_codes, c_names = pd.factorize(campaign, use_na_sentinel=False)
    h_codes, h_names = pd.factorize(channel, use_na_sentinel=False)
    key = c_codes.astype(np.int64) * max(len(h_names), 1) + h_codes
    _, first = np.unique(key, return_index=True)
    first = np.sort(first)
    return list(zip(np.asarray(c_names, dtype=object)[c_codes[first]].tolist(),
                    np.asarray(h_names, dtype=object)[h_codes[first]].tolist()))


def _campaign_channels(acted: pd.DataFrame, campaigns: Mapping[str, str] | None) -> dict[str, str]:
    out = dict(campaigns or {})
    for campaign, channel in _campaign_channel_pairs(acted["campaign"], acted["channel"]):
        if out.setdefault(campaign, channel) != channel:
            raise ValueError(f"campaign '{campaign}' has two channels: '{out[campaign]}' and '{channel}'")
    for campaign in out:  # a campaign names a file: never a path
        if not isinstance(campaign, str) or not _CAMPAIGN_RE.match(campaign):
            raise ValueError(f"campaign {campaign!r} is not a valid file name (a-z, 0-9, '_', '-')")
    return out


def exclusion_reasons(contacts: pd.DataFrame, require_consent: bool) -> pd.Series:
    """Return, per contact row, the first reason it cannot get marketing ("" when it can).

    Order: ``no_email`` (missing, blank or no ``@``), ``no_consent`` (false, or unknown when
    ``require_consent``), ``unsubscribed`` (true).
    """
    email = _clean_text(contacts["email"]) if "email" in contacts else pd.Series(np.nan, index=contacts.index)
    has_email = email.str.contains("@", regex=False).to_numpy(dtype=bool, na_value=False)
    consent = (_to_boolean(contacts["marketing_consent"]) if "marketing_consent" in contacts
               else pd.Series(pd.NA, index=contacts.index, dtype="boolean"))
    no_consent = consent.eq(False).to_numpy(dtype=bool, na_value=False)
    if require_consent:
        no_consent |= consent.isna().to_numpy()
    unsub = (_to_boolean(contacts["unsubscribed"]).to_numpy(dtype=bool, na_value=False)
             if "unsubscribed" in contacts else np.zeros(len(contacts), dtype=bool))
    reason = np.select([~has_email, no_consent, unsub], list(CONSENT_REASONS), default="")
    return pd.Series(reason, index=contacts.index, dtype=object).astype(_TEXT)


def _rows_of(frame: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    """Return ``frame.reindex(index)`` (``frame``'s index unique); ids matched by an Arrow hash
    join, rows taken by position when every id is found (pandas' string ``get_indexer`` is
    several times slower)."""
    if frame.index.equals(index):
        return frame.set_axis(index)
    if not (pd.api.types.is_string_dtype(frame.index.dtype) and pd.api.types.is_string_dtype(index.dtype)):
        return frame.reindex(index)
    at = _positions(index, frame.index)
    if len(at) and at.min() < 0:
        return frame.reindex(index)
    return frame.take(at).set_axis(index)


def candidates(scores: pd.DataFrame, actions: pd.DataFrame, contacts: pd.DataFrame,
               config: ExportConfig, *, campaigns: Mapping[str, str] | None = None
               ) -> tuple[pd.DataFrame, dict[str, str]]:
    """Return (one row per actioned customer with contact data and consent ``reason``, campaign -> channel).

    Columns: the actions columns, ``customer_id``, score columns used downstream
    (``churn_probability, risk_tier, top_cause, value_tier, monetary_total, reasons, aov``),
    ``value_at_risk`` (the scores column when present, else ``churn_probability x aov``),
    :data:`CONTACT_COLUMNS` and ``reason`` (a consent reason for marketing channels, else "").
    """
    keep = actions["campaign"].ne(NO_ACTION).to_numpy(dtype=bool, na_value=False)
    acted = actions.loc[keep]
    channels = _campaign_channels(acted, campaigns)
    wanted = ["churn_probability", "risk_tier", "top_cause", "value_tier", "monetary_total", "reasons", "aov",
              "value_at_risk"]
    own = [c for c in (*wanted, "country") if c in scores.columns]
    if actions.index is scores.index:  # rules.apply keeps the scores' index: rows by position
        picked = scores[own].iloc[np.flatnonzero(keep)].set_axis(acted.index)
    else:
        picked = scores[own].reindex(acted.index)
    frame = pd.concat([acted, picked.reindex(columns=wanted)], axis=1)
    if frame["value_at_risk"].isna().all():
        frame["value_at_risk"] = (pd.to_numeric(frame["churn_probability"], errors="coerce")
                                  * pd.to_numeric(frame["aov"], errors="coerce"))
    people = _rows_of(contacts, acted.index).reindex(columns=list(CONTACT_COLUMNS))
    reason = exclusion_reasons(people, config.require_consent)
    marketing = frame["channel"].isin(MARKETING_CHANNELS).to_numpy(dtype=bool)
    reason = reason.where(marketing, "")
    country = _clean_text(people["country"])
    if "country" in scores.columns:
        country = country.fillna(_clean_text(picked["country"]))
    language = _clean_text(people["language"]).fillna(
        _map_text(country, config.country_languages)).fillna(config.default_language)
    frame = frame.assign(
        customer_id=frame.index.astype(_TEXT),
        email=_clean_text(people["email"]),
        first_name=_clean_text(people["first_name"]),
        language=language,
        country=country,
        marketing_consent=people["marketing_consent"].astype("boolean"),
        unsubscribed=people["unsubscribed"].astype("boolean"),
        **{col: _clean_text(people[col]) for col in PROFILE_CONTACT_COLUMNS},
        reason=reason,
    ).rename_axis(None)
    return frame, channels


def write_campaigns(out_dir: Path, scores: pd.DataFrame, actions: pd.DataFrame, contacts: pd.DataFrame,
                    as_of: pd.Timestamp, config: ExportConfig, *,
                    campaigns: Mapping[str, str] | None = None) -> CampaignResult:
    """Return what was written: one CSV per campaign, every eligible customer treated (no policy).

    The nightly path (``api``) runs :func:`candidates`, ``policy.plan`` and :func:`write_planned`;
    this shortcut treats every customer who passes the consent checks.
    """
    frame, channels = candidates(scores, actions, contacts, config, campaigns=campaigns)
    ok = frame["reason"].eq("").to_numpy(dtype=bool)
    frame = frame.assign(group=np.where(ok, "treated", ""), send_at_utc=pd.NaT, offer_cost=np.nan)
    return write_planned(out_dir, frame, channels, as_of, config,
                         order_by_value="value_at_risk" in scores.columns)


def _sort_rows(frame: pd.DataFrame, by: list[str], ascending: list[bool]) -> pd.DataFrame:
    """Return ``frame.sort_values(by, ascending=ascending, na_position="last", kind="stable")``,
    sorted by Arrow when every key is numbers or text (pandas first factorizes text keys)."""
    return frame.take(_sort_order(frame, by, ascending))


def _sort_order(frame: pd.DataFrame, by: list[str], ascending: list[bool]) -> np.ndarray:
    """Return the row positions of :func:`_sort_rows`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    keys = [frame[c] for c in by]
    if not all(s.dtype.kind in "iuf" if isinstance(s.dtype, np.dtype)
               else pd.api.types.is_string_dtype(s.dtype) for s in keys):
        return frame.reset_index(drop=True).sort_values(by, ascending=ascending, na_position="last",
                                                        kind="stable").index.to_numpy()
    table = pa.table({f"k{i}": pa.array(s.to_numpy() if isinstance(s.dtype, np.dtype) else s.array,
                                        from_pandas=True)
                      for i, s in enumerate(keys)})
    sort_keys = [(f"k{i}", "ascending" if a else "descending") for i, a in enumerate(ascending)]
    if int(pa.__version__.split(".")[0]) >= 25:  # null placement per key since Arrow 25
        order = pc.sort_indices(table, sort_keys=[(*k, "at_end") for k in sort_keys])
    else:
        order = pc.sort_indices(table, sort_keys=sort_keys, null_placement="at_end")
    return order.to_numpy()


def write_planned(out_dir: Path, planned: pd.DataFrame, channels: Mapping[str, str], as_of: pd.Timestamp,
                  config: ExportConfig, *, settings: Mapping[str, Any] | None = None,
                  order_by_value: bool = False) -> CampaignResult:
    """Return what was written: the treated rows of ``planned``, one file (or more) per campaign.

    Parameters
    ----------
    out_dir : Path
        Run output folder; files go to ``out_dir/campaigns/``.
    planned : DataFrame
        From :func:`candidates` plus ``policy.plan`` (``reason``, ``group``, ``offer_cost``,
        ``send_at_utc``).
    channels : mapping
        campaign -> channel; every campaign gets a file, header-only when empty.
    as_of : Timestamp
        Run date, part of every offer code.
    config : ExportConfig
    settings : mapping, optional
        campaign -> ``rules.CampaignSettings`` (its ``profile``); default generic.
    order_by_value : bool
        Sort by ``value_at_risk`` (highest first) instead of ``churn_probability``.

    Returns
    -------
    CampaignResult
        Files, exclusion counts per reason, recipients and holdout per campaign, profile
        warnings, and ``contacts``: the ledger rows (treated and holdout).
    """
    from . import profiles  # profiles import nothing of ours but pandas

    out_dir = Path(out_dir)
    settings = settings or {}
    key = "value_at_risk" if order_by_value else "churn_probability"
    ledger_cols = ["customer_id", "campaign", "channel", "offer_code", "offer_type", "offer_value", "offer_cost",
                   "group", "send_at_utc", "language", "template"]
    # The assigned rows are handled with the few columns the codes, the order and the ledger
    # need; the wide rows (every contact column) are taken once, for the treated, in file order.
    narrow = list(dict.fromkeys(c for c in ["group", "offer_type", *ledger_cols, key] if c in planned.columns))
    at = np.flatnonzero(planned["group"].isin(["treated", "holdout"]).to_numpy(dtype=bool))
    assigned = planned[narrow].iloc[at]
    treated = assigned["group"].eq("treated").to_numpy(dtype=bool)
    with_code = treated & assigned["offer_type"].ne("none").to_numpy(dtype=bool, na_value=False) & \
        assigned["channel"].ne("ads_audience").to_numpy(dtype=bool, na_value=False)
    codes = np.full(len(assigned), None, dtype=object)
    if with_code.any():
        codes[with_code] = offer_codes(assigned["customer_id"][with_code], assigned["campaign"][with_code], as_of,
                                       config.offer_code_prefix, salt=config.offer_code_salt).to_numpy(dtype=object)
    assigned = assigned.assign(
        offer_code=pd.Series(codes, index=assigned.index, dtype=object).astype(_TEXT),
        sort_key=pd.to_numeric(assigned[key], errors="coerce"),
    )
    order = _sort_order(assigned, ["sort_key", "customer_id"], [False, True])
    assigned = assigned.take(order)
    treated = assigned["group"].eq("treated").to_numpy(dtype=bool)
    kept = planned.take(at[order][treated]).assign(offer_code=assigned["offer_code"].array[treated],
                                                   sort_key=assigned["sort_key"].to_numpy()[treated])
    kept = kept.assign(
        offer_value=_format_numbers(kept["offer_value"]),
        offer_min_spend=_format_numbers(kept["offer_min_spend"]),
        churn_probability=kept["churn_probability"].astype("float64").round(4),
        monetary_total=pd.to_numeric(kept["monetary_total"], errors="coerce").round(2),
    )
    left = planned[["campaign", "reason"]].loc[planned["reason"].ne("").to_numpy(dtype=bool)]
    counts = left.groupby(["campaign", "reason"], observed=True).size()
    holdouts = assigned[["campaign"]].loc[~treated].groupby("campaign", observed=True).size()
    result = CampaignResult(excluded={r: 0 for r in EXCLUSION_REASONS})
    folder = out_dir / "campaigns"
    folder.mkdir(parents=True, exist_ok=True)
    by_campaign = kept.groupby("campaign", sort=False, observed=True).indices
    for campaign, channel in channels.items():
        rows = kept.iloc[by_campaign[campaign]] if campaign in by_campaign else kept.iloc[:0]
        profile = getattr(settings.get(campaign), "profile", "generic")
        if channel == "ads_audience":
            rows = rows.assign(email_sha256=email_sha256(rows["email"]))
            cols = list(ADS_COLUMNS)
        else:
            cols = list(MAIL_COLUMNS) + (list(ACCOUNT_MANAGER_EXTRA) if channel == "account_manager" else [])
        parts, warnings = profiles.render(profile, rows, campaign=campaign, generic_columns=cols)
        result.warnings.extend(warnings)
        n = 0
        for name, text, count in parts:
            path = folder / name
            _atomic_write(path, lambda handle, text=text: handle.write(text))
            n += count
            result.files.append({"path": str(path), "rows": count, "campaign": campaign, "channel": channel,
                                 "profile": profile})
        per = {r: int(counts.get((campaign, r), 0)) for r in EXCLUSION_REASONS}
        for r, v in per.items():
            result.excluded[r] += v
        result.excluded_by_campaign[campaign] = per
        result.recipients[campaign] = n
        result.holdout[campaign] = int(holdouts.get(campaign, 0))
        cost = pd.to_numeric(rows["offer_cost"], errors="coerce").sum() if "offer_cost" in rows else 0.0
        result.offer_cost[campaign] = round(float(cost), 2)
    result.contacts = _sort_rows(assigned.reindex(columns=ledger_cols).rename(columns={"group": "group_name"}),
                                 ["campaign", "customer_id"], [True, True]).reset_index(drop=True)
    return result


# --- staging and publication --------------------------------------------------------------
STAGING_PREFIX = ".staging-"
#: Environment variable naming a fault-injection point (tests): the process kills itself there.
FAULT_ENV = "CHURNCTL_FAULT"


def fault_point(name: str) -> None:
    """Kill this process with SIGKILL when ``$CHURNCTL_FAULT`` equals ``name`` (crash tests only)."""
    if os.environ.get(FAULT_ENV) == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def new_staging(out_dir: Path) -> Path:
    """Return a fresh, empty staging folder inside ``out_dir`` (``.staging-<random>``)."""
    stage = Path(out_dir) / f"{STAGING_PREFIX}{secrets.token_hex(6)}"
    stage.mkdir(parents=True)
    return stage


def _manifest_paths(stage: Path, out_dir: Path) -> list[str] | None:
    for where in (stage / "run.json", out_dir / "run.json"):
        with contextlib.suppress(OSError, ValueError):
            return [o["path"] for o in json.loads(where.read_text(encoding="utf-8")).get("outputs", [])]
    return None


def publish(stage: Path, out_dir: Path) -> None:
    """Move the staged run into ``out_dir``: every output, then ``run.json`` last; prune stale campaigns.

    Idempotent: after a crash it can be called again on the same folders (roll-forward). Campaign
    files of ``out_dir/campaigns`` that the new manifest does not list are removed, so the folder
    holds exactly the new run's set.
    """
    stage, out_dir = Path(stage), Path(out_dir)
    paths = _manifest_paths(stage, out_dir)
    if stage.is_dir():
        staged = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*")
                        if p.is_file() and p.name != COMMIT_MARKER and not p.name.endswith(".tmp"))
        for rel in [p for p in staged if p != "run.json"] + (["run.json"] if "run.json" in staged else []):
            target = out_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / rel, target)
            fault_point(f"publish:{rel}")
    if paths is not None and (out_dir / "campaigns").is_dir():
        keep = {p for p in paths if p.startswith("campaigns/")}
        for old in (out_dir / "campaigns").glob("*.csv"):
            if f"campaigns/{old.name}" not in keep:
                old.unlink()
    with contextlib.suppress(OSError):
        fd = os.open(out_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    if stage.is_dir():
        import shutil

        shutil.rmtree(stage, ignore_errors=True)


def discard_stagings(out_dirs: list[Path], keep: set[Path] = frozenset()) -> int:
    """Remove ``.staging-*`` folders under each of ``out_dirs`` except ``keep``; return how many."""
    import shutil

    n = 0
    for out_dir in out_dirs:
        for stage in Path(out_dir).glob(f"{STAGING_PREFIX}*"):
            if stage.is_dir() and stage.resolve() not in keep:
                shutil.rmtree(stage, ignore_errors=True)
                n += 1
    return n


COMMIT_MARKER = ".committed"


def mark_committed(stage: Path) -> None:
    """Write the staging folder's commit marker: from now on recovery publishes it."""
    _atomic_write(Path(stage) / COMMIT_MARKER, lambda handle: handle.write("committed\n"))
