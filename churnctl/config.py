"""Typed configuration with built-in defaults; a YAML file only overrides.

``load_config(None)`` returns the defaults, so every command works with no file.  A file is
read with ``yaml.safe_load``; unknown keys fail with a suggestion, wrong types name the key.
Relative paths in a file are resolved against the folder of that file, so a cron job can run
from any working directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

DEFAULT_FX_RATES = {
    # Units of base currency (USD) per one unit of the currency.
    "USD": 1.0,
    "EUR": 1.08,
    "GBP": 1.27,
    "CAD": 0.73,
    "AUD": 0.66,
    "JPY": 0.0067,
    "CHF": 1.13,
    "SEK": 0.095,
    "PLN": 0.25,
    "MXN": 0.058,
    "BRL": 0.20,
    "CNY": 0.14,
    "INR": 0.012,
}


@dataclass(frozen=True)
class Inputs:
    """Input files for ``churnctl run`` (command-line options override them)."""

    orders: tuple[str, ...] = ()
    events: str | None = None
    customers: str | None = None


@dataclass(frozen=True)
class IngestConfig:
    max_reject_fraction: float = 0.05
    fx_rates: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_FX_RATES))
    default_status: str = "completed"
    # Dated FX rates (latest on or before each order's date): a CSV of date,currency,rate ...
    fx_table: str | None = None
    # ... and/or inline: {EUR: {"2024-01-01": 1.09, ...}}.
    fx_history: dict[str, dict[str, float]] = field(default_factory=dict)
    # Orders preset name or mapping YAML for every orders input; None: detected per file.
    source: str | None = None
    mapping_dirs: tuple[str, ...] = ()
    # Customer key when no customer_id column is mapped: "email" first, or "buyer" id first.
    identity: str = "email"
    # Decimal mark of amounts, "." or ","; None: the preset's (canonical: ".").
    decimal: str | None = None
    block_kb: int = 16384  # text read per block (memory bound), in KiB
    chunk_rows: int = 250_000


@dataclass(frozen=True)
class FeatureConfig:
    recent_days: int = 90
    loyal_min_orders: int = 5
    # R score 5..1: recency_days <= 30 -> 5, <= 60 -> 4, <= 120 -> 3, <= 240 -> 2, else 1.
    recency_edges: tuple[int, ...] = (30, 60, 120, 240)
    # F score 1..5: frequency <= 1 -> 1, <= 2 -> 2, <= 3 -> 3, <= 5 -> 4, else 5.
    frequency_edges: tuple[int, ...] = (1, 2, 3, 5)


@dataclass(frozen=True)
class XGBoostParams:
    n_estimators: int = 300
    max_depth: int = 4
    learning_rate: float = 0.05
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    min_child_weight: float = 5.0
    reg_lambda: float = 1.0


@dataclass(frozen=True)
class ModelConfig:
    path: str = "models/churn_model.joblib"
    algo: str = "xgboost"
    snapshots: int = 8
    snapshot_step_days: int = 30
    max_age_days: int = 7
    min_class_count: int = 10
    calibration: str = "isotonic"
    btyd_features: bool = True
    # XGBoost fitting threads; 0: every core of the machine.
    threads: int = 0
    xgboost: XGBoostParams = field(default_factory=XGBoostParams)


@dataclass(frozen=True)
class ScoringConfig:
    risk_high: float = 0.6
    risk_medium: float = 0.3
    value_a_share: float = 0.80
    value_b_share: float = 0.95
    min_cause_contribution: float = 0.2
    # xgboost explanations: "exact" TreeSHAP, or "approx" (path attribution, ~10x faster).
    contributions: str = "exact"


@dataclass(frozen=True)
class ExportConfig:
    offer_code_prefix: str = "CC"
    # Unknown consent (no customers file, or no marketing_consent column) counts as no consent.
    require_consent: bool = True
    # Secret mixed into offer codes so they cannot be derived from a customer id; kept out of
    # the config hash and of run.json.
    offer_code_salt: str = ""
    default_language: str = "en"
    country_languages: dict[str, str] = field(
        default_factory=lambda: {
            "DE": "de", "AT": "de", "CH": "de", "FR": "fr", "BE": "fr", "ES": "es",
            "MX": "es", "IT": "it", "NL": "nl", "PL": "pl", "SE": "sv", "JP": "ja",
            "BR": "pt", "PT": "pt", "CN": "zh",
        }
    )


@dataclass(frozen=True)
class ContactConfig:
    """Contact policy and ledger of the export stage (see churnctl/policy.py, ledger.py)."""

    # SQLite file path (relative to the config file) or any SQLAlchemy URL (postgresql+psycopg://...).
    state: str = "state/churnctl.db"
    cooldown_days: int = 14
    holdout_share: float = 0.10
    # Holdout membership is stable within a period of this many days (hash of customer, campaign, period).
    holdout_period_days: int = 30
    # Text file: one email or customer id per line (# comments); never contacted.
    suppression_file: str | None = None
    # Local send window [start hour, end hour) on the day after the as-of date (send_delay_days).
    send_window: tuple[int, ...] = (9, 11)
    send_delay_days: int = 1
    default_timezone: str = "UTC"
    country_timezones: dict[str, str] = field(
        default_factory=lambda: {
            "US": "America/New_York", "CA": "America/Toronto", "MX": "America/Mexico_City",
            "BR": "America/Sao_Paulo", "GB": "Europe/London", "IE": "Europe/Dublin",
            "DE": "Europe/Berlin", "AT": "Europe/Vienna", "CH": "Europe/Zurich", "FR": "Europe/Paris",
            "BE": "Europe/Brussels", "NL": "Europe/Amsterdam", "ES": "Europe/Madrid",
            "PT": "Europe/Lisbon", "IT": "Europe/Rome", "SE": "Europe/Stockholm", "PL": "Europe/Warsaw",
            "AU": "Australia/Sydney", "JP": "Asia/Tokyo", "CN": "Asia/Shanghai", "IN": "Asia/Kolkata",
        }
    )
    # Offer cost estimates (base currency): free shipping per order, value of one loyalty point.
    free_shipping_cost: float = 8.0
    point_value: float = 0.01


@dataclass(frozen=True)
class Config:
    base_currency: str = "USD"
    horizon_days: int = 90
    seed: int = 42
    output_dir: str = "out"
    rules: str | None = None
    inputs: Inputs = field(default_factory=Inputs)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    contact: ContactConfig = field(default_factory=ContactConfig)

    def hash(self) -> str:
        """Return a short sha256 of the effective configuration (recorded in models and runs)."""
        tree = to_dict(self)
        tree["export"].pop("offer_code_salt", None)
        blob = json.dumps(tree, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)


def to_dict(obj: Any) -> Any:
    """Return a plain dict/list tree of a config dataclass."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


PATH_KEYS = {("ingest", "fx_table"), ("ingest", "mapping_dirs"),
             ("output_dir",), ("rules",), ("model", "path"), ("inputs", "orders"),
             ("inputs", "events"), ("inputs", "customers"), ("contact", "state"),
             ("contact", "suppression_file")}


def read_yaml_mapping(path: Path, kind: str) -> dict:
    """Return the top-level mapping of YAML file ``path`` (read with ``yaml.safe_load``).

    Raises ConfigError naming the file (and line) when it is missing, not UTF-8, not valid
    YAML, or not a mapping; an empty file is an empty mapping.
    """
    if not path.is_file():
        raise ConfigError(f"{path}: {kind} file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys")
    return raw


def load_config(path: Path | str | None) -> Config:
    """Return the configuration: built-in defaults overridden by the YAML file at ``path``."""
    if path is None:
        return Config()
    path = Path(path)
    raw = read_yaml_mapping(path, "config")
    raw = _resolve_paths(raw, path.parent)
    contact = raw.get("contact")
    if contact is None or (isinstance(contact, dict) and "state" not in contact):
        # The default ledger lives beside the config file, like every relative path in it.
        raw = {**raw, "contact": {**(contact or {}),
                                  "state": os.path.normpath(path.parent / ContactConfig.state)}}
    return from_mapping(Config, raw, where=str(path))


def _resolve_paths(raw: dict, base: Path) -> dict:
    def fix(value: Any) -> Any:
        if isinstance(value, str) and "://" not in value and not Path(value).is_absolute():
            return os.path.normpath(base / value)
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value

    out = dict(raw)
    for keys in PATH_KEYS:
        node = out
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                break
            node[k] = dict(node[k])
            node = node[k]
        else:
            if keys[-1] in node and node[keys[-1]] is not None:
                node[keys[-1]] = fix(node[keys[-1]])
    return out


def from_mapping(cls: type, raw: Any, *, where: str, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, checking keys and types.

    Raises :class:`ConfigError` naming ``where`` and the dotted key on any problem.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: '{prefix.rstrip('.') or 'top level'}' must be a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"{where}: unknown key '{prefix}{key}'{hint}")
        kwargs[key] = _coerce(hints[key], value, where=where, key=f"{prefix}{key}")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, *, where: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value if value is not None else {}, where=where, prefix=f"{key}.")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where=where, key=key)
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: '{key}' must be a list")
        return tuple(_coerce(args[0], v, where=where, key=key) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: '{key}' must be a mapping")
        return {
            _coerce(args[0], k, where=where, key=key): _coerce(args[1], v, where=where, key=f"{key}.{k}")
            for k, v in value.items()
        }
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: '{key}' must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: '{key}' must be a whole number, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: '{key}' must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: '{key}' must be text, got {value!r}")
        return str(value)
    return value
