"""One customer's score, explained: key features, contributions by cause family, reasons, action.

The attribution is the model's own additive decomposition of its raw score (log-odds of churn
before calibration): XGBoost TreeSHAP values (``pred_contribs``) or, for the logistic model,
coefficient x standardised value.  Per feature contributions are summed by cause family
(``features.family_of``); the model's ``bias`` (base value: the score of an average customer)
belongs to no family, so ``base + sum of families == raw score`` exactly (tested for every
customer).  The calibrated probability is a monotone map of the raw score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import features as _features
from .errors import InputError
from .model import ChurnModel
from .schema import FAMILIES

#: How many features are shown, largest absolute contribution first.
KEY_FEATURES = 8


@dataclass
class Explanation:
    customer_id: str
    as_of: str
    churn_probability: float
    risk_tier: str
    raw_score: float
    base_value: float
    families: dict[str, float]
    top_cause: str
    reasons: str
    key_features: list[dict]
    scores: dict
    action: dict

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def lines(self) -> list[str]:
        """Return the explanation as plain text lines (what ``churnctl explain`` prints)."""
        s = self.scores
        out = [
            f"customer {self.customer_id} as of {self.as_of}",
            f"churn probability {self.churn_probability:.3f} ({self.risk_tier} risk); "
            f"segment {s.get('rfm_segment')}, value tier {s.get('value_tier')}, {s.get('lifecycle_stage')}",
            f"last order {s.get('days_since_last_order')} days ago; {s.get('frequency')} orders, "
            f"{s.get('monetary_total')} spent; predicted value 12m {_num(s.get('predicted_value_12m'))}, "
            f"value at risk {_num(s.get('value_at_risk'))}; expected days to next order "
            f"{_num(s.get('expected_days_to_next_order'))}",
            f"raw score (log-odds) {self.raw_score:+.3f} = base {self.base_value:+.3f} "
            + " ".join(f"{f} {v:+.3f}" for f, v in self.families.items()),
            f"top cause: {self.top_cause}",
            f"reasons: {self.reasons or '(none: nothing adds risk)'}",
        ]
        a = self.action
        if a.get("campaign") in (None, "no_action"):
            out.append(f"rule: {a.get('rule') or '(none)'} -> no action")
        else:
            offer = a.get("offer_type")
            if a.get("offer_value") is not None and not pd.isna(a.get("offer_value")):
                offer = f"{offer} {a.get('offer_value'):g}"
            out.append(f"rule: {a.get('rule')} -> campaign {a.get('campaign')} via {a.get('channel')}, "
                       f"offer {offer}, template {a.get('template')}")
        out.append("key features (value, contribution to the raw score, family):")
        width = max((len(k["feature"]) for k in self.key_features), default=0)
        for k in self.key_features:
            out.append(f"  {k['feature']:<{width}}  {_num(k['value']):>10}  {k['contribution']:+.3f}  {k['family']}")
        return out


def _num(value) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    v = float(value)
    return f"{v:.0f}" if v == round(v) and abs(v) < 1e12 else f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"


def family_totals(contributions: pd.DataFrame) -> pd.DataFrame:
    """Return per customer the summed contribution of each family plus ``base`` (the bias), unrounded."""
    out = pd.DataFrame(index=contributions.index)
    out["base"] = contributions["bias"].to_numpy(dtype=np.float64)
    for family in FAMILIES:
        cols = [c for c in contributions.columns if c != "bias" and _features.family_of(c) == family]
        out[family] = contributions[cols].sum(axis=1).to_numpy(dtype=np.float64) if cols else 0.0
    return out


def explain(customer_id: str, features: pd.DataFrame, scores: pd.DataFrame, actions: pd.DataFrame,
            model: ChurnModel, as_of: str) -> Explanation:
    """Return the explanation of one customer from the frames of a scoring run.

    Raises
    ------
    InputError
        The customer is not among the scored customers (no completed order on or before as_of).
    """
    if customer_id not in scores.index:
        raise InputError(f"customer '{customer_id}' has no completed order on or before {as_of}: "
                         "nothing to explain (ids are matched exactly, case included)")
    row = features.loc[[customer_id]]
    contrib = model.contributions(row)
    totals = family_totals(contrib).iloc[0]
    raw = float(model.raw_margin(row)[0])
    per_feature = contrib.drop(columns="bias").iloc[0]
    top = per_feature.abs().sort_values(ascending=False, kind="stable").index[:KEY_FEATURES]
    key = [{"feature": f, "value": _value(row[f].iloc[0]), "contribution": float(per_feature[f]),
            "family": _features.family_of(f)} for f in top]
    s = scores.loc[customer_id]
    a = actions.loc[customer_id] if customer_id in actions.index else pd.Series(dtype=object)
    return Explanation(
        customer_id=customer_id,
        as_of=as_of,
        churn_probability=float(s["churn_probability"]),
        risk_tier=str(s["risk_tier"]),
        raw_score=raw,
        base_value=float(totals["base"]),
        families={f: float(totals[f]) for f in FAMILIES},
        top_cause=str(s["top_cause"]),
        reasons=str(s["reasons"]),
        key_features=key,
        scores={k: _value(v) for k, v in s.items() if not k.startswith("cause_")},
        action={k: _value(v) for k, v in a.items()},
    )


def _value(v):
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


__all__ = ["Explanation", "explain", "family_totals"]
