"""Library API: composes the stages; the only module that decides which files are written.

A notebook, a test or the CLI calls these functions; they return values and never print.
Progress goes to the ``churnctl`` logger (counts and seconds, never an email or a name).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from . import __version__, export, features, ingest, memory, progress, rules, sample
from .config import Config
from .errors import InputError, ModelError
from .schema import as_of_timestamp, day_end


def _lazy(name: str):
    """Return the module ``churnctl.<name>``, executed on first attribute access.

    The model (scikit-learn, XGBoost, SciPy), the ledger (SQLAlchemy) and the report modules
    take about a second to import; commands that do not use them should not pay for it.
    """
    import importlib.util
    import sys

    full = f"{__package__}.{name}"
    if full in sys.modules:
        return sys.modules[full]
    spec = importlib.util.find_spec(full)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[full] = module
    setattr(sys.modules[__package__], name, module)  # as a real import does
    spec.loader.exec_module(module)
    return module


ledger = _lazy("ledger")
measure_stage = _lazy("measure")
model = _lazy("model")
policy = _lazy("policy")
report = _lazy("report")
scoring = _lazy("scoring")

log = logging.getLogger("churnctl")

PathLike = str | os.PathLike


@dataclass
class Timer:
    """Collect seconds per stage and log one line per stage.

    Each stage is also a :func:`progress.task` (a bar on a terminal, a start line under cron);
    inside it ``progress.update``/``progress.advance`` report how far it is.
    """

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str, *, total: float | None = None, detail: str = "",
              unit: str = "") -> Iterator[dict[str, Any]]:
        info: dict[str, Any] = {}
        start = time.perf_counter()
        log.debug("%s: started", name)
        with progress.task(name, total=total, detail=detail, unit=unit):
            yield info
        took = time.perf_counter() - start
        self.seconds[name] = round(took, 3)
        detail = ", ".join(f"{k}={v}" for k, v in info.items())
        log.info("%-8s %s (%.2fs)", name, detail, took)


@dataclass
class Inputs:
    """Loaded inputs: canonical frames plus the ingest accounting."""

    orders: pd.DataFrame
    events: pd.DataFrame | None
    customers: pd.DataFrame | None
    rejects: pd.DataFrame
    stats: list[ingest.FileStats]
    files: list[dict[str, Any]]
    #: the orders' customer codes from the ingest (``ingest.Loaded.customer_codes``), or None
    customer_codes: tuple[Any, Any] | None = None

    def __post_init__(self) -> None:
        # the codes belong to this very frame: a caller that replaces ``orders`` gets new codes
        self._codes_of = weakref.ref(self.orders) if self.customer_codes is not None else None

    def order_customer_codes(self) -> tuple[Any, Any]:
        """Return ``export.customer_codes(self.orders)``: the ingest's codes while ``orders``
        is still the ingested frame, else coded now (one hash pass over the ids)."""
        if self._codes_of is not None and self._codes_of() is self.orders and len(
                self.customer_codes[0]) == len(self.orders):
            return self.customer_codes
        return export.customer_codes(self.orders)


@dataclass
class TrainSummary:
    model_path: Path
    model_version: str
    metrics: dict[str, Any]
    meta: dict[str, Any]


@dataclass
class RunSummary:
    out: Path
    as_of: date
    customers: int
    risk_counts: dict[str, int]
    campaigns: dict[str, int]
    rejected: int
    model_version: str
    trained: bool
    manifest: dict[str, Any]


# --- inputs -----------------------------------------------------------------------------
def _as_list(paths: PathLike | Sequence[PathLike] | None) -> list[Path | str]:
    """Return the inputs as paths; SQLAlchemy URLs (``sqlite:///x.db#orders``) stay text."""
    from .readers import is_url

    if paths is None:
        return []
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    return [p if is_url(p) else Path(p) for p in paths]


def _sha256(path: Path, stop: threading.Event | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            if stop is not None and stop.is_set():
                return ""
            digest.update(block)
    return digest.hexdigest()


def _is_file(path: Any) -> bool:
    try:
        return Path(path).is_file()
    except (OSError, TypeError, ValueError):
        return False


def _bytes(paths: Sequence[Path | str]) -> int | None:
    """Return the total size of ``paths``, or None when one is not a plain file (glob, URL)."""
    try:
        return sum(Path(p).stat().st_size for p in paths)
    except (OSError, TypeError):
        return None


def _display(path: Path | str) -> str:
    """Return a file's name for progress lines; a database URL shows only its ``#table`` part
    (never a host or a password)."""
    if isinstance(path, Path):
        return path.name
    text = str(path)
    return text.rsplit("#", 1)[-1] if "#" in text else "database"


def load_inputs(
    orders: PathLike | Sequence[PathLike],
    *,
    events: PathLike | None = None,
    customers: PathLike | None = None,
    config: Config,
    timer: Timer | None = None,
    engine: Any = None,
) -> Inputs:
    """Return the validated, de-duplicated, currency-normalised inputs with their accounting.

    ``engine``: a ``distributed.DaskEngine`` ingests on its cluster (same result), else pandas.

    Raises InputError for file-level problems.  The reject fraction is *not* checked here:
    callers write ``rejects.csv`` first so the user can see why, then call
    :func:`ingest.check_reject_fraction`.
    """
    timer = timer or Timer()
    order_paths = _as_list(orders)
    if not order_paths:
        raise InputError("no orders file given: pass --orders FILE or set inputs.orders in the config")
    groups = [order_paths] + [_as_list(p) for p in (events, customers) if p is not None]
    sizes = [_bytes(g) for g in groups]
    names = ", ".join(_display(p) for g in groups for p in g)
    known = None if any(b is None for b in sizes) else sum(sizes)
    loader = ingest if engine is None else engine
    # The manifest's sha256 of each input file is computed on a thread while the files are
    # ingested (hashlib and file reads release the GIL), not after: ~1.5 s at 10M rows.
    hasher, stop = ThreadPoolExecutor(max_workers=1, thread_name_prefix="churnctl-sha256"), threading.Event()
    digests = {str(Path(p)): hasher.submit(_sha256, Path(p), stop) for g in groups for p in g if _is_file(p)}
    hasher.shutdown(wait=False)
    try:
        inputs = _load_inputs(groups, sizes, names, known, loader, config, timer, events, customers)
    except BaseException:
        stop.set()  # a failed ingest does not wait for the hashing of the rest of a large file
        raise
    for entry in inputs.files:
        if "sha256" in entry:
            key = str(Path(entry["file"]))
            entry["sha256"] = digests[key].result() if key in digests else _sha256(Path(entry["file"]))
    return inputs


def _load_inputs(groups: list, sizes: list, names: str, known: int | None, loader: Any, config: Config,
                 timer: Timer, events: Any, customers: Any) -> Inputs:
    order_paths = groups[0]
    with timer.stage("ingest", total=known, detail=names, unit="bytes") as info:
        # Bytes done so far as absolute values: ingest may report within a file (progress.update).
        loaded = loader.load_orders(order_paths, config.ingest, base_currency=config.base_currency)
        progress.update(sum(b or 0 for b in sizes[:1]))
        frames = [loaded]
        ev = cu = None
        if events is not None:
            ev = loader.load_events(_as_list(events), config.ingest)
            frames.append(ev)
            progress.update(sum(b or 0 for b in sizes[:2]))
        if customers is not None:
            cu = loader.load_customers(_as_list(customers), config.ingest)
            frames.append(cu)
            progress.update(sum(b or 0 for b in sizes))
        stats = [s for f in frames for s in f.stats]
        rejects = pd.concat([f.rejects for f in frames if len(f.rejects)], ignore_index=True) if any(
            len(f.rejects) for f in frames
        ) else loaded.rejects
        info["orders"] = len(loaded.frame)
        info["events"] = 0 if ev is None else len(ev.frame)
        info["customers"] = 0 if cu is None else len(cu.frame)
        info["rejected"] = sum(s.rejected for s in stats)
        info["collapsed"] = sum(s.collapsed for s in stats)
    files = []
    for s in stats:
        p = Path(s.file)
        entry = s.as_dict()
        if p.is_file():
            entry["sha256"] = ""  # filled in by load_inputs from the hashing thread
            entry["bytes"] = p.stat().st_size
        files.append(entry)
    return Inputs(
        orders=loaded.frame,
        events=None if ev is None else ev.frame,
        customers=None if cu is None else cu.frame,
        rejects=rejects,
        stats=stats,
        files=files,
        customer_codes=loaded.customer_codes,
    )


@dataclass
class ValidateSummary:
    """Result of ``churnctl validate``: the inputs, a printable table and the limit error."""

    inputs: Inputs
    table: str
    error: str | None


def validate(orders: PathLike | Sequence[PathLike], *, config: Config, source: str | None = None,
             events: PathLike | None = None, customers: PathLike | None = None,
             out: PathLike | None = None) -> ValidateSummary:
    """Run ingest alone; return a per-file table and whether the reject limit is exceeded.

    Writes ``out/rejects.csv`` when ``out`` is given.  ``error`` is the one-line message of
    :func:`ingest.check_reject_fraction` (exit code 2 in the CLI), None when within limits.
    """
    if source is not None:
        config = config.replace(ingest=dataclasses.replace(config.ingest, source=source))
    inputs = load_inputs(orders, events=events, customers=customers, config=config)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        export.write_rejects(inputs.rejects, out)
    error = None
    try:
        _check_rejects(inputs, out, config)
    except InputError as exc:
        error = str(exc)
    return ValidateSummary(inputs=inputs, table=ingest.stats_table(inputs.stats), error=error)


def _check_rejects(inputs: Inputs, out: Path | None, config: Config) -> None:
    try:
        ingest.check_reject_fraction(inputs.stats, config.ingest.max_reject_fraction)
    except InputError as exc:
        if out is not None:
            raise InputError(f"{exc}; see {out / 'rejects.csv'}") from None
        raise


# --- sample -----------------------------------------------------------------------------
def make_sample(
    out: PathLike, *, customers: int, seed: int, end_date: date | None = None, years: float = 3.0,
    purchase_rate: float = 1.0,
) -> dict[str, int]:
    """Write a synthetic history to ``out``; return rows written per file."""
    kwargs: dict[str, Any] = {"seed": seed, "years": years, "purchase_rate": purchase_rate}
    if end_date is not None:
        kwargs["end_date"] = end_date
    data = sample.generate(customers, **kwargs)
    return sample.write(data, Path(out))


# --- features ---------------------------------------------------------------------------
def build_features(
    orders: PathLike | Sequence[PathLike],
    *,
    as_of: date,
    events: PathLike | None = None,
    out: PathLike | None = None,
    config: Config,
    engine: str | None = None,
    scheduler: str | None = None,
) -> pd.DataFrame:
    """Return the features frame at ``as_of``; write ``out`` when given (Parquet if it ends
    in ``.parquet``, else CSV).  ``engine="dask"`` computes them on a Dask cluster."""
    timer = Timer()
    eng = _engine(engine, scheduler)
    inputs = load_inputs(orders, events=events, config=config, timer=timer, engine=eng)
    _check_rejects(inputs, None, config)
    ts = as_of_timestamp(as_of)
    with timer.stage("features") as info:
        if eng is not None:
            frame = eng.features(inputs.orders, ts, events=inputs.events, config=config.features)
        else:
            frame = features.build(inputs.orders, ts, events=inputs.events, config=config.features)
        info["customers"] = len(frame)
        info["features"] = len(features.model_columns(frame))
    if out is not None:
        write_table(frame.reset_index(), Path(out))
    return frame


# --- train ------------------------------------------------------------------------------
def train(
    orders: PathLike | Sequence[PathLike],
    *,
    as_of: date,
    events: PathLike | None = None,
    model_path: PathLike | None = None,
    algo: str | None = None,
    config: Config,
    inputs: Inputs | None = None,
    timer: Timer | None = None,
    engine: str | None = None,
    scheduler: str | None = None,
    tune: bool = False,
) -> TrainSummary:
    """Train on snapshots before ``as_of``; write the model artifact and ``metrics.json``.

    ``engine="dask"`` builds the snapshots and fits XGBoost on a Dask cluster."""
    timer = timer or Timer()
    eng = _engine(engine, scheduler)
    if inputs is None:
        inputs = load_inputs(orders, events=events, config=config, timer=timer, engine=eng)
        _check_rejects(inputs, None, config)
    path = Path(model_path or config.model.path)
    ts = as_of_timestamp(as_of)
    with timer.stage("train") as info:
        if eng is not None:
            fitted = eng.train(inputs.orders, ts, config, events=inputs.events, algo=algo)
        else:
            fitted = model.train(inputs.orders, ts, config, events=inputs.events, algo=algo, tune=tune)
        m = fitted.meta.get("metrics", {})
        info["algo"] = fitted.algo
        info["rows"] = m.get("train_rows")
        info["roc_auc"] = round(m.get("model", {}).get("roc_auc", float("nan")), 3)
        info["baseline_roc_auc"] = round(m.get("recency_baseline", {}).get("roc_auc", float("nan")), 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(fitted, path)
    loaded = model.load(path)
    export.write_json(loaded.meta.get("metrics", {}), path.parent / "metrics.json")
    return TrainSummary(
        model_path=path,
        model_version=loaded.meta["model_version"],
        metrics=loaded.meta.get("metrics", {}),
        meta=loaded.meta,
    )


# --- score ------------------------------------------------------------------------------
def score(orders: PathLike | Sequence[PathLike], *, state: str | None = None, **kwargs: Any) -> RunSummary:
    """Score customers at ``as_of``; write scores, rejects, campaign files and ``run.json``.

    ``state``: the contact ledger (``contact.state``: SQLite path or SQLAlchemy URL). With it,
    cool-downs and caps see earlier runs and the run is recorded, under the ledger lock; without
    it the contact policy sees no history and nothing is recorded. Other keywords: see
    :func:`_score`.
    """
    if state is None:
        return _score(orders, **kwargs)
    led = ledger.open_ledger(state)
    with ledger.locked(led):
        recover(led, out_dirs=[Path(kwargs["out"])] if kwargs.get("out") is not None else [])
        return _score(orders, ledger_handle=led, **kwargs)


def _score(
    orders: PathLike | Sequence[PathLike],
    *,
    as_of: date,
    out: PathLike,
    events: PathLike | None = None,
    customers: PathLike | None = None,
    model_path: PathLike | None = None,
    rules_path: PathLike | None = None,
    config: Config,
    command: str = "score",
    inputs: Inputs | None = None,
    timer: Timer | None = None,
    trained: bool = False,
    ledger_handle: ledger.Ledger | None = None,
    engine: str | None = None,
    scheduler: str | None = None,
    scores_format: str = "csv",
) -> RunSummary:
    """Score customers at ``as_of``; write scores, rejects, campaign CSVs and ``run.json``.

    ``engine="dask"`` computes features and scores on a Dask cluster (same results);
    ``scores_format="parquet"`` writes ``scores.parquet`` instead of ``scores.csv``.

    ``inputs`` (when given) are consumed: once the features, the contact details and the
    report's order tables are computed, their ``orders``, ``events`` and ``customers`` frames are
    set to None so the memory is free for scoring; the rejects and accounting stay."""
    started = datetime.now(timezone.utc)
    timer = timer or Timer()
    out = Path(out)
    ts = as_of_timestamp(as_of)
    rules_file = rules_path if rules_path is not None else config.rules
    # Everything that can be rejected up front is checked before any output is written.
    ruleset = rules.load(Path(rules_file) if rules_file else None, columns=scoring_columns())
    path = Path(model_path or config.model.path)
    fitted = model.load(path)
    scores_name = _scores_name(scores_format)
    eng = _engine(engine, scheduler)
    if inputs is None:
        inputs = load_inputs(orders, events=events, customers=customers, config=config, timer=timer,
                             engine=eng)
    _check_rejects_or_write(inputs, out, config)

    with timer.stage("contacts") as info:
        # What the export needs from the order history (contact details, the report's monthly
        # counts) is taken first, so the orders frame can be released before scoring, and these
        # passes over the orders do not add to the features' peak memory.
        orders_accepted = len(inputs.orders)
        codes = inputs.order_customer_codes()  # coded once (by the ingest) for all three
        contacts = export.build_contacts(inputs.orders, inputs.customers, config.export, events=inputs.events,
                                         codes=codes)
        order_tables = report.aggregates.from_orders(inputs.orders, ts, events=inputs.events, codes=codes)
        info["contacts"] = len(contacts)
    with timer.stage("features") as info:
        after = int((inputs.orders["order_date"] >= day_end(ts)).sum())
        if eng is not None:
            feats = eng.scoring_features(inputs.orders, ts, config, events=inputs.events)
        else:
            # The history holds every order column the features read: the orders frame (ids,
            # emails, names as text: most of its memory) is released before the features are
            # computed, which is where the run's memory peaks.
            history = features.History(inputs.orders, events=inputs.events, config=config.features,
                                       codes=codes).detach(once=True)
            codes = None
            inputs.orders = inputs.events = inputs.customers = None  # see the docstring: inputs are consumed
            memory.release(collect=True)
            feats = model.history_features(history, ts, config)
            del history
        del codes
        info["customers"] = len(feats)
        info["orders_after_as_of"] = after
    if feats.empty:
        raise InputError(f"no customer has a completed order on or before {ts.date()}: nothing to score")
    fitted.check_features(feats)
    # Before scoring, hand back what the features left behind (the pandas engine's history and
    # groups; the orders themselves with the Dask engine) to the system, with Arrow's pool.
    inputs.orders = inputs.events = inputs.customers = None  # see the docstring: inputs are consumed
    memory.release(collect=True)
    delivery = feats["mean_delivery_days"].copy() if "mean_delivery_days" in feats.columns else None
    with timer.stage("score", total=len(feats)) as info:
        scores = eng.score(feats, fitted, config) if eng is not None else scoring.score(feats, fitted, config)
        progress.update(len(feats))
        risk_counts = {t: int(n) for t, n in scores["risk_tier"].value_counts().items()}
        info.update(risk_counts)
    del feats
    with timer.stage("rules") as info:
        actions = rules.apply(scores, ruleset)
        per_campaign = {str(k): int(v) for k, v in actions["campaign"].value_counts().sort_index().items()}
        info["rules"] = len(ruleset.rules)
        info["actioned"] = int((actions["campaign"] != "no_action").sum())
    with timer.stage("export", total=4) as info:
        # Everything goes to a staging folder first; see _commit_and_publish.
        out.mkdir(parents=True, exist_ok=True)
        if ledger_handle is None:
            recover(None, out_dirs=[out])
        stage = export.new_staging(out)
        rows = write_table(scores, stage / scores_name, index=True)
        # The largest output is hashed for the manifest on a thread while the rest is planned
        # and written (hashlib and file reads release the GIL).
        hasher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="churnctl-sha256")
        digests = {scores_name: hasher.submit(_sha256, stage / scores_name)}
        progress.advance()
        export.write_rejects(inputs.rejects, stage)
        progress.advance()
        result = _plan_and_write(stage, scores, actions, contacts, ruleset, ts, config, ledger_handle)
        del contacts
        progress.advance()
        info["treated"] = sum(result.recipients.values())
        info["holdout"] = sum(result.holdout.values())
        info["scores"] = rows
        info["campaign_files"] = len(result.files)
        info["recipients"] = sum(f["rows"] for f in result.files)
        # Monthly and per-group counts for the report (no per-customer rows): see report/aggregates.py.
        tables = report.aggregates.finish(order_tables, scores, mean_delivery_days=delivery, model=fitted)
        aggregate_outputs = [{"path": f"{report.AGGREGATES_DIR}/{name}",
                              "rows": export.write_csv(frame, stage / report.AGGREGATES_DIR / name)}
                             for name, frame in tables.items()]
        progress.advance()

    outputs = [{"path": scores_name, "rows": rows}, {"path": "rejects.csv", "rows": len(inputs.rejects)}]
    for f in result.files:
        outputs.append({**f, "path": Path(f["path"]).relative_to(stage).as_posix()})
    outputs += aggregate_outputs
    for o in outputs:
        if o["path"] not in digests:
            digests[o["path"]] = hasher.submit(_sha256, stage / o["path"])
    for o in outputs:
        o["sha256"] = digests[o["path"]].result()
    hasher.shutdown()
    manifest = {
        "churnctl_version": __version__,
        "command": command,
        "as_of": str(ts.date()),
        "horizon_days": config.horizon_days,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config_hash": config.hash(),
        "rules": {"source": ruleset.source, "sha256": ruleset.sha256},
        "inputs": inputs.files,
        "counts": {
            "orders_accepted": orders_accepted,
            "orders_after_as_of": after,
            "rows_rejected": int(sum(s.rejected for s in inputs.stats)),
            "rows_collapsed": int(sum(s.collapsed for s in inputs.stats)),
            "customers_scored": len(scores),
            "risk_tiers": risk_counts,
            "actions": per_campaign,
            "recipients": result.recipients,
            "excluded": result.excluded,
            "excluded_by_campaign": result.excluded_by_campaign,
            "holdout": result.holdout,
            "offer_cost": result.offer_cost,
            # Budgets in force for this run (from the rules), so the report shows the run's own.
            "budgets": {
                name: {k: v for k, v in (("max_recipients", st.max_recipients),
                                         ("max_offer_cost", st.max_offer_cost)) if v is not None}
                for name, st in ruleset.settings.items()
            },
        },
        "contact": _contact_manifest(config, ledger_handle, result),
        "model": {
            "path": str(path),
            "version": fitted.meta.get("model_version"),
            "algo": fitted.algo,
            "trained_as_of": fitted.meta.get("as_of"),
            "trained_this_run": trained,
            "metrics": fitted.meta.get("metrics", {}).get("model"),
        },
        "timings_seconds": timer.seconds,
        "outputs": outputs,
    }
    export.write_manifest(stage, manifest)
    _commit_and_publish(stage, out, ts, manifest, result, ledger_handle, command=command,
                        started=started, customers=len(scores))
    return RunSummary(
        out=out,
        as_of=ts.date(),
        customers=len(scores),
        risk_counts=risk_counts,
        campaigns=result.recipients,
        rejected=int(sum(s.rejected for s in inputs.stats)),
        model_version=str(fitted.meta.get("model_version")),
        trained=trained,
        manifest=manifest,
    )


# --- nightly run ------------------------------------------------------------------------
def model_is_stale(path: Path, as_of: pd.Timestamp, config: Config) -> str | None:
    """Return why the model at ``path`` must be retrained for ``as_of``, or None if usable."""
    if not path.exists():
        return "no model yet"
    try:
        fitted = model.load(path)
    except ModelError as exc:
        return f"model unusable ({exc})"
    trained = as_of_timestamp(fitted.meta["as_of"])
    age = (as_of - trained).days
    if age < 0:
        return f"model trained as of {trained.date()}, after {as_of.date()}"
    if age > config.model.max_age_days:
        return f"model is {age} days old (model.max_age_days={config.model.max_age_days})"
    if int(fitted.meta.get("horizon_days", config.horizon_days)) != config.horizon_days:
        return "horizon_days changed"
    return None


def run(config: Config, **kwargs: Any) -> RunSummary:
    """The nightly job (see :func:`_run`), under the contact ledger's lock (``contact.state``).

    A second run while one holds the lock stops at once with :class:`ledger.LockError` (exit 2).
    """
    led = ledger.open_ledger(config.contact.state)
    with ledger.locked(led):
        root = Path(kwargs.get("out_root") or config.output_dir)
        recover(led, out_dirs=[d for d in root.glob("*") if d.is_dir()])
        return _run(config, ledger_handle=led, **kwargs)


def _run(config: Config, *, as_of: date | None = None, orders: Sequence[PathLike] | None = None,
         events: PathLike | None = None, customers: PathLike | None = None,
         out_root: PathLike | None = None, engine: str | None = None,
         scheduler: str | None = None, scores_format: str = "csv",
         ledger_handle: ledger.Ledger | None = None) -> RunSummary:
    """The nightly job: retrain when needed, then score, apply rules and export.

    Outputs go to ``<output_dir>/<as_of>/``.  ``as_of`` defaults to today (UTC).
    ``engine``, ``scheduler`` and ``scores_format`` are passed to :func:`train` and :func:`score`.
    """
    ts = as_of_timestamp(as_of or datetime.now(timezone.utc).date())
    order_paths = list(orders) if orders else list(config.inputs.orders)
    events = events if events is not None else config.inputs.events
    customers = customers if customers is not None else config.inputs.customers
    out = Path(out_root or config.output_dir) / str(ts.date())
    timer = Timer()
    path = Path(config.model.path)
    # Fail on a bad rules file before spending minutes on training.
    rules.load(Path(config.rules) if config.rules else None, columns=scoring_columns())
    inputs = load_inputs(order_paths, events=events, customers=customers, config=config, timer=timer,
                         engine=_engine(engine, scheduler))
    _check_rejects_or_write(inputs, out, config)
    reason = model_is_stale(path, ts, config)
    trained = False
    if reason:
        log.info("train    %s: training a new model", reason)
        train(order_paths, as_of=ts.date(), config=config, inputs=inputs, timer=timer, model_path=path,
              engine=engine, scheduler=scheduler)
        trained = True
    summary = _score(order_paths, ledger_handle=ledger_handle, as_of=ts.date(), out=out, config=config,
                     command="run", inputs=inputs,
                    timer=timer, trained=trained, model_path=path, engine=engine, scheduler=scheduler,
                    scores_format=scores_format)
    try:  # the night's outputs are written; a failed report must not hide them (warned, exit 0)
        with timer.stage("report") as info:
            info["bytes"] = write_report(out, config=config).stat().st_size
    except Exception as exc:  # noqa: BLE001
        log.warning("report   failed: %s; rerun `churnctl --debug report --run %s`",
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__, out)
    return summary


def write_report(run_dir: PathLike, *, config: Config, out: PathLike | None = None,
                 evaluation: PathLike | None = None) -> Path:
    """Render the report of a finished run folder to ``out`` (default ``<run_dir>/report.html``).

    One self-contained HTML page (inline SVG figures, aggregates only); returns its path.
    ``evaluation``: the folder ``churnctl evaluate`` wrote (default: looked for beside the run).
    Raises InputError when the folder is not a finished run (no run.json or scores file).
    """
    run_dir = Path(run_dir)
    target = Path(out) if out is not None else run_dir / report.REPORT_FILE
    if evaluation is not None and not Path(evaluation).is_dir():
        raise InputError(f"{evaluation}: no such evaluation folder (pass the folder `churnctl evaluate --out` wrote)")
    page = report.render(report.load_run(run_dir, evaluation=evaluation), config)
    export._atomic_write(target, lambda handle: handle.write(page))
    return target


# --- contact policy, ledger, atomic publication (issue 5) ------------------------------------
def _check_rejects_or_write(inputs: Inputs, out: Path, config: Config) -> None:
    """Stop (after writing ``out/rejects.csv`` so the user sees why) when a file has too many rejects.

    On success nothing is written here: rejects.csv is staged and published with the run.
    """
    try:
        ingest.check_reject_fraction(inputs.stats, config.ingest.max_reject_fraction)
    except InputError:
        out.mkdir(parents=True, exist_ok=True)
        export.write_rejects(inputs.rejects, out)
        _check_rejects(inputs, out, config)
        raise


def recover(led: ledger.Ledger | None, *, out_dirs: Sequence[Path] = ()) -> None:
    """Finish or discard interrupted runs: the state becomes the whole last committed run.

    Committed runs whose files were not all moved into place are published (roll-forward);
    staging folders with a commit marker likewise; every other ``.staging-*`` folder under
    ``out_dirs`` (and under the folders of unpublished runs) is deleted (roll-back).
    """
    dirs = {Path(d) for d in out_dirs}
    if led is not None:
        for r in ledger.unpublished(led):
            out = Path(r["out_dir"])
            dirs.add(out)
            if r["staging_dir"]:
                export.publish(Path(r["staging_dir"]), out)
            ledger.mark_published(led, r["run_id"])
            log.warning("recover  run %s: finished publishing %s after an interruption", r["run_id"], out)
    for d in dirs:
        for stage in sorted(d.glob(f"{export.STAGING_PREFIX}*")):
            if (stage / export.COMMIT_MARKER).is_file():
                export.publish(stage, d)
                log.warning("recover  finished publishing %s after an interruption", d)
    if export.discard_stagings(sorted(dirs)):
        log.warning("recover  discarded an interrupted run's unfinished files")


def _plan_and_write(stage: Path, scores: pd.DataFrame, actions: pd.DataFrame, contacts: pd.DataFrame,
                    ruleset: rules.RuleSet, ts: pd.Timestamp, config: Config,
                    led: ledger.Ledger | None) -> export.CampaignResult:
    """Candidates -> contact policy -> campaign files in ``stage``; return the result.

    ``contacts``: :func:`export.build_contacts` of the run's inputs.
    """
    frame, channels = export.candidates(scores, actions, contacts, config.export, campaigns=ruleset.campaigns)
    history = None
    if led is not None:
        settings = ruleset.settings
        longest = max([config.contact.cooldown_days]
                      + [s.cap_days for s in settings.values() if s.cap_days is not None])
        history = ledger.history(led, since=(ts - pd.Timedelta(days=longest)).date(), before=ts.date())
    planned = policy.plan(frame, history=history, settings=ruleset.settings, contact=config.contact, as_of=ts,
                          suppression=policy.load_suppression(config.contact.suppression_file))
    result = export.write_planned(stage, planned, channels, ts, config.export, settings=ruleset.settings,
                                  order_by_value="value_at_risk" in scores.columns)
    for warning in result.warnings:
        log.warning("export   %s", warning)
    return result


def _contact_manifest(config: Config, led: ledger.Ledger | None, result: export.CampaignResult) -> dict[str, Any]:
    c = config.contact
    return {
        "ledger": ledger.describe(led.state) if led is not None else None,
        "cooldown_days": c.cooldown_days,
        "holdout_share": c.holdout_share,
        "suppression_file": c.suppression_file,
        "warnings": result.warnings,
    }


def _commit_and_publish(stage: Path, out: Path, ts: pd.Timestamp, manifest: dict[str, Any],
                        result: export.CampaignResult, led: ledger.Ledger | None, *, command: str,
                        started: datetime, customers: int) -> None:
    """Commit the staged run: ledger transaction (or commit marker), then move the files into place.

    The ledger transaction is the commit point: before it, a crash leaves the previous run
    (the staging folder is discarded by :func:`recover`); after it, :func:`recover` finishes
    moving the files, so the new run appears whole.
    """
    export.fault_point("staged")
    if led is not None:
        ledger.commit_run(led, {
            "run_id": str(ts.date()), "as_of": ts.date(), "command": command,
            "started_at": started.replace(tzinfo=None, microsecond=0), "finished_at": ledger.now_utc(),
            "config_hash": manifest.get("config_hash"), "model_version": manifest["model"].get("version"),
            "customers_scored": customers, "treated": sum(result.recipients.values()),
            "holdout": sum(result.holdout.values()), "excluded": result.excluded,
            "out_dir": str(out.resolve()), "staging_dir": str(stage.resolve()),
        }, result.contacts)
    export.fault_point("committed")
    export.mark_committed(stage)
    export.publish(stage, out)
    export.fault_point("published")
    if led is not None:
        ledger.mark_published(led, str(ts.date()))


def measure(config: Config, *, orders: Sequence[PathLike] | None = None, state: str | None = None,
            campaign: str | None = None, window_days: int = 30, out: PathLike | None = None,
            as_of: date | None = None) -> tuple[pd.DataFrame, Path]:
    """Compare treated with holdout customers per campaign and run; write and return the table.

    Reads the ledger (``state`` or ``contact.state``) and the orders (``orders`` or
    ``inputs.orders``); ``out`` defaults to ``<output_dir>/measure.csv``. ``as_of`` (default:
    the latest order date) bounds the windows: a run whose window has not ended is marked
    ``complete = false``.
    """
    order_paths = list(orders) if orders else list(config.inputs.orders)
    led = ledger.open_ledger(state or config.contact.state)
    contacts = ledger.contacts(led, campaign=campaign)
    if campaign is not None and contacts.empty:
        raise InputError(f"measure: no contacts recorded for campaign '{campaign}' in {ledger.describe(led.state)}")
    inputs = load_inputs(order_paths, config=config)
    _check_rejects(inputs, None, config)
    table = measure_stage.compare(contacts, inputs.orders, window_days=window_days,
                                  as_of=as_of_timestamp(as_of) if as_of else None)
    path = Path(out) if out is not None else Path(config.output_dir) / "measure.csv"
    export.write_csv(table, path)
    return table, path


# --- engines and table formats (issue 7) ---------------------------------------------------
#: Formats of scores and features files.
TABLE_FORMATS = ("csv", "parquet")


def _engine(engine: str | None, scheduler: str | None):
    """Return None for the pandas engine, else a ``distributed.DaskEngine`` (imported lazily)."""
    if (engine or "pandas").strip().lower() == "pandas" and not scheduler:
        return None
    from . import distributed

    return distributed.engine(engine, scheduler)


def _scores_name(fmt: str) -> str:
    if fmt not in TABLE_FORMATS:
        raise InputError(f"unknown scores format '{fmt}' (choose one of: {', '.join(TABLE_FORMATS)})")
    return f"scores.{fmt}"


def write_table(frame: pd.DataFrame, path: Path, *, index: bool = False) -> int:
    """Write ``frame`` atomically as Parquet when ``path`` ends in ``.parquet``, else as CSV;
    return the row count.  ``index``: the index is the first column.  Parquet keeps the dtypes
    (ids stay text, exactly as read)."""
    path = Path(path)
    if path.suffix.lower() != ".parquet":
        return export.write_csv(frame, path, index=index)
    import tempfile

    if index:
        frame = frame.reset_index()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False, compression="zstd")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(frame)


def scoring_columns() -> list[str]:
    """Return the score columns rules may refer to."""
    from .schema import SCORE_COLUMNS

    return list(SCORE_COLUMNS)


# --- evaluate and explain (issue 4) -----------------------------------------------------
#: Files ``evaluate`` writes into its output folder.
EVALUATION_FILES = ("evaluation.csv", "evaluation.json", "reliability.csv", "curves.csv")


@dataclass
class EvaluateSummary:
    out: Path
    cutoffs: list[str]
    overall: dict[str, dict[str, Any]]
    table: pd.DataFrame
    notes: list[str]


def evaluate(
    orders: PathLike | Sequence[PathLike],
    *,
    as_of: date,
    events: PathLike | None = None,
    backtests: int = 3,
    out: PathLike = "evaluation",
    config: Config,
) -> EvaluateSummary:
    """Backtest the model against recency, BG/NBD and a logistic RFM baseline; write the tables.

    Writes ``out/evaluation.csv`` (metrics per cutoff, segment and model),
    ``out/evaluation.json`` (the same plus the headline figures), ``out/reliability.csv``
    (observed churn vs predicted probability per decile) and ``out/curves.csv`` (ROC,
    precision-recall, capture and lift points per cutoff and model).
    """
    from . import evaluate as _evaluate

    timer = Timer()
    inputs = load_inputs(orders, events=events, config=config, timer=timer)
    _check_rejects(inputs, None, config)
    ts = as_of_timestamp(as_of)
    with timer.stage("evaluate") as info:
        result = _evaluate.backtest(inputs.orders, ts, config, events=inputs.events, backtests=backtests)
        info["cutoffs"] = len(result.cutoffs)
        info["rows"] = len(result.predictions)
    for note in result.notes:
        log.info("evaluate %s", note)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    export.write_csv(result.table, out / "evaluation.csv")
    export.write_csv(result.reliability, out / "reliability.csv")
    export.write_csv(result.curves, out / "curves.csv")
    payload = {
        "as_of": str(ts.date()),
        "horizon_days": config.horizon_days,
        "cutoffs": [str(c.date()) for c in result.cutoffs],
        "models": list(_evaluate.MODELS),
        "files": list(EVALUATION_FILES),
        "overall": result.overall(),
        "notes": result.notes,
        "table": result.table.to_dict("records"),
        "reliability": result.reliability.to_dict("records"),
    }
    export.write_json(model._json_safe(payload), out / "evaluation.json")
    return EvaluateSummary(out, payload["cutoffs"], payload["overall"], result.table, result.notes)


def explain(
    customer_id: str,
    orders: PathLike | Sequence[PathLike],
    *,
    as_of: date,
    events: PathLike | None = None,
    customers: PathLike | None = None,
    model_path: PathLike | None = None,
    rules_path: PathLike | None = None,
    config: Config,
):
    """Return the :class:`churnctl.explain.Explanation` of one customer at ``as_of`` (writes nothing)."""
    from . import explain as _explain

    ts = as_of_timestamp(as_of)
    rules_file = rules_path if rules_path is not None else config.rules
    ruleset = rules.load(Path(rules_file) if rules_file else None, columns=scoring_columns())
    fitted = model.load(Path(model_path or config.model.path))
    inputs = load_inputs(orders, events=events, customers=customers, config=config)
    _check_rejects(inputs, None, config)
    feats = model.scoring_features(inputs.orders, ts, config, events=inputs.events)
    if feats.empty:
        raise InputError(f"no customer has a completed order on or before {ts.date()}: nothing to explain")
    scores = scoring.score(feats, fitted, config)
    actions = rules.apply(scores, ruleset)
    return _explain.explain(str(customer_id), feats, scores, actions, fitted, str(ts.date()))
