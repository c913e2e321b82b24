"""The mapping language: turn a platform export's columns into canonical order text columns.

A mapping is a YAML file (read with ``yaml.safe_load``) validated when loaded; any problem
raises :class:`~churnctl.errors.ConfigError` naming the file, the key and the problem.  Built-in
presets live in ``configs/mappings/``; more folders can be added with ``ingest.mapping_dirs``.

.. code-block:: yaml

    version: 1
    name: myshop                       # preset name (used by --source)
    description: My shop's nightly export
    detect: [Order No, Buyer, Paid]    # header columns that identify the export (all needed)
    channel: myshop                    # constant channel, also scopes buyer ids
    decimal: ","                       # decimal mark of amounts: "." (default) or ","
    date_format: "%d.%m.%Y %H:%M"      # strptime format(s) of dates; ISO 8601 when absent
    line_items: false                  # true: rows sharing an order id are one order's items
    skip_lines_matching: "^Total"      # regex on the first field: summary lines, not records
    symbols: {"$": CAD}                # currency symbol -> code overrides
    fields:                            # canonical column (or buyer_id) -> how to get it
      order_id: Order No               # shorthand for {from: Order No}
      order_date: {from: Paid}
      amount: {from: [Total, Grand Total], aggregate: sum}
      currency: {symbol_of: Total, default: EUR}
      status: {from: State, map: {paid: completed, storniert: cancelled}, default: completed}
      email: {from: Mail}
      buyer_id: {from: Buyer}

Field keys: ``from`` (column name, or a list: the first present in the file), ``value``
(constant), ``symbol_of`` (currency code from the symbol written in that amount column),
``default`` (when empty), ``map`` (value map, case-insensitive; unmapped values pass through
to validation), ``format`` (order_date only: strptime format or list, tried in order),
``aggregate`` (``first`` non-empty value of the order's rows, the default, or ``sum``).

``customer_id``: mapped directly it is taken verbatim.  Otherwise it is derived by the identity
rule (``ingest.identity``): ``email`` - a normalised email (trimmed, lower-cased) gives
``em_`` + 16 hex digits of its SipHash-2-4 (fixed key), else the buyer id scoped by channel,
``<channel>:<buyer_id>``; ``buyer`` - the scoped buyer id first, the email key when absent.
The clear email never enters ``customer_id``; it stays in ``email`` for campaign exports.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import readers, schema
from .config import read_yaml_mapping
from .errors import ConfigError, InputError

PRESET_DIR = Path(__file__).resolve().parents[1] / "configs" / "mappings"
TARGETS = schema.ORDER_COLUMNS + ("buyer_id",)
NUMERIC_TARGETS = ("amount",) + schema.ORDER_MONEY + schema.ORDER_NUMERIC
IDENTITY_RULES = ("email", "buyer")
EMAIL_HASH_KEY = "churnctl-email-1"  # 16 bytes: SipHash key (pseudonym, not a secret)
_TOP_KEYS = ("version", "name", "description", "detect", "channel", "decimal", "date_format",
             "line_items", "skip_lines_matching", "symbols", "fields", "columns_documented")
_FIELD_KEYS = ("from", "value", "symbol_of", "default", "map", "format", "aggregate")
SYMBOLS = {
    "$": "USD", "US$": "USD", "USD$": "USD", "CA$": "CAD", "C$": "CAD", "A$": "AUD", "AU$": "AUD",
    "NZ$": "NZD", "HK$": "HKD", "MX$": "MXN", "R$": "BRL", "€": "EUR", "£": "GBP", "¥": "JPY",
    "₹": "INR", "₩": "KRW", "₺": "TRY", "zł": "PLN", "kr": "SEK", "Kč": "CZK", "Fr.": "CHF",
    "CHF": "CHF",
}
# A currency token before or after an amount: a symbol, or a 3-letter upper-case code.
_CUR = r"(?:[A-Z]{2}\$|[A-Z]\$|[A-Z]{3}|\$|€|£|¥|₹|₩|₺|zł|kr|Kč|Fr\.)"


@dataclass(frozen=True)
class Field:
    target: str
    sources: tuple[str, ...] = ()
    value: str | None = None
    symbol_of: str | None = None
    default: str | None = None
    map: dict[str, str] | None = None
    formats: tuple[str, ...] = ()
    aggregate: str = "first"


@dataclass(frozen=True)
class Mapping:
    name: str
    path: str
    description: str = ""
    detect: tuple[str, ...] = ()
    channel: str | None = None
    decimal: str = "."
    line_items: bool = False
    skip_lines_matching: str | None = None
    symbols: dict[str, str] = field(default_factory=dict)
    fields: dict[str, Field] = field(default_factory=dict)

    @property
    def date_formats(self) -> tuple[str, ...]:
        f = self.fields.get("order_date")
        return f.formats if f else ()

    def columns(self) -> list[str]:
        """Return every source column the mapping reads."""
        cols = []
        for f in self.fields.values():
            cols += list(f.sources) + ([f.symbol_of] if f.symbol_of else [])
        return list(dict.fromkeys(cols))


# --- loading ------------------------------------------------------------------------------
def _fail(path: Path | str, key: str, problem: str) -> ConfigError:
    return ConfigError(f"{path}: '{key}' {problem}")


def _check_keys(path, raw: dict, allowed, prefix: str) -> None:
    for key in raw:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"{path}: unknown key '{prefix}{key}'{hint}")


def _text_list(path, key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(
        isinstance(v, (str, int)) and not isinstance(v, bool) and str(v).strip() for v in value
    ):
        raise _fail(path, key, "must be a column name or a non-empty list of them")
    return tuple(str(v).strip() for v in value)


def _field(path, target: str, raw: Any) -> Field:
    key = f"fields.{target}"
    if isinstance(raw, (str, int)) and not isinstance(raw, bool):
        raw = {"from": raw}
    if not isinstance(raw, dict):
        raise _fail(path, key, "must be a column name or a mapping of field keys")
    _check_keys(path, raw, _FIELD_KEYS, f"{key}.")
    given = [k for k in ("from", "value", "symbol_of") if k in raw]
    if len(given) != 1:
        raise _fail(path, key, "needs exactly one of 'from', 'value', 'symbol_of'")
    kw: dict[str, Any] = {"target": target}
    if "from" in raw:
        kw["sources"] = _text_list(path, f"{key}.from", raw["from"])
    if "value" in raw:
        if not isinstance(raw["value"], (str, int, float)) or isinstance(raw["value"], bool):
            raise _fail(path, f"{key}.value", "must be text or a number")
        kw["value"] = str(raw["value"])
    if "symbol_of" in raw:
        if target != "currency":
            raise _fail(path, f"{key}.symbol_of", "is only for the currency field")
        kw["symbol_of"] = _text_list(path, f"{key}.symbol_of", raw["symbol_of"])[0]
    if "default" in raw:
        if not isinstance(raw["default"], (str, int, float)) or isinstance(raw["default"], bool):
            raise _fail(path, f"{key}.default", "must be text or a number")
        kw["default"] = str(raw["default"])
    if "map" in raw:
        m = raw["map"]
        if not isinstance(m, dict) or not m:
            raise _fail(path, f"{key}.map", "must be a non-empty mapping of value: replacement")
        out = {}
        for k, v in m.items():
            if not isinstance(v, (str, int)) or isinstance(v, bool):
                raise _fail(path, f"{key}.map.{k}", "replacement must be text")
            if target == "status" and str(v) not in schema.ORDER_STATUSES:
                raise _fail(path, f"{key}.map.{k}",
                            f"'{v}' is not a status ({', '.join(schema.ORDER_STATUSES)})")
            out[str(k).strip().lower()] = str(v)
        kw["map"] = out
    if "format" in raw:
        if target != "order_date":
            raise _fail(path, f"{key}.format", "is only for order_date")
        kw["formats"] = _text_list(path, f"{key}.format", raw["format"])
        for fmt in kw["formats"]:
            if "%" not in fmt:
                raise _fail(path, f"{key}.format", f"'{fmt}' is not a strptime format (e.g. %d/%m/%Y)")
    if "aggregate" in raw:
        if raw["aggregate"] not in ("first", "sum"):
            raise _fail(path, f"{key}.aggregate", f"must be 'first' or 'sum', got {raw['aggregate']!r}")
        if raw["aggregate"] == "sum" and target not in NUMERIC_TARGETS:
            raise _fail(path, f"{key}.aggregate", "'sum' is only for amounts and counts")
        kw["aggregate"] = raw["aggregate"]
    return Field(**kw)


def load_mapping(path: Path | str) -> Mapping:
    """Return the validated mapping in YAML file ``path``."""
    path = Path(path)
    raw = read_yaml_mapping(path, "mapping")
    _check_keys(path, raw, _TOP_KEYS, "")
    if raw.get("version", 1) != 1:
        raise _fail(path, "version", f"must be 1, got {raw.get('version')!r}")
    name = raw.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_\-]*", name):
        raise _fail(path, "name", "must be a lower-case word such as 'myshop'")
    fields_raw = raw.get("fields")
    if not isinstance(fields_raw, dict) or not fields_raw:
        raise _fail(path, "fields", "must be a mapping of canonical column: field")
    fields = {}
    for target, spec in fields_raw.items():
        if target not in TARGETS:
            close = difflib.get_close_matches(str(target), TARGETS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{path}: unknown field 'fields.{target}'{hint}; fields are "
                              f"canonical order columns and buyer_id")
        fields[target] = _field(path, target, spec)
    for need in ("order_id", "order_date", "amount"):
        if need not in fields:
            raise _fail(path, f"fields.{need}", "is required")
    if not any(k in fields for k in ("customer_id", "email", "buyer_id")):
        raise _fail(path, "fields.customer_id", "is required (or email / buyer_id to derive it)")
    date_format = raw.get("date_format")
    if date_format is not None:
        formats = _text_list(path, "date_format", date_format)
        for fmt in formats:
            if "%" not in fmt:
                raise _fail(path, "date_format", f"'{fmt}' is not a strptime format (e.g. %d/%m/%Y)")
        od = fields["order_date"]
        if not od.formats:
            fields["order_date"] = Field(**{**od.__dict__, "formats": formats})
    decimal = raw.get("decimal", ".")
    if decimal not in (".", ","):
        raise _fail(path, "decimal", f"must be '.' or ',', got {decimal!r}")
    skip = raw.get("skip_lines_matching")
    if skip is not None:
        try:
            re.compile(str(skip))
        except re.error as exc:
            raise _fail(path, "skip_lines_matching", f"is not a valid regular expression ({exc})") from None
    symbols = raw.get("symbols") or {}
    if not isinstance(symbols, dict) or not all(
        isinstance(v, str) and re.fullmatch(r"[A-Z]{3}", v) for v in symbols.values()
    ):
        raise _fail(path, "symbols", "must map symbols to 3-letter currency codes")
    line_items = raw.get("line_items", False)
    if not isinstance(line_items, bool):
        raise _fail(path, "line_items", "must be true or false")
    channel = raw.get("channel")
    if channel is not None and not (isinstance(channel, str) and channel.strip()):
        raise _fail(path, "channel", "must be text")
    detect = _text_list(path, "detect", raw["detect"]) if "detect" in raw else ()
    desc = raw.get("description", "")
    return Mapping(name=name, path=str(path), description=str(desc), detect=detect,
                   channel=channel.strip().lower() if channel else None, decimal=decimal,
                   line_items=line_items, skip_lines_matching=str(skip) if skip else None,
                   symbols={str(k): v for k, v in symbols.items()}, fields=fields)


def presets(dirs: tuple[str, ...] | list[str] = ()) -> dict[str, Mapping]:
    """Return the built-in presets and those in ``dirs`` by name (a later folder wins)."""
    out: dict[str, Mapping] = {}
    for folder in (PRESET_DIR, *map(Path, dirs)):
        if not folder.is_dir():
            if folder != PRESET_DIR:
                raise ConfigError(f"{folder}: mapping folder not found (ingest.mapping_dirs)")
            continue
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            m = load_mapping(path)
            out[m.name] = m
    return out


def resolve(source: str, dirs: tuple[str, ...] | list[str] = ()) -> Mapping:
    """Return the mapping named ``source`` (a preset name or a mapping YAML file)."""
    if source.endswith((".yaml", ".yml")) or "/" in source or "\\" in source:
        return load_mapping(source)
    known = presets(dirs)
    if source not in known:
        raise ConfigError(f"--source: unknown preset '{source}' (presets: {', '.join(sorted(known))};"
                          " or give a mapping .yaml file)")
    return known[source]


def detect(name: str, header: list[str], known: dict[str, Mapping]) -> Mapping:
    """Return the preset whose ``detect`` columns are all in ``header`` (the most specific).

    Raises InputError listing the three closest presets and the columns each misses.
    """
    have = {h.strip().lower() for h in header}
    scored = []
    for m in known.values():
        if not m.detect:
            continue
        missing = [c for c in m.detect if c.lower() not in have]
        scored.append((len(missing), -len(m.detect), m.name, missing, m))
    matches = [s for s in scored if s[0] == 0]
    if matches:
        return min(matches)[4]
    close = sorted(scored, key=lambda s: (s[0] / len(s[4].detect), s[0], s[2]))
    close = [s for s in close if s[0] < len(s[4].detect)][:3] or close[:3]
    parts = "; ".join(f"{s[2]} (missing {', '.join(repr(c) for c in s[3])})" for s in close)
    raise InputError(f"{name}: header matches no preset (pass --source); closest: {parts}")


# --- applying -----------------------------------------------------------------------------
# A plain number with decimal ".": what Arrow's cast reads (exponents included), so a value is
# read the same whether or not other values of its column need the slow path.
_PLAIN_NUMBER = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"


def normalise_numbers(s: pd.Series, decimal: str = ".") -> pd.Series:
    """Return amounts as plain decimal text: ``"€1.234,50"`` -> ``"1234.50"`` (decimal ",").

    Spaces, a currency symbol or 3-letter code before or after the number and thousands
    separators of the declared style are removed.  Text of any other shape (``"12.50"`` with
    decimal ``","``) is returned prefixed with ``?`` so validation rejects it as an
    unparsable number: nothing is guessed.
    """
    # fast path: most values are already plain numbers (or empty)
    if decimal != "," and cast_numbers(s) is not None:
        return s
    if decimal == ",":
        simple = s.str.fullmatch(r"[+-]?\d+(?:,\d+)?").fillna(False).astype(bool)
    else:
        simple = pd.Series(_plain(s, _PLAIN_NUMBER), index=s.index)
    todo = ~simple & s.ne("")
    if decimal == "," and simple.any():
        s = s.mask(simple, s.str.replace(",", ".", regex=False))
    if not todo.any():
        return s
    out = s.copy()
    out[todo] = _normalise_slow(s[todo], decimal)
    return out


def parse_numbers(s: pd.Series, decimal: str = ".") -> pd.Series:
    """Return amounts as numbers: what validation reads from :func:`normalise_numbers` text.

    A float64 column (``pd.ArrowDtype``, like a typed Parquet column): null where the text is
    empty, NaN where it is not a number in the declared style (``?`` text), else the value
    Arrow reads from the normalised text.  Computed without building that text where a
    value needs no change, so a clean column is cast once.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if decimal != ",":
        fast = cast_numbers(s)  # every value a number (or empty): done
        if fast is not None:
            return pd.Series(pd.arrays.ArrowExtensionArray(fast), index=s.index, copy=False)
    text = _arrow_text(s)
    if decimal == ",":
        simple = np.asarray(s.str.fullmatch(r"[+-]?\d+(?:,\d+)?").fillna(False), dtype=bool)
    else:
        simple = _plain(s, _PLAIN_NUMBER)
    empty = np.asarray(pc.equal(text, "").to_numpy(zero_copy_only=False), dtype=bool)
    plain = pc.replace_substring(text, ",", ".") if decimal == "," else text
    # plain values: cast where they are (the others null, read as NaN)
    values = pc.cast(valid_where(plain, simple), pa.float64()).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(~simple & ~empty)
    if len(rows):
        slow = _normalise_slow(s.iloc[rows], decimal)
        ok = ~np.asarray(slow.str.startswith("?"), dtype=bool)
        if ok.any():
            got = _arrow_text(slow).filter(pa.array(ok))
            values[rows[ok]] = pc.cast(got, pa.float64()).to_numpy(zero_copy_only=False)
    return pd.Series(pd.arrays.ArrowExtensionArray(pa.array(values, mask=empty)), index=s.index, copy=False)


def valid_where(text: "pa.Array", mask) -> "pa.Array":
    """Return ``text`` with null where ``mask`` (numpy or Arrow booleans, no nulls) is False.

    The text's buffers are shared with the result (the mask becomes its validity bitmap), so
    no value is copied; an array that is a slice, or has nulls, is masked by ``if_else``.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(mask, np.ndarray):
        mask = pa.array(mask, type=pa.bool_())
    if text.offset == 0 and text.null_count == 0 and mask.offset == 0 and mask.null_count == 0 and (
            pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        return pa.Array.from_buffers(text.type, len(text), [mask.buffers()[1], *text.buffers()[1:]])
    return pc.if_else(mask, text, pa.scalar(None, text.type))


def _arrow_text(s: pd.Series) -> "pa.Array":
    import pyarrow as pa

    text = pa.array(s.array, from_pandas=True) if not hasattr(s.array, "__arrow_array__") else (
        s.array.__arrow_array__())
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks() if text.num_chunks != 1 else text.chunk(0)
    return text


def cast_numbers(values) -> "pa.Array | None":
    """Return text (a Series or an Arrow array) as float64 when every non-empty value is a number
    Arrow reads (empty: null), else None.

    Arrow reads exactly the plain decimal numbers (``12``, ``-1.5``, ``.5``, ``1e3``) plus the
    words ``nan``/``inf``, which validation rejects as unparsable whatever path they take; so
    a column that casts whole needs no per-value pattern check.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    text = values
    if isinstance(values, pd.Series):
        if not hasattr(values.array, "__arrow_array__"):
            return None
        text = values.array.__arrow_array__()
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks() if text.num_chunks != 1 else text.chunk(0)
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        return None
    try:
        return pc.cast(valid_where(text, pc.not_equal(text, "")), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _plain(s: pd.Series, pattern: str) -> np.ndarray:
    """Return True where text ``s`` is digits with at most one ``.`` or else matches ``pattern``.

    The common case is found in Arrow without a regular expression; only the rest (signs,
    exponents, symbols, junk) is matched against ``pattern``.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pa.array(s.array, from_pandas=True) if not hasattr(s.array, "__arrow_array__") else (
        s.array.__arrow_array__())
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    ok = np.asarray(pc.fill_null(pc.ascii_is_decimal(pc.replace_substring(text, ".", "", max_replacements=1)),
                                 False).to_numpy(zero_copy_only=False), dtype=bool)
    rest = np.flatnonzero(~ok & np.asarray(pc.fill_null(pc.not_equal(text, ""), False)
                                          .to_numpy(zero_copy_only=False), dtype=bool))
    if len(rest):
        ok[rest] = np.asarray(pc.fill_null(pc.match_substring_regex(text.take(pa.array(rest)), pattern), False)
                              .to_numpy(zero_copy_only=False), dtype=bool)
    return ok


def _normalise_slow(s: pd.Series, decimal: str) -> pd.Series:
    t = s.str.replace(r"[\s\u00a0\u202f]", "", regex=True)
    t = t.str.replace(rf"^([+-]?){_CUR}", r"\1", regex=True).str.replace(rf"{_CUR}$", "", regex=True)
    if decimal == ",":
        ok = t.str.fullmatch(r"[+-]?(?:\d{1,3}(?:[.']\d{3})+|\d+)(?:,\d+)?")
        plain = t.str.replace(r"[.']", "", regex=True).str.replace(",", ".", regex=False)
    else:
        ok = t.str.fullmatch(r"[+-]?(?:\d{1,3}(?:[,']\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+")
        plain = t.str.replace(r"[,']", "", regex=True)
    ok = ok.fillna(False).astype(bool) | s.eq("")
    return plain.where(ok, "?" + s)  # "?": never a number, whatever the text looked like


def currency_of(s: pd.Series, symbols: dict[str, str]) -> pd.Series:
    """Return the currency code written with each amount ("" when none): ``"€12,50"`` -> EUR."""
    t = s.str.replace(r"[\s\u00a0\u202f]", "", regex=True)
    token = t.str.extract(rf"^[+-]?({_CUR})", expand=False)
    token = token.fillna(t.str.extract(rf"({_CUR})$", expand=False))
    table = {**SYMBOLS, **symbols}
    code = token.map(table)
    return code.where(code.notna(), token).fillna("").astype(str)


def email_key(email: pd.Series) -> pd.Series:
    """Return ``em_`` + 16 hex digits of the normalised email's SipHash ("" for no email)."""
    norm = email.str.strip().str.lower()
    hashed = pd.util.hash_array(norm.to_numpy(dtype=object), hash_key=EMAIL_HASH_KEY, categorize=True)
    hexed = pd.Series(np.char.mod("%016x", hashed.astype(np.uint64)), index=email.index)
    return ("em_" + hexed).where(norm.ne(""), "")


def apply(mapping: Mapping, name: str, header: list[str], raw: pd.DataFrame,
          identity: str = "email", decimal: str | None = None, *, numbers: bool = False) -> pd.DataFrame:
    """Return canonical text columns (``""`` for empty) for the raw text rows of ``raw``.

    ``raw`` has one column per header position (``f0..``); a field whose column is absent from
    the file is left out (required ones were checked by :func:`check_header`).  ``numbers``:
    amount and count columns come as numbers (:func:`parse_numbers`) instead of normalised text.
    """
    index = _header_index(header)
    out: dict[str, pd.Series] = {}
    text_dtype = pd.Series(["a"]).dtype
    for target, f in mapping.fields.items():
        if f.value is not None:
            s = pd.Series(f.value, index=raw.index, dtype=text_dtype)
        elif f.symbol_of is not None:
            pos = index.get(f.symbol_of.lower())
            if pos is None:
                continue
            s = currency_of(readers.as_text(raw.iloc[:, pos]), mapping.symbols)
        else:
            pos = next((index[c.lower()] for c in f.sources if c.lower() in index), None)
            if pos is None:
                continue
            s = raw.iloc[:, pos]
            if isinstance(s.dtype, pd.ArrowDtype):  # a typed Parquet column (number, date)
                if f.map or f.default is not None or target not in NUMERIC_TARGETS + ("order_date",):
                    s = readers.as_text(s)
                else:
                    out[target] = s  # validated without text
                    continue
        if f.map:
            mapped = s.str.lower().map(f.map)
            s = mapped.where(mapped.notna(), s).astype(str)
        if f.default is not None:
            s = s.mask(s.eq(""), f.default)
        if target in NUMERIC_TARGETS:
            s = (parse_numbers if numbers else normalise_numbers)(s, decimal or mapping.decimal)
        out[target] = s
    if "channel" not in out and mapping.channel:
        out["channel"] = pd.Series(mapping.channel, index=raw.index, dtype=str)
    if "customer_id" not in out:
        out["customer_id"] = _derive_customer(out, mapping, identity, raw.index)
    out.pop("buyer_id", None)
    return pd.DataFrame(out, index=raw.index)


def _derive_customer(out: dict[str, pd.Series], mapping: Mapping, rule: str,
                     index: pd.Index) -> pd.Series:
    empty = pd.Series("", index=index, dtype=str)
    email = out.get("email", empty)
    by_email = email_key(email) if "email" in out else empty
    buyer = out.get("buyer_id", empty)
    channel = out.get("channel", pd.Series(mapping.channel or mapping.name, index=index, dtype=str))
    by_buyer = (channel.str.lower() + ":" + buyer).where(buyer.ne(""), "")
    if rule == "buyer":
        return by_buyer.where(by_buyer.ne(""), by_email)
    return by_email.where(by_email.ne(""), by_buyer)


def _header_index(header: list[str]) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, h in enumerate(header):
        index.setdefault(h.strip().lower(), i)
    return index


def check_header(mapping: Mapping, name: str, header: list[str]) -> None:
    """Raise InputError when the file lacks a column the mapping needs, or has it twice."""
    lower = [h.strip().lower() for h in header]
    have = set(lower)

    def present(f: Field) -> bool:
        if f.value is not None:
            return True
        if f.symbol_of is not None:
            return f.symbol_of.lower() in have
        return any(c.lower() in have for c in f.sources)

    missing = [t for t in ("order_id", "order_date", "amount") if not present(mapping.fields[t])]
    who = [t for t in ("customer_id", "email", "buyer_id") if t in mapping.fields]
    if not any(present(mapping.fields[t]) for t in who):
        missing.append(who[0])
    if missing:
        cols = [mapping.fields[t].sources[0] if mapping.fields[t].sources else t for t in missing]
        plural = "s" if len(cols) > 1 else ""
        raise InputError(f"{name}: missing required column{plural} "
                         f"{', '.join(repr(c) for c in cols)} (preset {mapping.name})")
    for col in mapping.columns():
        if lower.count(col.lower()) > 1:
            raise InputError(f"{name}: duplicate column '{col.lower()}'")
