"""Read a finished run folder for the report: scores, manifest, aggregates and neighbours.

Everything is read defensively: a file or column a run does not have leaves its part of the
report empty (the page then says what to run to get it).  Campaign files are read for their
offer columns only, so no email or name is ever loaded; ``rejects.csv`` for its accounting
columns only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ChurnctlError, InputError

#: scores.csv columns the report uses (``reasons`` is never read: it is long per-customer text).
SCORE_USECOLS = (
    "customer_id", "churn_probability", "risk_tier", "rfm_segment", "value_tier", "lifecycle_stage",
    "days_since_last_order", "frequency", "monetary_total", "aov", "country", "channel", "top_cause",
    "cause_price", "cause_logistics", "cause_service", "cause_product", "cause_engagement", "cause_activity",
    "p_alive", "expected_days_to_next_order", "predicted_value_12m", "value_at_risk",
)
#: Campaign-file columns the report reads (never email, first_name or codes).
CAMPAIGN_USECOLS = ("customer_id", "campaign", "channel", "offer_type", "offer_value", "offer_min_spend",
                    "holdout", "group", "estimated_cost", "offer_cost")
TEXT = {"customer_id": str, "risk_tier": str, "rfm_segment": str, "value_tier": str, "lifecycle_stage": str,
        "country": str, "channel": str, "top_cause": str}
DATED = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class RunData:
    """Everything the report shows, read from one run folder (aggregates and scores only)."""

    path: Path
    manifest: dict[str, Any]
    scores: pd.DataFrame
    aggregates: dict[str, pd.DataFrame] = field(default_factory=dict)
    rejects: pd.DataFrame | None = None
    training_metrics: dict[str, Any] | None = None
    offers: pd.DataFrame | None = None
    previous: dict[str, Any] | None = None
    previous_path: Path | None = None
    previous_value_at_risk: float | None = None
    evaluation: dict[str, Any] = field(default_factory=dict)
    measure: pd.DataFrame | None = None
    budgets: dict[str, dict[str, Any]] | None = None
    budget_note: str = ""


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_csv(path: Path, usecols: tuple[str, ...] | None = None, **kwargs: Any) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        if usecols is not None:
            header = pd.read_csv(path, nrows=0).columns
            cols = [c for c in header if c in usecols]
            if not cols:
                return None
            kwargs["usecols"] = cols
        return pd.read_csv(path, **kwargs)
    except (OSError, ValueError, pd.errors.ParserError):
        return None


def read_scores(run_dir: Path) -> pd.DataFrame:
    """Return the report's columns of ``scores.csv`` or ``scores.parquet`` (ids as text)."""
    path = run_dir / "scores.csv"
    parquet = run_dir / "scores.parquet"
    if not path.is_file() and parquet.is_file():
        path = parquet
        try:
            import pyarrow.parquet as pq

            names = pq.read_schema(parquet).names
            frame = pd.read_parquet(parquet, columns=[c for c in names if c in SCORE_USECOLS])
        except (OSError, ValueError, ImportError):
            frame = None
    else:
        frame = _read_csv(path, SCORE_USECOLS, dtype=TEXT, keep_default_na=False, na_values=[""])
    if frame is None:
        raise InputError(f"{path}: missing or unreadable scores file (is this a churnctl run folder?)")
    for col in ("churn_probability", "risk_tier"):
        if col not in frame.columns:
            raise InputError(f"{path}: missing required column '{col}'")
    return frame


def previous_run(run_dir: Path, as_of: str | None) -> Path | None:
    """Return the latest dated sibling folder (YYYY-MM-DD) before ``as_of`` that holds a run.json."""
    parent = run_dir.resolve().parent
    if not parent.is_dir():
        return None
    here = as_of or run_dir.name
    earlier = sorted(
        (p for p in parent.iterdir()
         if p.is_dir() and DATED.match(p.name) and p.name < here and (p / "run.json").is_file()),
        key=lambda p: p.name,
    )
    return earlier[-1] if earlier else None


def _training_metrics(run_dir: Path, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """Return ``metrics.json`` of the run's model (model + recency baseline), if still there."""
    candidates = [run_dir / "metrics.json"]
    model_path = (manifest.get("model") or {}).get("path")
    if model_path:
        mp = Path(model_path)
        candidates += [mp.parent / "metrics.json"] if mp.is_absolute() else [
            run_dir / mp.parent / "metrics.json", Path.cwd() / mp.parent / "metrics.json"]
    for c in candidates:
        data = _read_json(c)
        if data and isinstance(data.get("model"), dict):
            return data
    return None


def _offers(run_dir: Path, manifest: dict[str, Any]) -> pd.DataFrame | None:
    """Return the offer columns of every campaign file, one row per recipient (no contact data)."""
    paths = [run_dir / o["path"] for o in manifest.get("outputs", [])
             if isinstance(o, dict) and str(o.get("path", "")).startswith("campaigns/")]
    if not paths:
        paths = sorted((run_dir / "campaigns").glob("*.csv"))
    frames = []
    for p in paths:
        f = _read_csv(p, CAMPAIGN_USECOLS, dtype=str, keep_default_na=False, na_values=[""])
        if f is None:
            continue
        if "campaign" not in f.columns:
            f["campaign"] = p.stem
        frames.append(f)
    return pd.concat(frames, ignore_index=True) if frames else None


def find_evaluation(run_dir: Path) -> Path | None:
    """Return the folder of a ``churnctl evaluate`` result for this run, if there is one.

    Looked for in ``<run>/evaluation/``, ``<run>/`` and ``<run>/../evaluation/`` (a folder
    holding ``evaluation.json``, ``reliability.csv`` or ``curves.csv``).
    """
    for folder in (run_dir / "evaluation", run_dir, run_dir.parent / "evaluation"):
        if any((folder / f).is_file() for f in ("evaluation.json", "reliability.csv", "curves.csv")):
            return folder
    return None


def read_evaluation(folder: Path | None) -> dict[str, Any]:
    """Return ``{"path", "summary", "reliability", "curves"}`` of an evaluate folder (empty dict if none).

    ``summary`` is ``evaluation.json`` (``as_of``, ``cutoffs``, ``overall``: model -> metrics);
    ``reliability`` the rows of ``reliability.csv`` (cutoff, model, decile, mean_predicted,
    observed_rate, n); ``curves`` the rows of ``curves.csv`` (cutoff, model, curve, x, y), left
    out when the folder predates it.
    """
    if folder is None:
        return {}
    found: dict[str, Any] = {"path": folder}
    summary = _read_json(folder / "evaluation.json")
    if summary is not None:
        found["summary"] = summary
    rel = _read_csv(folder / "reliability.csv", dtype={"cutoff": str, "model": str})
    if rel is None and summary is not None and isinstance(summary.get("reliability"), list):
        rel = pd.DataFrame(summary["reliability"])
    if rel is not None and len(rel):
        found["reliability"] = rel
    cur = _read_csv(folder / "curves.csv", dtype={"cutoff": str, "model": str, "curve": str})
    if cur is not None and len(cur) and {"model", "curve", "x", "y"} <= set(cur.columns):
        found["curves"] = cur
    return found


BUDGET_KEYS = ("max_recipients", "max_offer_cost")


def _budgets(run_dir: Path, manifest: dict[str, Any]) -> tuple[dict[str, dict[str, Any]] | None, str]:
    """Return campaign -> budget keys, and a note on where they come from.

    From ``run.json`` (``budgets`` or ``counts.budgets``) when the run recorded them, else from
    the rules file named in ``rules.source`` (read with :func:`churnctl.rules.load`); a campaign
    without a budget maps to ``{}``.  None when neither is available (the note says why).
    """
    recorded = manifest.get("budgets") or (manifest.get("counts") or {}).get("budgets")
    if isinstance(recorded, dict) and recorded:
        return {str(k): (v if isinstance(v, dict) else {"max_offer_cost": v}) for k, v in recorded.items()}, ""
    from .. import rules as _rules

    info = manifest.get("rules") if isinstance(manifest.get("rules"), dict) else {}
    source = info.get("source")
    if not source:
        return None, "the run does not name its rules file (run.json rules.source): budgets not shown"
    if source == _rules.DEFAULT_SOURCE:
        path = None
    else:
        path = Path(source)
        if not path.is_absolute() and not path.is_file():
            path = run_dir / path
    shown = str(source).replace("\\", "/").rsplit("/", 1)[-1]  # the file name: no machine path on the page
    header = _read_csv(run_dir / "scores.csv", nrows=0)
    try:
        ruleset = _rules.load(path, columns=() if header is None else header.columns)
    except ChurnctlError:
        return None, f"the rules file {shown} could not be read: budgets not shown"
    budgets = {name: {k: getattr(s, k) for k in BUDGET_KEYS if getattr(s, k) is not None}
               for name, s in ruleset.settings.items()}
    note = f"budgets per run from the rules file {shown}"
    if info.get("sha256") and ruleset.sha256 and info["sha256"] != ruleset.sha256:
        note += " (changed since this run: today's budgets, not necessarily the run's)"
    return budgets, note


def _measure(run_dir: Path) -> pd.DataFrame | None:
    """Return the ``churnctl measure`` table (``<output_dir>/measure.csv`` by default), pooled rows.

    Looked for in the run folder, then beside it (the run's ``<output_dir>``).  When the table
    has a ``run_id`` column, the rows pooled over runs (``all``) are kept, else this run's.
    """
    for p in (run_dir / "measure.csv", run_dir.parent / "measure.csv"):
        frame = _read_csv(p, dtype={"run_id": str, "campaign": str})
        if frame is None or not len(frame) or not any("uplift" in c.lower() for c in frame.columns):
            continue
        if "run_id" in frame.columns:
            pooled = frame[frame["run_id"].astype(str) == "all"]
            frame = pooled if len(pooled) else frame[frame["run_id"].astype(str) == run_dir.name]
        return frame.reset_index(drop=True) if len(frame) else None
    return None


def load_run(run_dir: Path, *, evaluation: Path | None = None) -> RunData:
    """Return the report's view of a finished run folder.

    ``evaluation`` is the folder ``churnctl evaluate --out`` wrote (default: see
    :func:`find_evaluation`).

    Raises
    ------
    InputError
        The folder, its ``run.json`` or its ``scores.csv`` is missing or unreadable.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run folder (pass the folder `churnctl score --out` or `run` wrote)")
    manifest = _read_json(run_dir / "run.json")
    if manifest is None:
        raise InputError(f"{run_dir / 'run.json'}: missing or unreadable run manifest (did the run finish?)")
    scores = read_scores(run_dir)
    aggregates = {}
    agg_dir = run_dir / "aggregates"
    for name in ("cohorts", "monthly", "segments", "features", "inputs"):
        frame = _read_csv(agg_dir / f"{name}.csv", dtype={"cohort_month": str, "month": str},
                          keep_default_na=False, na_values=[""])
        if frame is not None:
            aggregates[name] = frame
    budgets, budget_note = _budgets(run_dir, manifest)
    rejects = _read_csv(run_dir / "rejects.csv", ("file", "column", "reason"), dtype=str, keep_default_na=False)
    prev_path = previous_run(run_dir, manifest.get("as_of"))
    previous = _read_json(prev_path / "run.json") if prev_path else None
    prev_var = None
    if prev_path is not None:
        prev_scores = _read_csv(prev_path / "scores.csv", ("value_at_risk",))
        if prev_scores is None and (prev_path / "scores.parquet").is_file():
            try:
                prev_scores = pd.read_parquet(prev_path / "scores.parquet", columns=["value_at_risk"])
            except (OSError, ValueError, KeyError, ImportError):
                prev_scores = None
        if prev_scores is not None and "value_at_risk" in prev_scores.columns:
            prev_var = float(pd.to_numeric(prev_scores["value_at_risk"], errors="coerce").sum())
    return RunData(
        path=run_dir,
        manifest=manifest,
        scores=scores,
        aggregates=aggregates,
        rejects=rejects,
        training_metrics=_training_metrics(run_dir, manifest),
        offers=_offers(run_dir, manifest),
        previous=previous,
        previous_path=prev_path,
        previous_value_at_risk=prev_var,
        evaluation=read_evaluation(Path(evaluation) if evaluation is not None else find_evaluation(run_dir)),
        measure=_measure(run_dir),
        budgets=budgets,
        budget_note=budget_note,
    )
