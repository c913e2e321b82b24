"""Retention rules: a YAML file of "when these score columns match, do this" -> one action per customer.

A rules file is data, never code: it is read with a safe YAML loader (duplicate keys are an
error), checked completely by :func:`load` before any output is written, and applied by
:func:`apply` as one boolean mask per rule over the whole scores frame.

Rules file
----------
.. code-block:: yaml

    version: 1
    rules:
      - name: price_coupon                 # unique, any text
        description: optional note, ignored
        when:                              # all conditions must hold (AND)
          risk_tier: {in: [high]}
          top_cause: {equals: price}
          churn_probability: {min: 0.6, max: 1.0}   # bounds are inclusive
          country: {not_in: [JP]}
        action:
          campaign: price_coupon           # names the file campaigns/<campaign>.csv
          channel: email                   # email | ads_audience | account_manager | survey
          offer: {type: amount_off, value: 15, min_spend: 100}
          template: coupon_15_off_100

* Rules are tried **in file order; the first rule whose conditions all hold wins**. A customer
  matching no rule gets campaign ``no_action``.
* ``when`` maps a scores column to ``{operator: operand}``; several operators on one column
  all must hold (``{min: 30, max: 59}``). An omitted or empty ``when`` matches everyone.
* Operators: ``equals`` / ``not_equals`` (one value), ``in`` / ``not_in`` (a non-empty list),
  ``min`` / ``max`` (a number; inclusive), ``is_null`` (``true``/``false``).
* Missing values: a missing cell never satisfies ``equals``, ``in``, ``min`` or ``max``;
  ``not_equals`` and ``not_in`` are their exact opposites, so they **do** match a missing
  cell; ``is_null: true`` matches only missing cells.
* Columns: any column of the scores file (``schema.SCORE_COLUMNS``, ``customer_id`` included)
  plus value columns the caller declares. Known columns are checked: ``risk_tier``,
  ``value_tier``, ``lifecycle_stage``, ``rfm_segment`` and ``top_cause`` accept only their
  categories; ``country`` takes ISO-2 upper-case codes; text columns need text (quote
  ``'NO'`` - YAML reads a bare ``NO`` as false); ``min``/``max`` only on numeric columns;
  ``churn_probability`` bounds lie in 0..1.
* ``action`` keys: ``campaign`` (lower-case letters, digits, ``_``, ``-``), ``channel``,
  ``offer``, ``template``, all required; ``campaign: no_action`` alone marks customers who
  should get nothing (no other key allowed). All rules sharing a campaign use one channel.
* ``offer``: ``{type, value, min_spend}``; ``percent_off`` needs ``value`` in (0, 100];
  ``amount_off`` needs ``value`` > 0 (base currency); ``loyalty_points`` needs ``value`` > 0
  points; ``free_shipping`` and ``none`` take no value. ``min_spend`` (>= 0, base currency) is
  allowed with ``percent_off``, ``amount_off`` and ``free_shipping``. ``ads_audience`` rules
  take ``offer: {type: none}`` (an audience file carries no offer codes).

Any problem raises :class:`~churnctl.errors.ConfigError` (exit code 2) with one line such as
``rules.yaml: rule 'price_coupon': unknown column 'risk_teir' (did you mean 'risk_tier'?)``.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from . import schema
from .errors import ConfigError

NO_ACTION = "no_action"
CHANNELS = ("email", "ads_audience", "account_manager", "survey")
OFFER_TYPES = ("percent_off", "amount_off", "free_shipping", "loyalty_points", "none")
OPERATORS = ("equals", "not_equals", "in", "not_in", "min", "max", "is_null")
#: Export profiles (churnctl/profiles.py) and the channels each one suits.
PROFILE_CHANNELS: dict[str, tuple[str, ...]] = {
    "generic": CHANNELS,
    "mailchimp": ("email", "survey"),
    "klaviyo": ("email", "survey"),
    "meta_audience": ("ads_audience",),
    "google_customer_match": ("ads_audience",),
}
PROFILES = tuple(PROFILE_CHANNELS)
#: Columns of the actions frame returned by :func:`apply`, in order.
ACTION_COLUMNS = ("rule", "campaign", "channel", "offer_type", "offer_value", "offer_min_spend",
                  "template")
#: ``source`` of the rule set built into the package.
DEFAULT_SOURCE = "churnctl/defaults/rules.yaml"

#: Score columns whose values must be one of a known set.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "risk_tier": schema.RISK_TIERS,
    "value_tier": schema.VALUE_TIERS,
    "lifecycle_stage": schema.LIFECYCLE_STAGES,
    "rfm_segment": schema.RFM_SEGMENTS,
    "top_cause": schema.FAMILIES,
}
TEXT_COLUMNS = ("customer_id", "country", "channel", "reasons", *CATEGORIES)
NUMERIC_COLUMNS = ("churn_probability", "days_since_last_order", "frequency", "monetary_total",
                   "aov", *schema.CAUSE_COLUMNS)
PROBABILITY_COLUMNS = ("churn_probability",)

_TOP_KEYS = ("version", "rules")
_RULE_KEYS = ("name", "description", "when", "action")
_ACTION_KEYS = ("campaign", "channel", "offer", "template")
_SETTING_KEYS = ("profile", "cap", "budget", "templates", "holdout_share")
_CAP_KEYS = ("max", "days", "group")
_BUDGET_KEYS = ("max_recipients", "max_offer_cost")
_LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})?$")
_OFFER_KEYS = ("type", "value", "min_spend")
_NEEDS_VALUE = ("percent_off", "amount_off", "loyalty_points")
_TAKES_MIN_SPEND = ("percent_off", "amount_off", "free_shipping")
_CAMPAIGN_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
_TEXT = "str" if int(pd.__version__.split(".")[0]) >= 3 else object


@dataclass(frozen=True)
class Condition:
    """One test on one column: ``column`` ``op`` ``value`` (a tuple for ``in``/``not_in``)."""

    column: str
    op: str
    value: Any


@dataclass(frozen=True)
class Offer:
    """What the customer is offered; ``value`` and ``min_spend`` in base currency (or % / points)."""

    type: str
    value: float | None = None
    min_spend: float | None = None


@dataclass(frozen=True)
class CampaignSettings:
    """Per-campaign contact settings from a rule's action (all optional).

    ``profile``: export profile; ``cap_max`` contacts per ``cap_days`` days in ``cap_group``
    (campaigns sharing a group share the cap; default the campaign itself);
    ``max_recipients`` / ``max_offer_cost``: budget per run; ``templates``: language -> template;
    ``holdout_share``: overrides ``contact.holdout_share``.
    """

    profile: str = "generic"
    cap_max: int | None = None
    cap_days: int | None = None
    cap_group: str | None = None
    max_recipients: int | None = None
    max_offer_cost: float | None = None
    templates: tuple[tuple[str, str], ...] = ()
    holdout_share: float | None = None


@dataclass(frozen=True)
class Rule:
    """A named condition set and its action; ``channel``/``template`` are None for no_action."""

    name: str
    conditions: tuple[Condition, ...]
    campaign: str
    channel: str | None
    offer: Offer
    template: str | None
    settings: CampaignSettings = CampaignSettings()


@dataclass(frozen=True)
class RuleSet:
    """Validated rules in evaluation order, where they came from, and the file's sha256."""

    rules: tuple[Rule, ...]
    source: str
    sha256: str = ""

    @property
    def campaigns(self) -> dict[str, str]:
        """Return campaign -> channel for every campaign the rules can assign (no_action excluded)."""
        return {r.campaign: r.channel for r in self.rules if r.campaign != NO_ACTION}

    @property
    def settings(self) -> dict[str, CampaignSettings]:
        """Return campaign -> :class:`CampaignSettings` (the rules of one campaign agree on them)."""
        out: dict[str, CampaignSettings] = {}
        for r in self.rules:
            if r.campaign != NO_ACTION and (r.campaign not in out or r.settings != CampaignSettings()):
                out[r.campaign] = r.settings
        return out


# --- loading ----------------------------------------------------------------------------
class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key repeated in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):  # noqa: D401 - PyYAML hook
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}'", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load(path: Path | str | None, *, columns: Iterable[str] = ()) -> RuleSet:
    """Return the validated :class:`RuleSet` read from ``path`` (None: the packaged default).

    Parameters
    ----------
    path : Path, str or None
        Rules YAML file. ``None`` loads ``churnctl/defaults/rules.yaml`` from the package.
    columns : iterable of str
        Columns the scores frame will carry beyond ``schema.SCORE_COLUMNS`` (e.g. value
        columns); conditions may refer to them.

    Returns
    -------
    RuleSet
        Rules in evaluation order; ``source`` names the file for messages and the manifest.

    Raises
    ------
    ConfigError
        One line naming the file, the rule and the problem (exit code 2).
    """
    if path is None:
        text = resources.files("churnctl").joinpath("defaults", "rules.yaml").read_text(encoding="utf-8")
        return parse(text, source=DEFAULT_SOURCE, columns=columns)
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: rules file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    return parse(text, source=str(path), columns=columns)


def parse(text: str, *, source: str, columns: Iterable[str] = ()) -> RuleSet:
    """Return the validated :class:`RuleSet` for rules YAML ``text``; ``source`` names it in errors."""
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: top level must be a mapping with keys 'version' and 'rules'")
    _check_keys(raw, _TOP_KEYS, source, "key")
    if "version" not in raw:
        raise ConfigError(f"{source}: missing key 'version' (use version: 1)")
    if raw["version"] != 1 or isinstance(raw["version"], bool):
        raise ConfigError(f"{source}: unsupported version {raw['version']!r} (use version: 1)")
    if "rules" not in raw:
        raise ConfigError(f"{source}: missing key 'rules'")
    items = raw["rules"] if raw["rules"] is not None else []
    if not isinstance(items, list):
        raise ConfigError(f"{source}: 'rules' must be a list of rules")
    allowed = tuple(dict.fromkeys([*schema.SCORE_COLUMNS, *map(str, columns)]))
    parsed: list[Rule] = []
    names: set[str] = set()
    channels: dict[str, tuple[str, str]] = {}
    settings: dict[str, tuple[CampaignSettings, str]] = {}
    for i, item in enumerate(items, start=1):
        rule = _parse_rule(item, i, source, allowed)
        where = f"{source}: rule '{rule.name}'"
        if rule.name in names:
            raise ConfigError(f"{where}: duplicate rule name '{rule.name}'")
        names.add(rule.name)
        if rule.campaign != NO_ACTION:
            first = channels.setdefault(rule.campaign, (rule.channel, rule.name))
            if first[0] != rule.channel:
                raise ConfigError(
                    f"{where}: campaign '{rule.campaign}' has channel '{rule.channel}' but rule "
                    f"'{first[1]}' gives it '{first[0]}' (one campaign, one channel)")
            if rule.settings != CampaignSettings():
                first_s = settings.setdefault(rule.campaign, (rule.settings, rule.name))
                if first_s[0] != rule.settings:
                    raise ConfigError(
                        f"{where}: campaign '{rule.campaign}' settings (profile, cap, budget, templates, "
                        f"holdout_share) differ from rule '{first_s[1]}' (give them identically or once)")
        parsed.append(rule)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return RuleSet(rules=tuple(parsed), source=source, sha256=digest)


def _unknown(what: str, got: Any, allowed: Iterable[str], *, on: str = "", list_all: bool = False) -> str:
    """Return "unknown <what> '<got>'[ on '<col>'] (did you mean ...? / allowed: ...)"."""
    allowed = [str(a) for a in allowed]
    close = difflib.get_close_matches(str(got), allowed, n=1)
    hints = [f"did you mean '{close[0]}'?"] if close else []
    if list_all or not close:
        hints.append(f"allowed: {', '.join(allowed)}")
    where = f" on '{on}'" if on else ""
    return f"unknown {what} '{got}'{where} ({' '.join(hints)})"


def _check_keys(raw: dict, allowed: tuple[str, ...], where: str, what: str) -> None:
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{where}: {_unknown(what, key, allowed)}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def _parse_rule(raw: Any, index: int, source: str, allowed: tuple[str, ...]) -> Rule:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: rule #{index}: must be a mapping with keys name, when, action")
    name = raw.get("name")
    if name is None:
        raise ConfigError(f"{source}: rule #{index}: missing key 'name'")
    if not isinstance(name, (str, int)) or isinstance(name, bool) or not str(name).strip():
        raise ConfigError(f"{source}: rule #{index}: 'name' must be text, got {name!r}")
    name = str(name)
    where = f"{source}: rule '{name}'"
    _check_keys(raw, _RULE_KEYS, where, "key")
    when = raw.get("when") or {}
    if not isinstance(when, dict):
        raise ConfigError(f"{where}: 'when' must be a mapping of column to {{operator: value}}")
    conditions: list[Condition] = []
    for column, spec in when.items():
        conditions.extend(_parse_conditions(str(column), spec, where, allowed))
    if "action" not in raw:
        raise ConfigError(f"{where}: missing key 'action'")
    return _parse_action(raw["action"], name, tuple(conditions), where)


def _parse_conditions(column: str, spec: Any, where: str, allowed: tuple[str, ...]) -> list[Condition]:
    if column not in allowed:
        close = difflib.get_close_matches(column, allowed, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else " (not a scores column)"
        raise ConfigError(f"{where}: unknown column '{column}'{hint}")
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: condition on '{column}' must be a mapping of operator to value, "
                          f"e.g. {{equals: {spec}}}")
    if not spec:
        raise ConfigError(f"{where}: condition on '{column}' is empty")
    out = []
    for op, value in spec.items():
        if op not in OPERATORS:
            raise ConfigError(f"{where}: {_unknown('operator', op, OPERATORS, on=column, list_all=True)}")
        out.append(Condition(column, op, _check_operand(column, op, value, where)))
    bounds = {c.op: c.value for c in out if c.op in ("min", "max")}
    if len(bounds) == 2 and bounds["min"] > bounds["max"]:
        raise ConfigError(f"{where}: '{column}' min {bounds['min']} is greater than max {bounds['max']}")
    return out


def _check_operand(column: str, op: str, value: Any, where: str) -> Any:
    if op == "is_null":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: 'is_null' on '{column}' needs true or false, got {value!r}")
        return value
    if op in ("min", "max"):
        if column in TEXT_COLUMNS:
            raise ConfigError(f"{where}: '{op}' needs a numeric column; '{column}' is text")
        if not _is_number(value):
            raise ConfigError(f"{where}: '{op}' on '{column}' needs a number, got {value!r}")
        if column in PROBABILITY_COLUMNS and not 0 <= value <= 1:
            raise ConfigError(
                f"{where}: '{column}' {op} {value} is outside 0..1 (probabilities are fractions, e.g. 0.6)")
        return value
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise ConfigError(
                f"{where}: '{op}' on '{column}' needs a non-empty list, e.g. {{{op}: [{value}]}}")
        for v in value:
            _check_value(column, op, v, where)
        return tuple(value)
    if isinstance(value, (list, dict)):
        raise ConfigError(f"{where}: '{op}' on '{column}' needs one value; use 'in' for a list")
    _check_value(column, op, value, where)
    return value


def _check_value(column: str, op: str, value: Any, where: str) -> None:
    if value is None:
        raise ConfigError(f"{where}: '{op}' on '{column}' has an empty value; use is_null for missing values")
    if not _is_scalar(value):
        raise ConfigError(f"{where}: '{op}' on '{column}' needs plain values, got {value!r}")
    if column in TEXT_COLUMNS and not isinstance(value, str):
        raise ConfigError(
            f"{where}: '{column}' value {value!r} is not text; quote it in YAML (e.g. '{_yaml_hint(value)}')")
    if column in CATEGORIES and value not in CATEGORIES[column]:
        raise ConfigError(f"{where}: {_unknown(f'{column} value', value, CATEGORIES[column], list_all=True)}")
    if column == "country" and not _COUNTRY_RE.match(value):
        raise ConfigError(f"{where}: country value '{value}' is not an ISO-2 upper-case code (e.g. 'DE')")
    if column in NUMERIC_COLUMNS and not _is_number(value):
        raise ConfigError(f"{where}: '{column}' value {value!r} is not a number")


def _yaml_hint(value: Any) -> str:
    return {True: "YES", False: "NO"}.get(value, str(value)) if isinstance(value, bool) else str(value)


def _parse_action(raw: Any, name: str, conditions: tuple[Condition, ...], where: str) -> Rule:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'action' must be a mapping with keys {', '.join(_ACTION_KEYS)}")
    _check_keys(raw, _ACTION_KEYS + _SETTING_KEYS, where, "action key")
    if "campaign" not in raw:
        raise ConfigError(f"{where}: missing action key 'campaign'")
    campaign = raw["campaign"]
    if not isinstance(campaign, str) or not _CAMPAIGN_RE.match(campaign):
        raise ConfigError(
            f"{where}: campaign {campaign!r} must be 1-64 lower-case letters, digits, '_' or '-' "
            "(it names the campaign file)")
    if campaign == NO_ACTION:
        extra = [k for k in raw if k != "campaign"]
        if extra:
            raise ConfigError(f"{where}: a no_action rule takes only 'campaign' (remove '{extra[0]}')")
        return Rule(name, conditions, NO_ACTION, None, Offer("none"), None)
    for key in _ACTION_KEYS:
        if key not in raw:
            raise ConfigError(f"{where}: missing action key '{key}'")
    channel = raw["channel"]
    if channel not in CHANNELS:
        raise ConfigError(f"{where}: {_unknown('channel', channel, CHANNELS, list_all=True)}")
    template = raw["template"]
    if not isinstance(template, str) or not template.strip():
        raise ConfigError(f"{where}: 'template' must be text, got {template!r}")
    offer = _parse_offer(raw["offer"], where)
    if channel == "ads_audience" and offer.type != "none":
        raise ConfigError(
            f"{where}: ads_audience rules take offer type none (an audience file carries no offer codes)")
    return Rule(name, conditions, campaign, channel, offer, template, _parse_settings(raw, channel, where))


def _whole(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _parse_settings(raw: dict, channel: str, where: str) -> CampaignSettings:
    """Return the campaign settings of an action (profile, cap, budget, templates, holdout_share)."""
    kw: dict[str, Any] = {}
    if "profile" in raw:
        profile = raw["profile"]
        if profile not in PROFILES:
            raise ConfigError(f"{where}: {_unknown('profile', profile, PROFILES, list_all=True)}")
        if channel not in PROFILE_CHANNELS[profile]:
            raise ConfigError(f"{where}: profile '{profile}' is for channel "
                              f"{' or '.join(PROFILE_CHANNELS[profile])}, not '{channel}'")
        kw["profile"] = profile
    if "cap" in raw:
        cap = raw["cap"]
        if not isinstance(cap, dict):
            raise ConfigError(f"{where}: 'cap' must be a mapping such as {{max: 1, days: 60}}")
        _check_keys(cap, _CAP_KEYS, where, "cap key")
        if not _whole(cap.get("max"), 1):
            raise ConfigError(f"{where}: cap 'max' must be a whole number of 1 or more, got {cap.get('max')!r}")
        if not _whole(cap.get("days"), 1):
            raise ConfigError(f"{where}: cap 'days' must be a whole number of 1 or more, got {cap.get('days')!r}")
        group = cap.get("group")
        if group is not None and (not isinstance(group, str) or not _CAMPAIGN_RE.match(group)):
            raise ConfigError(f"{where}: cap 'group' must be a name of lower-case letters, digits, '_' or '-'")
        kw.update(cap_max=cap["max"], cap_days=cap["days"], cap_group=group)
    if "budget" in raw:
        budget = raw["budget"]
        if not isinstance(budget, dict) or not budget:
            raise ConfigError(f"{where}: 'budget' must be a mapping such as {{max_recipients: 500, max_offer_cost: 2000}}")
        _check_keys(budget, _BUDGET_KEYS, where, "budget key")
        if "max_recipients" in budget:
            if not _whole(budget["max_recipients"], 0):
                raise ConfigError(f"{where}: budget max_recipients must be a whole number of 0 or more, "
                                  f"got {budget['max_recipients']!r}")
            kw["max_recipients"] = budget["max_recipients"]
        if "max_offer_cost" in budget:
            if not _is_number(budget["max_offer_cost"]) or budget["max_offer_cost"] < 0:
                raise ConfigError(f"{where}: budget max_offer_cost must be a number of 0 or more, "
                                  f"got {budget['max_offer_cost']!r}")
            kw["max_offer_cost"] = float(budget["max_offer_cost"])
    if "templates" in raw:
        templates = raw["templates"]
        if not isinstance(templates, dict) or not templates:
            raise ConfigError(f"{where}: 'templates' must be a mapping of language to template, e.g. {{de: name_de}}")
        for lang, tpl in templates.items():
            if not isinstance(lang, str) or not _LANGUAGE_RE.match(lang):
                raise ConfigError(f"{where}: templates language {lang!r} must be a lower-case code such as 'de'")
            if not isinstance(tpl, str) or not tpl.strip():
                raise ConfigError(f"{where}: templates '{lang}' must be text, got {tpl!r}")
        kw["templates"] = tuple(sorted(templates.items()))
    if "holdout_share" in raw:
        share = raw["holdout_share"]
        if not _is_number(share) or not 0 <= share < 1:
            raise ConfigError(f"{where}: holdout_share must be a number in [0, 1), got {share!r}")
        kw["holdout_share"] = float(share)
    return CampaignSettings(**kw)


def _parse_offer(raw: Any, where: str) -> Offer:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'offer' must be a mapping such as {{type: percent_off, value: 10}}")
    _check_keys(raw, _OFFER_KEYS, where, "offer key")
    kind = raw.get("type")
    if kind is None:
        raise ConfigError(f"{where}: missing offer key 'type'")
    if kind not in OFFER_TYPES:
        raise ConfigError(f"{where}: {_unknown('offer type', kind, OFFER_TYPES, list_all=True)}")
    value, min_spend = raw.get("value"), raw.get("min_spend")
    if kind in _NEEDS_VALUE:
        if value is None:
            raise ConfigError(f"{where}: offer {kind} needs a 'value'")
        if not _is_number(value) or value <= 0:
            raise ConfigError(f"{where}: offer {kind} value must be a number above 0, got {value!r}")
        if kind == "percent_off" and value > 100:
            raise ConfigError(f"{where}: offer percent_off value {value} is outside (0, 100]")
    elif value is not None:
        raise ConfigError(f"{where}: offer {kind} takes no 'value'")
    if min_spend is not None:
        if kind not in _TAKES_MIN_SPEND:
            raise ConfigError(f"{where}: offer {kind} takes no 'min_spend'")
        if not _is_number(min_spend) or min_spend < 0:
            raise ConfigError(f"{where}: offer min_spend must be a number of 0 or more, got {min_spend!r}")
    return Offer(kind, None if value is None else float(value),
                 None if min_spend is None else float(min_spend))


# --- applying ---------------------------------------------------------------------------
def _column(scores: pd.DataFrame, column: str) -> pd.Series | None:
    if column in scores.columns:
        return scores[column]
    if column == scores.index.name:
        return pd.Series(scores.index, index=scores.index)
    return None


def _condition_mask(s: pd.Series, cond: Condition) -> np.ndarray:
    op, value = cond.op, cond.value
    if op == "is_null":
        m = s.isna() if value else s.notna()
    elif op in ("min", "max"):
        num = s if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s) \
            else pd.to_numeric(s, errors="coerce")
        m = num.ge(value) if op == "min" else num.le(value)
    elif op in ("equals", "not_equals"):
        m = s.eq(value)
    else:
        m = s.isin(list(value))
    mask = m.to_numpy(dtype=bool, na_value=False)
    return ~mask if op in ("not_equals", "not_in") else mask


def apply(scores: pd.DataFrame, rules: RuleSet) -> pd.DataFrame:
    """Return one action per customer: a frame indexed like ``scores`` with ``ACTION_COLUMNS``.

    Every rule becomes one boolean mask over the whole frame (AND of its conditions); the first
    matching rule wins (``np.select``); customers matching none get campaign ``no_action``.

    Parameters
    ----------
    scores : DataFrame
        Scores frame indexed by ``customer_id``; must hold every column a condition names.
    rules : RuleSet
        From :func:`load`.

    Returns
    -------
    DataFrame
        ``rule`` (name of the winning rule; missing when none matched), ``campaign``,
        ``channel`` and ``template`` (missing for no_action), ``offer_type`` (``none`` for
        no_action), ``offer_value`` and ``offer_min_spend`` (float, NaN when not set).

    Raises
    ------
    ConfigError
        A rule names a column the scores frame does not have.
    """
    n = len(scores)
    masks = []
    for rule in rules.rules:
        mask = np.ones(n, dtype=bool)
        for cond in rule.conditions:
            s = _column(scores, cond.column)
            if s is None:
                raise ConfigError(
                    f"{rules.source}: rule '{rule.name}': column '{cond.column}' is not in the scores")
            mask &= _condition_mask(s, cond)
        masks.append(mask)
    default = len(rules.rules)
    choice = np.select(masks, np.arange(default), default=default) if masks else np.zeros(n, dtype=int)

    def pick(values: list, dtype: Any) -> pd.Series:
        return pd.Series(np.asarray(values, dtype=object)[choice], index=scores.index).astype(dtype)

    rs = rules.rules
    nan = float("nan")
    return pd.DataFrame({
        "rule": pick([r.name for r in rs] + [None], _TEXT),
        "campaign": pick([r.campaign for r in rs] + [NO_ACTION], _TEXT),
        "channel": pick([r.channel for r in rs] + [None], _TEXT),
        "offer_type": pick([r.offer.type for r in rs] + ["none"], _TEXT),
        "offer_value": pick([nan if r.offer.value is None else r.offer.value for r in rs] + [nan], "float64"),
        "offer_min_spend": pick(
            [nan if r.offer.min_spend is None else r.offer.min_spend for r in rs] + [nan], "float64"),
        "template": pick([r.template for r in rs] + [None], _TEXT),
    }, index=scores.index)
