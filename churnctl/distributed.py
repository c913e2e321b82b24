"""The Dask engine: features, training and scoring on a Dask cluster with the pandas code.

There is no second implementation of the pipeline.  The canonical orders and events frames
are split into partitions that each hold *whole customers* (a stable hash of
``customer_id``), so every partition runs the very functions of the pandas engine:
``features.build``, ``model.build_training_set`` and ``scoring.score``.  Only the two values
that depend on the whole population are finished globally, from the small per-customer
frames gathered on the client:

* ``m_score`` (monetary quintile of the scored population), recomputed from every
  customer's ``monetary_total`` with the same formula as :mod:`churnctl.features`;
* ``value_tier`` (revenue-share tier), recomputed with :func:`scoring.value_tiers`.

So the Dask engine gives the same features and scores as the pandas engine for the same
model (tests check it to 1e-6).  Training fits ``xgboost.dask.DaskXGBClassifier`` on the
older snapshots across the workers; the held-out margins are gathered on the client, where
the calibrator and the metrics are computed exactly as :func:`model.fit` computes them.

Ingest runs on the workers (:func:`ingest_kind`): one task per input file and per byte
range of a large CSV file (cut only at newlines outside quotes), each running the pandas
engine's reader and validation, with reject line numbers shifted to the whole file's; the
rows are then shuffled into customer partitions and de-duplicated by the pandas engine's
rule (latest version of an order: later file, then later line), so the frame, the rejects
and the per-file counts equal the pandas engine's.  The partitions stay on the workers for
features, training and scoring; the client gathers the frames once (the API returns pandas
frames), one column at a time.  When the workers cannot see the input files (or an input is
a database), ingest runs on the client as before.

Without a scheduler address :func:`client` starts a ``LocalCluster`` (one worker process per
core, one thread each); with one it connects to an existing cluster (dask-kubernetes,
dask-jobqueue, ``dask scheduler``).  One client is kept per process and closed at exit
(:func:`shutdown` closes it earlier).
"""

from __future__ import annotations

import atexit
import copy
import dataclasses
import logging
import os
import tempfile
import time
from typing import Any

import numpy as np
import pandas as pd

from . import features as _features
from . import model as _model
from . import scoring as _scoring
from .config import Config, FeatureConfig
from .errors import ChurnctlError, ConfigError, InputError, TrainingError
from .schema import as_of_timestamp, day_end

log = logging.getLogger("churnctl")

ENGINES = ("pandas", "dask")
#: How long to wait for an existing scheduler to answer.
CONNECT_TIMEOUT = "20s"
#: Target customers per partition: big enough that pandas' vectorised code dominates.
CUSTOMERS_PER_PARTITION = 250_000

_CLIENT: Any = None
_CLUSTER: Any = None
_ADDRESS: str | None = None
_ENGINE: Any = None


class DaskUnavailable(ChurnctlError):
    """The dask extra is not installed, or the scheduler cannot be reached (exit code 2)."""

    exit_code = 2


def check_engine(engine: str | None) -> str:
    """Return the engine name (``pandas`` by default); raise ConfigError for an unknown one."""
    engine = (engine or "pandas").strip().lower()
    if engine not in ENGINES:
        raise ConfigError(f"engine: unknown engine '{engine}' (choose one of: {', '.join(ENGINES)})")
    return engine


# --- the cluster ------------------------------------------------------------------------------
def client(scheduler: str | None = None, *, n_workers: int | None = None, processes: bool = True) -> Any:
    """Return a ``distributed.Client``: to ``scheduler`` when given, else to a new LocalCluster.

    The client is cached per process (a second call with the same address returns it) and
    closed at exit.  ``n_workers`` defaults to the number of cores (LocalCluster only).
    """
    global _CLIENT, _CLUSTER, _ADDRESS
    key = scheduler or "local"
    if _CLIENT is not None and _ADDRESS == key:
        return _CLIENT
    shutdown()
    try:
        import dask  # noqa: F401
        from distributed import Client, LocalCluster
    except ImportError:
        raise DaskUnavailable(
            "--engine dask needs the dask extra: pip install 'churnctl[dask]'"
        ) from None
    if scheduler:
        try:
            _CLIENT = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise DaskUnavailable(f"cannot reach the Dask scheduler at {scheduler} ({exc})") from None
    else:
        workers = n_workers or os.cpu_count() or 1
        # One thread per worker process, and its compiled kernels (TreeSHAP, numba) and
        # OpenMP (XGBoost) use one thread too: the workers already fill every core.
        extra = {"env": {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}} if processes else {}
        _CLUSTER = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=processes,
            dashboard_address=None, silence_logs=logging.ERROR, **extra,
        )
        _CLIENT = Client(_CLUSTER)
    _ADDRESS = key
    log.debug("dask: %s", _CLIENT)
    return _CLIENT


def shutdown() -> None:
    """Close the cached client and the LocalCluster it started (no-op when none)."""
    global _CLIENT, _CLUSTER, _ADDRESS, _ENGINE
    if _CLIENT is not None:
        _CLIENT.close()
    if _CLUSTER is not None:
        _CLUSTER.close()
    _CLIENT = _CLUSTER = _ADDRESS = _ENGINE = None


atexit.register(shutdown)


def _workers(c: Any) -> int:
    return max(1, len(c.scheduler_info().get("workers", {})))


def n_partitions(customers: int, workers: int) -> int:
    """Return the partition count: at least one per worker, about CUSTOMERS_PER_PARTITION each."""
    return max(workers, -(-int(customers) // CUSTOMERS_PER_PARTITION))


# --- partitioning by customer ---------------------------------------------------------------
def text_hash(values: pd.Series) -> np.ndarray:
    """Return a 64-bit hash of each value's exact UTF-8 text (missing: as the empty text).

    Vectorised over Arrow's string buffers (no Python object per value): a polynomial hash of
    the bytes, mixed with the length and a splitmix64 finaliser.  Several times faster than
    ``pandas.util.hash_array`` on 1M distinct ids.  The same text gives the same hash in
    every frame, process and machine.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pa.array(values, type=pa.large_string(), from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = pc.fill_null(arr, "")
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset: arr.offset + len(arr) + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8) if arr.buffers()[2] is not None else np.zeros(0, np.uint8)
    start = offsets[:-1]
    lengths = offsets[1:] - start
    last = max(len(data) - 1, 0)
    h = np.zeros(len(arr), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(int(lengths.max(initial=0))):  # one pass per character position (ids are short)
            more = lengths > j
            byte = data[np.minimum(start + j, last)].astype(np.uint64)
            h = np.where(more, h * np.uint64(1099511628211) + byte, h)
        h = h ^ (lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return h ^ (h >> np.uint64(31))


def partition_codes(customer_id: pd.Series, n: int) -> np.ndarray:
    """Return each row's partition in ``[0, n)``: a stable hash of its id modulo ``n``.

    The same id goes to the same partition in every frame (orders, events) and on every
    machine (:func:`text_hash` of its exact text).
    """
    return (text_hash(customer_id) % np.uint64(n)).astype(np.int64)


def split_by_customer(frame: pd.DataFrame, n: int) -> list[pd.DataFrame]:
    """Return ``n`` frames holding whole customers; rows keep their relative order."""
    part = partition_codes(frame["customer_id"], n)
    order = np.argsort(part, kind="stable")
    bounds = np.cumsum(np.bincount(part, minlength=n))[:-1]
    return [frame.iloc[rows] for rows in np.split(order, bounds)]


class Partitioned:
    """Orders (and events) split by customer and scattered to the cluster as dask frames."""

    def __init__(self, c: Any, orders: pd.DataFrame, events: pd.DataFrame | None,
                 n: int | None = None) -> None:
        import dask.dataframe as dd

        self.client = c
        customers = orders["customer_id"].nunique()
        self.n = n or n_partitions(customers, _workers(c))
        order_parts = split_by_customer(orders, self.n)
        self.orders = dd.from_delayed(c.scatter(order_parts), meta=orders.iloc[:0], verify_meta=False)
        self.events = None
        if events is not None:
            event_parts = split_by_customer(events, self.n)
            self.events = dd.from_delayed(c.scatter(event_parts), meta=events.iloc[:0], verify_meta=False)
        self._sample_orders = order_parts[0]
        self._sample_events = None if events is None else event_parts[0]

    @classmethod
    def from_ingested(cls, c: Any, orders: Ingested, events: Ingested | None) -> Partitioned:
        """Return the partitions ingest left on the workers (nothing is sent again)."""
        import dask.dataframe as dd

        self = cls.__new__(cls)
        self.client = c
        self.n = orders.n
        frame = orders.loaded.frame
        self.orders = dd.from_delayed(orders.partitions, meta=frame.iloc[:0], verify_meta=False)
        self.events = None
        ids = pd.unique(frame["customer_id"].iloc[:100_000].dropna())[:2000]
        self._sample_orders = frame[frame["customer_id"].isin(ids).to_numpy()]
        self._sample_events = None
        if events is not None:
            ev = events.loaded.frame
            self.events = dd.from_delayed(events.partitions, meta=ev.iloc[:0], verify_meta=False)
            self._sample_events = ev[ev["customer_id"].isin(ids).to_numpy()]
        return self

    def sample(self, customers: int = 200) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """Return a few whole customers of the first partition (to infer output columns)."""
        ids = pd.unique(self._sample_orders["customer_id"].dropna())[:customers]
        orders = self._sample_orders[self._sample_orders["customer_id"].isin(ids)]
        events = None
        if self._sample_events is not None:
            events = self._sample_events[self._sample_events["customer_id"].isin(ids)]
        return orders, events

    def map(self, func: Any, meta: pd.DataFrame, *args: Any) -> Any:
        """Return a dask frame: ``func(orders_part, events_part, *args)`` for every partition."""
        import dask.dataframe as dd

        frames = [self.orders] if self.events is None else [self.orders, self.events]
        wrapped = _with_events if self.events is not None else _without_events
        return dd.map_partitions(wrapped, *frames, func, *args, meta=meta, align_dataframes=False,
                                 enforce_metadata=False)


def _with_events(orders: pd.DataFrame, events: pd.DataFrame, func: Any, *args: Any) -> pd.DataFrame:
    return func(orders, events, *args)


def _without_events(orders: pd.DataFrame, func: Any, *args: Any) -> pd.DataFrame:
    return func(orders, None, *args)


# --- features -------------------------------------------------------------------------------
def _features_part(orders: pd.DataFrame, events: pd.DataFrame | None, as_of: pd.Timestamp,
                   config: FeatureConfig) -> pd.DataFrame:
    return _features.build(orders, as_of, events=events, config=config)


def m_scores(monetary: pd.Series) -> np.ndarray:
    """Return the population ``m_score``: 1 + floor(5 x customers strictly lower / customers).

    The formula of ``features.build``; recomputed here over the whole population because a
    partition only sees its own customers.
    """
    lower = monetary.rank(method="min").to_numpy() - 1
    return (1 + np.floor(5 * lower / max(len(monetary), 1))).astype(np.int64)


def _finish_features(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.sort_index()
    if "m_score" in frame.columns and len(frame):
        frame["m_score"] = m_scores(frame["monetary_total"])
    return frame


def features_frame(parts: Partitioned, as_of: pd.Timestamp, config: FeatureConfig) -> Any:
    """Return the (lazy) dask features frame, one partition per customer partition."""
    orders, events = parts.sample()
    meta = _features.build(orders, as_of, events=events, config=config).iloc[:0]
    return parts.map(_features_part, meta, as_of, config)


def build_features(orders: pd.DataFrame, as_of: pd.Timestamp, *, events: pd.DataFrame | None = None,
                   config: FeatureConfig = FeatureConfig(), scheduler: str | None = None) -> pd.DataFrame:
    """Return the features frame computed on the cluster; equal to ``features.build``'s."""
    c = client(scheduler)
    parts = Partitioned(c, orders, events)
    return _finish_features(features_frame(parts, as_of_timestamp(as_of), config).compute())


# --- scoring ------------------------------------------------------------------------------------
def _own(fitted: _model.ChurnModel) -> _model.ChurnModel:
    """Return a copy with its own booster: ``ChurnModel._booster`` sets the thread count on
    every call, which is not safe while another worker thread predicts with the same object
    (threaded or in-process workers share the scattered model)."""
    own = copy.copy(fitted)
    own.estimator = copy.deepcopy(fitted.estimator)
    return own


def _score_part(frame: pd.DataFrame, fitted: _model.ChurnModel, config: Config) -> pd.DataFrame:
    return _scoring.score(frame, _own(fitted), config)


def _finish_scores(scores: pd.DataFrame, feats: pd.DataFrame, config: Config) -> pd.DataFrame:
    scores = scores.reindex(feats.index)
    sc = config.scoring
    monetary = feats["monetary_total"].astype(np.float64)
    scores["value_tier"] = _scoring.value_tiers(monetary, sc.value_a_share, sc.value_b_share).to_numpy()
    return scores


def score_frame(c: Any, ddf: Any, meta_features: pd.DataFrame, fitted: _model.ChurnModel,
                config: Config) -> Any:
    """Return the (lazy) dask scores frame: ``scoring.score`` on every features partition."""
    [model_future] = c.scatter([fitted], broadcast=True)  # sent to each worker once
    meta = _scoring.score(meta_features.iloc[:0], fitted, config)
    return ddf.map_partitions(_score_part, model_future, config, meta=meta, enforce_metadata=False)


def score(features: pd.DataFrame, fitted: _model.ChurnModel, config: Config, *,
          scheduler: str | None = None) -> pd.DataFrame:
    """Return the scores frame computed per customer partition; equal to ``scoring.score``'s."""
    import dask.dataframe as dd

    c = client(scheduler)
    fitted.check_features(features)
    n = n_partitions(len(features), _workers(c))
    bounds = np.linspace(0, len(features), n + 1).astype(int)
    chunks = [features.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    ddf = dd.from_delayed(c.scatter(chunks), meta=features.iloc[:0], verify_meta=False)
    return _finish_scores(score_frame(c, ddf, features, fitted, config).compute(), features, config)


# --- population-level BG/NBD columns -------------------------------------------------------------
def _btyd_on(config: Config) -> bool:
    return bool(getattr(config.model, "btyd_features", False)) and hasattr(_model, "add_btyd")


def _without_btyd(config: Config) -> Config:
    """Return ``config`` with the per-partition BG/NBD fit off (it is fitted on the client)."""
    if not hasattr(config.model, "btyd_features"):
        return config
    return config.replace(model=dataclasses.replace(config.model, btyd_features=False))


def _add_columns(frame: pd.DataFrame, extra: pd.DataFrame) -> pd.DataFrame:
    """Return a partition with the columns of ``extra`` (indexed like the population) added."""
    if "snapshot" in extra.columns:  # training rows: one per (customer, snapshot)
        key = pd.MultiIndex.from_arrays([frame.index, frame["snapshot"]])
        rows = extra.set_index("snapshot", append=True).reindex(key)
    else:
        rows = extra.reindex(frame.index)
    return frame.assign(**{c: rows[c].to_numpy() for c in rows.columns})


# --- training -----------------------------------------------------------------------------------
def _snapshots_part(orders: pd.DataFrame, events: pd.DataFrame | None, as_of: pd.Timestamp,
                    config: Config, empty: pd.DataFrame) -> pd.DataFrame:
    try:
        return _model.build_training_set(orders, as_of, config, events=events)
    except TrainingError:  # this partition alone has < 2 snapshots; the total is checked later
        return empty


def _margins_part(frame: pd.DataFrame, fitted: _model.ChurnModel) -> pd.DataFrame:
    return pd.DataFrame({
        "margin": _own(fitted).raw_margin(frame),
        "churned": frame["churned"].to_numpy(dtype=bool),
        "recency": (frame[_model.RECENCY].to_numpy(dtype=np.float64, na_value=np.nan)
                    if _model.RECENCY in frame.columns else np.nan),
    }, index=frame.index)


def _xgb_params(config: Config) -> dict[str, Any]:
    params = _model._make_estimator("xgboost", config).get_params()
    params.pop("n_jobs", None)  # each Dask worker uses its own threads
    return {k: v for k, v in params.items() if v is not None}


def _btyd_training_columns(orders: pd.DataFrame, labels: pd.DataFrame, as_of: pd.Timestamp,
                           config: Config) -> pd.DataFrame | None:
    """Return the BG/NBD columns per (customer, snapshot), each snapshot fitted on its whole
    population as ``model.build_training_set`` does; None when a fit is impossible."""
    orders = orders[(orders["order_date"] < day_end(as_of)).to_numpy(dtype=bool)]
    frames = []
    snaps = pd.DatetimeIndex(labels["snapshot"])
    for cutoff in sorted(snaps.unique()):
        ids = labels.index[np.asarray(snaps == cutoff)]
        cut = orders[(orders["order_date"] < day_end(cutoff)).to_numpy(dtype=bool)]
        out, why = _model.add_btyd(pd.DataFrame(index=ids), cut, cutoff, config.horizon_days)
        if why:
            log.info("train    BG/NBD features left out (%s: %s)", pd.Timestamp(cutoff).date(), why)
            return None
        frames.append(out.assign(snapshot=cutoff))
    return pd.concat(frames)


def train(orders: pd.DataFrame, as_of: pd.Timestamp, config: Config, *,
          events: pd.DataFrame | None = None, algo: str | None = None,
          scheduler: str | None = None, parts: Partitioned | None = None) -> _model.ChurnModel:
    """Return a ChurnModel trained on the cluster (same snapshots, split and calibration).

    Snapshots are built per customer partition with ``model.build_training_set``; the
    population-level BG/NBD columns are fitted per snapshot on the client and joined to the
    partitions; XGBoost is fitted with ``xgboost.dask`` on the older snapshots; the held-out
    snapshot's margins are gathered and the calibrator and metrics are computed as
    ``model.fit`` does.  The trees differ from the pandas engine's (distributed histograms),
    the procedure does not.  ``algo: logistic`` gathers the snapshot rows and fits on the client.
    """
    algo = algo or config.model.algo
    if algo not in _model.ALGOS:
        raise ConfigError(f"model.algo: unknown algorithm '{algo}' (choose one of: {', '.join(_model.ALGOS)})")
    method = config.model.calibration
    if method not in _model.CALIBRATIONS:
        raise ConfigError(f"model.calibration: unknown method '{method}' (choose one of: {', '.join(_model.CALIBRATIONS)})")
    as_of = as_of_timestamp(as_of)
    c = client(scheduler)
    parts = parts or Partitioned(c, orders, events)
    part_config = _without_btyd(config)
    sample_orders, sample_events = parts.sample(2000)
    try:
        meta = _model.build_training_set(sample_orders, as_of, part_config, events=sample_events).iloc[:0]
    except TrainingError:  # too few customers in the sample: the pandas engine decides and explains
        return _model.train(orders, as_of, config, events=events, algo=algo)
    snapshots = parts.map(_snapshots_part, meta, as_of, part_config, meta)
    labels = snapshots[["snapshot", "churned"]].compute()
    order = sorted(pd.DatetimeIndex(labels["snapshot"]).unique())
    if len(order) < 2:  # the pandas engine raises the explaining TrainingError
        return _model.train(orders, as_of, config, events=events, algo=algo)
    if _btyd_on(config):
        extra = _btyd_training_columns(orders, labels, as_of, config)
        if extra is not None:
            [extra_future] = c.scatter([extra], broadcast=True)
            meta = _add_columns(meta, extra.iloc[:0])
            snapshots = snapshots.map_partitions(_add_columns, extra_future, meta=meta, enforce_metadata=False)
    snapshots = snapshots.persist()
    if algo != "xgboost":
        return _model.fit(snapshots.compute(), as_of, config, algo=algo)

    valid_at = order[-1]
    y_all = labels["churned"].to_numpy(dtype=bool)
    is_valid = np.asarray(pd.DatetimeIndex(labels["snapshot"]) == valid_at)
    minimum = config.model.min_class_count
    _model._check_classes(y_all[~is_valid], f"the training snapshots {_model._date(order[0])}..{_model._date(order[-2])}", minimum)
    _model._check_classes(y_all[is_valid], f"the validation snapshot {_model._date(valid_at)}", minimum)
    columns = _features.model_columns(meta)
    if not columns:
        raise TrainingError("no model features were built from the orders: nothing to train on")

    from xgboost import XGBClassifier
    from xgboost.dask import DaskXGBClassifier

    train_part = snapshots[snapshots["snapshot"] != valid_at]
    est = DaskXGBClassifier(**_xgb_params(config))
    est.client = c
    est.fit(train_part[columns].astype(np.float64), train_part["churned"].astype(np.int64))
    local = XGBClassifier(**{**_xgb_params(config), "n_jobs": 1})
    booster = est.get_booster()
    booster.feature_names = None  # the pandas engine's booster is fitted on a plain matrix
    booster.feature_types = None
    local.load_model(bytearray(booster.save_raw("ubj")))
    fitted = _model.ChurnModel(algo, local, _model.Calibrator(method), columns, meta={})

    [model_future] = c.scatter([fitted], broadcast=True)
    margins_meta = pd.DataFrame({"margin": pd.Series(dtype=np.float64), "churned": pd.Series(dtype=bool),
                                 "recency": pd.Series(dtype=np.float64)})
    valid_part = snapshots[snapshots["snapshot"] == valid_at]
    held_out = valid_part.map_partitions(_margins_part, model_future, meta=margins_meta,
                                         enforce_metadata=False).compute()
    _calibrate(fitted, held_out, as_of, config, method, order, valid_at,
               train_rows=int((~is_valid).sum()), churn_rate_train=float(y_all[~is_valid].mean()))
    fitted.meta["engine"] = {"name": "dask", "workers": _workers(c), "partitions": parts.n}
    return fitted


def _calibrate(fitted: _model.ChurnModel, held_out: pd.DataFrame, as_of: pd.Timestamp, config: Config,
               method: str, order: list, valid_at: pd.Timestamp, *, train_rows: int,
               churn_rate_train: float) -> None:
    """Calibrate on the held-out margins and fill ``fitted.meta`` exactly as ``model.fit`` does."""
    margin = held_out["margin"].to_numpy(dtype=np.float64)
    y_valid = held_out["churned"].to_numpy(dtype=bool)
    folds = _model._folds(held_out.index)
    p_valid = _model._cross_fit(method, margin, y_valid, folds)
    report: dict[str, Any] = {
        "model": _model.metrics(y_valid, p_valid, rank_score=margin),
        "recency_baseline": None,
        "train_rows": train_rows,
        "valid_rows": int(len(held_out)),
        "churn_rate_train": churn_rate_train,
        "churn_rate_valid": float(y_valid.mean()),
        "calibration": method,
        "validation_snapshot": _model._date(valid_at),
    }
    recency = held_out["recency"].to_numpy(dtype=np.float64)
    if not np.isnan(recency).all():
        recency = np.where(np.isnan(recency), np.nanmax(recency, initial=0.0), recency)
        p_base = _model._cross_fit("isotonic", recency, y_valid, folds)
        report["recency_baseline"] = _model.metrics(y_valid, p_base, rank_score=recency)
    fitted.calibrator = _model.Calibrator(method).fit(margin, y_valid)
    d = _model._date
    fitted.meta = {
        "format": _model.FORMAT,
        "algo": fitted.algo,
        "features": fitted.features,
        "config_hash": config.hash(),
        "seed": config.seed,
        "as_of": d(as_of),
        "horizon_days": int(config.horizon_days),
        "snapshots": [d(s) for s in order],
        "training_window": {
            "train_snapshots": [d(s) for s in order[:-1]],
            "validation_snapshot": d(valid_at),
            "labels_observed_until": d(as_of),
        },
        "calibration": method,
        "class_weighting": "none",
        "metrics": report,
        "versions": _model._versions(),
        "created_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        "model_version": None,
    }


# --- ingest on the workers ----------------------------------------------------------------------
#: Byte ranges one large CSV file is cut into: each is parsed by one task, on any worker.
INGEST_BLOCK_BYTES = 32 << 20
#: Input bytes of orders per customer partition (1M orders ~ 128 MB of CSV ~ 185k customers).
BYTES_PER_PARTITION = 128 << 20
_POS = "__pos"  # a row's global position: block sequence number << _ROW_BITS | row in block
_FILE = "__file"  # index of the row's input file
_PART = "__part"
_ROW_BITS = 40
_HELPERS = (_POS, _FILE)
_QUOTE, _NL, _CR = 34, 10, 13


@dataclasses.dataclass
class _Part:
    """One ingest task's result: accepted rows (with ``__pos``/``__file``), rejects and counts."""

    frame: pd.DataFrame
    rejects: pd.DataFrame  # empty when none
    stats: Any  # ingest.FileStats
    had_rows: bool  # some record reached validation (else the frame is the empty placeholder)


def _plan_file(spec: str, kind: Any, block_bytes: int) -> dict | None:
    """Return how to cut a CSV file into byte ranges, or None to read it in one task.

    Only plain UTF-8 text files larger than ``block_bytes`` whose first line is the header
    (no quotes in it) are cut; compressed files, Parquet, databases, other encodings, blank
    lines above the header and presets with ``line_items`` or ``skip_lines_matching`` (eBay's
    summary lines) are read whole.  Any problem opening the file is left to the whole-file
    task, which reports it exactly as the pandas engine does.
    """
    from . import mappings, readers

    if readers.is_url(spec) or not os.path.isfile(spec):
        return None
    size = os.path.getsize(spec)
    if size <= block_bytes:
        return None
    try:
        src = readers.open_source(spec, kind=kind.kind)
        if src.fmt != "csv" or src.compression or src.encoding != "utf-8" or len(src.delimiter) != 1:
            return None
        if kind.kind == "orders":
            mapping = kind.mapping or mappings.detect(src.name, src.header, kind.known_presets or {})
            if mapping.line_items or mapping.skip_lines_matching:
                return None
    except ChurnctlError:
        return None
    with open(spec, "rb") as fh:
        head = fh.read(1 << 16)
    end = head.find(b"\n")
    if end < 0 or b'"' in head[:end] or b"\r" in head[:end].rstrip(b"\r"):
        return None
    first = head[:end].decode("utf-8", errors="replace").lstrip("\ufeff")
    if not first.strip(" \t,;|\"'\r"):
        return None  # blank lines above the header
    return {"header": head[: end + 1], "start": end + 1, "size": size, "delimiter": ord(src.delimiter)}


def _scan(spec: str, a: int, b: int, delimiter: int) -> dict:
    """Return quote parity and newline facts of bytes ``[a, b)`` for both parities at ``a``.

    A newline ends a record when an even number of quotes precede it.  For each assumed
    parity ``h`` at ``a``: the first record-ending newline, how many there are, and whether
    every quote sits where the parity rule holds (an opening quote after a delimiter, line
    start or quote; a closing one before a delimiter, line end or quote).  A quote inside an
    unquoted value (``27" screen``) or a lone carriage return makes the file unsplittable.
    """
    with open(spec, "rb") as fh:
        fh.seek(a - 1)
        buf = np.frombuffer(fh.read(b - a + 2), dtype=np.uint8)
    if len(buf) < b - a + 2:  # end of file: as if a newline followed
        buf = np.append(buf, np.uint8(_NL))
    body = buf[1:-1]
    q = np.flatnonzero(body == _QUOTE)  # few: only quote positions are kept, not a parity per byte
    newline = np.flatnonzero(body == _NL)
    nl_parity = np.searchsorted(q, newline) & 1  # quotes before each newline, mod 2
    cr = np.flatnonzero(body == _CR)
    lone_cr = bool(len(cr)) and bool((buf[cr + 2] != _NL).any())
    before = np.arange(len(q)) & 1  # quotes before each quote, mod 2
    sep = np.array([delimiter, _NL, _CR, _QUOTE], dtype=np.uint8)
    prev_ok = np.isin(buf[q], sep)
    next_ok = np.isin(buf[q + 2], sep)
    out: dict[str, Any] = {"parity": int(len(q) & 1), "lone_cr": lone_cr}
    for h in (0, 1):
        opening = (before ^ h) == 0
        out[f"ok{h}"] = bool(prev_ok[opening].all() and next_ok[~opening].all())
        ends = newline[nl_parity == h]
        out[f"count{h}"] = int(len(ends))
        out[f"first{h}"] = int(a + ends[0]) if len(ends) else -1
    return out


def _cuts(plan: dict, scans: list[dict], chunks: list[tuple[int, int]]) -> list[tuple[int, int, int]] | None:
    """Return the byte ranges ``(start, end, line offset)`` cut at record-ending newlines.

    ``line offset`` is the number of records before the range (after the header), added to
    the line numbers the range's own parse reports.  None when a chunk breaks the quote rule
    or the file ends inside quotes (the whole-file reader then reports broken quoting).
    """
    starts = [(plan["start"], 0)]
    records = 0
    parity = 0
    for k, (s, (a, _)) in enumerate(zip(scans, chunks)):
        if s["lone_cr"] or not s[f"ok{parity}"]:
            return None
        first = s[f"first{parity}"]
        if k > 0 and first >= 0:
            starts.append((first + 1, records + 1))
        records += s[f"count{parity}"]
        parity ^= s["parity"]
    if parity:
        return None
    bounds = [p for p, _ in starts[1:]] + [plan["size"]]
    return [(p, e, off) for (p, off), e in zip(starts, bounds) if e > p]


def byte_ranges(spec: str, kind: Any, block_bytes: int = INGEST_BLOCK_BYTES) -> list[tuple[int, int, int]] | None:
    """Return the ``(start, end, line offset)`` ranges a file is cut into here, None when it is
    read whole (what the cluster does, computed in this process)."""
    plan = _plan_file(spec, kind, block_bytes)
    if plan is None:
        return None
    chunks = [(a, min(a + block_bytes, plan["size"])) for a in range(plan["start"], plan["size"], block_bytes)]
    return _cuts(plan, [_scan(spec, a, b, plan["delimiter"]) for a, b in chunks], chunks)


def _empty_part(spec: str, kind: Any) -> Any:
    """Return ``ingest.read_file``'s result for a range of blank lines only (no rows, no counts)."""
    from . import ingest

    frame = pd.DataFrame({c: pd.Series(dtype=object) for c in kind.required})
    stats = ingest.FileStats(file=spec, kind=kind.kind, read=0, accepted=0, rejected=0, collapsed=0,
                             rejected_by_reason={})
    return ingest.Loaded(frame, pd.DataFrame(), [stats])


def _ingest_part(spec: str, kind: Any, block: tuple | None, seq: int, file_index: int) -> _Part:
    """Ingest one whole file (``block`` None) or one byte range of it with the pandas engine's
    reader (``ingest.read_file``), then number its rows and fix its names and line numbers.

    A range is written after the file's header to a temporary file and read as a file of its
    own; its reject lines are shifted by the records before it, so they are the whole file's.
    """
    from . import ingest

    if block is None:
        result = ingest.read_file(spec, kind)
        frame, rejects, stats = result.frame, result.rejects, result.stats[0]
    else:
        header, start, end, offset = block
        fd, tmp = tempfile.mkstemp(prefix="churnctl-", suffix=".csv")
        try:
            with os.fdopen(fd, "wb") as out, open(spec, "rb") as fh:
                out.write(header)
                fh.seek(start)
                left = end - start
                while left > 0:
                    piece = fh.read(min(left, 16 << 20))
                    if not piece:
                        break
                    out.write(piece)
                    left -= len(piece)
            try:
                result = ingest.read_file(tmp, kind)
            except ChurnctlError as exc:
                message = str(exc).replace(tmp, spec)
                if message != f"{spec}: empty file (header but no rows)":
                    raise type(exc)(message) from None
                result = _empty_part(spec, kind)  # blank lines only: the file's count decides
        finally:
            os.unlink(tmp)
        frame, rejects, stats = result.frame, result.rejects, result.stats[0]
        stats.file = spec
        if len(rejects):
            rejects["file"] = spec
            rejects["line"] += offset
    had_rows = stats.read - stats.rejected_by_reason.get(ingest.FIELD_COUNT, 0) > 0
    frame[_POS] = (np.int64(seq) << _ROW_BITS) + np.arange(len(frame), dtype=np.int64)
    frame[_FILE] = np.int32(file_index)
    return _Part(frame, rejects, stats, had_rows)


def _summary(part: _Part) -> _Part:
    """Return the part without its rows (what the client needs: rejects, counts, dtypes)."""
    return _Part(part.frame.iloc[:0].drop(columns=list(_HELPERS)), part.rejects, part.stats, part.had_rows)


def _schema(metas: list[pd.DataFrame], order: tuple) -> pd.DataFrame:
    """Return the empty frame whose columns and dtypes ``ingest._align`` gives these files."""
    dtypes: dict[str, Any] = {}
    for meta in metas:
        dtypes.update({c: t for c, t in meta.dtypes.items() if c not in dtypes})
    columns = [c for c in order if c in dtypes] + [c for c in dtypes if c not in order]
    return pd.DataFrame({c: pd.Series(dtype=dtypes[c]) for c in columns})


def _conform(frame: pd.DataFrame, schema: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with the schema's columns (missing ones empty, as ``_align`` fills them)."""
    if not len(frame):  # no rows (e.g. a range of blank lines): nothing to say about dtypes
        return schema.assign(**{c: pd.Series(dtype=np.int64) for c in _HELPERS})
    out = {}
    for c, dtype in schema.dtypes.items():
        out[c] = frame[c] if c in frame else pd.Series(np.nan, index=frame.index, dtype=object).astype(dtype)
    for c in _HELPERS:
        if c in frame:
            out[c] = frame[c]
    return pd.DataFrame(out, index=frame.index, copy=False)


def split_by(frame: pd.DataFrame, column: str, n: int) -> list[pd.DataFrame]:
    """Return ``n`` frames by a stable hash of ``column`` (equal values together, order kept)."""
    if column == _PART:
        part = frame[column].to_numpy(dtype=np.int64)
    else:
        part = partition_codes(frame[column], n)
    order = np.argsort(part, kind="stable")
    bounds = np.cumsum(np.bincount(part, minlength=n))[:-1]
    return [frame.iloc[rows].reset_index(drop=True) for rows in np.split(order, bounds)]


def _split_part(part: _Part, column: str, n: int, schema: pd.DataFrame) -> list[pd.DataFrame]:
    return split_by(_conform(part.frame, schema), column, n)


def _union_categoricals(columns: list[pd.Series]) -> pd.Series:
    """Return one categorical of ``columns`` with the union of their categories (sorted)."""
    from pandas.api.types import union_categoricals

    return pd.Series(union_categoricals([c.array for c in columns], sort_categories=True))


def _concat(*pieces: pd.DataFrame) -> pd.DataFrame:
    """Concatenate pieces given in global order (their rows already are).

    Categorical columns get the union of the pieces' categories: ``pd.concat`` would turn
    categoricals whose categories differ (other files, other ranges) into text.
    """
    if len(pieces) == 1:
        return pieces[0]
    out = pd.concat(pieces, ignore_index=True)
    for col, dtype in pieces[0].dtypes.items():
        if isinstance(dtype, pd.CategoricalDtype) and not isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = _union_categoricals([p[col] for p in pieces])
    return out


def _dedup_local(frame: pd.DataFrame, key: tuple | None) -> pd.DataFrame:
    """Drop earlier versions when every version of a key is in this partition (events, customers)."""
    from . import ingest

    if key:
        dup = ingest._duplicated_last(frame[key[0]], np.arange(len(frame)))
    else:  # events: exact rows, as ``frame.duplicated(keep="last")`` in the pandas engine
        dup = frame.drop(columns=[c for c in _HELPERS if c in frame]).duplicated(keep="last").to_numpy()
    return frame[~dup].reset_index(drop=True) if dup.any() else frame


def _order_ids(frame: pd.DataFrame, q: int, n: int) -> list[pd.DataFrame]:
    """Return this customer partition's (order_id, position, partition) rows split by order_id."""
    ids = pd.DataFrame({"order_id": frame["order_id"], _POS: frame[_POS], _PART: np.int32(q)})
    return split_by(ids, "order_id", n)


def _losers(n: int, *pieces: pd.DataFrame) -> list[np.ndarray]:
    """Return, per customer partition, the positions of rows a later version of their order
    replaces (the pandas engine's rule: later file, then later line, wins)."""
    from . import ingest

    ids = pd.concat(pieces, ignore_index=True).sort_values(_POS, kind="stable", ignore_index=True)
    dup = ingest._duplicated_last(ids["order_id"], np.arange(len(ids)))
    gone = ids[dup]
    return [p[_POS].to_numpy() for p in split_by(gone, _PART, n)]


def _drop_positions(frame: pd.DataFrame, *losers: np.ndarray) -> pd.DataFrame:
    gone = np.concatenate(losers) if losers else np.zeros(0, np.int64)
    if not len(gone):
        return frame
    return frame[~np.isin(frame[_POS].to_numpy(), gone)].reset_index(drop=True)


def _describe_part(frame: pd.DataFrame, files: list[str]) -> list[dict]:
    """Return ``ingest._describe``'s per-file facts over this partition's whole customers."""
    from . import ingest

    stats = [ingest.FileStats(file=f, kind="orders", read=0, accepted=0, rejected=0, collapsed=0,
                              rejected_by_reason={}) for f in files]
    if len(frame):
        ingest._describe([frame], np.arange(len(frame)), frame[_FILE].to_numpy(), stats)
    return [{"customers": s.customers, "merged": s.merged_customers, "first": s.first_date,
             "last": s.last_date, "currencies": s.currencies} for s in stats]


def _file_counts(frame: pd.DataFrame, files: int) -> tuple[np.ndarray, dict[str, pd.Index]]:
    """Return the rows per input file and each categorical column's categories in use."""
    used = {c: frame[c].cat.remove_unused_categories().cat.categories
            for c, t in frame.dtypes.items() if isinstance(t, pd.CategoricalDtype)}
    return np.bincount(frame[_FILE].to_numpy(), minlength=files), used


def _used_categories(used: list[dict[str, pd.Index]]) -> dict[str, pd.CategoricalDtype]:
    """Return the final dtype of each categorical column: the sorted union of the categories in
    use in every partition (what ``ingest._align`` gives the pandas engine's frame)."""
    from pandas.api.types import union_categoricals

    out = {}
    for col in used[0] if used else ():
        empty = [pd.Categorical([], categories=u[col]) for u in used]
        out[col] = pd.CategoricalDtype(union_categoricals(empty, sort_categories=True).categories)
    return out


def _with_categories(frame: pd.DataFrame, dtypes: dict[str, pd.CategoricalDtype]) -> pd.DataFrame:
    """Return ``frame`` with the final categorical dtypes (same codes meaning in every partition)."""
    return frame.assign(**{c: frame[c].cat.set_categories(t.categories) for c, t in dtypes.items()})


def _strip(frame: pd.DataFrame, dtypes: dict[str, pd.CategoricalDtype] | None = None) -> pd.DataFrame:
    return _with_categories(frame.drop(columns=list(_HELPERS)), dtypes or {})


def _merge_stats(parts: list[_Part]) -> Any:
    """Return one file's FileStats from its ranges' (counts add up; reasons re-sorted)."""
    real = [p for p in parts if p.stats.format is not None]  # ranges of blank lines only have none
    parts = real + [p for p in parts if p.stats.format is None]
    first = copy.deepcopy(parts[0].stats)
    reasons: dict[str, int] = dict(first.rejected_by_reason)
    for p in parts[1:]:
        s = p.stats
        first.read += s.read
        first.accepted += s.accepted
        first.rejected += s.rejected
        first.collapsed += s.collapsed
        first.skipped += s.skipped
        for r, k in s.rejected_by_reason.items():
            reasons[r] = reasons.get(r, 0) + k
        first.warnings += [w for w in s.warnings if w not in first.warnings]
    first.rejected_by_reason = {r: reasons[r] for r in sorted(reasons, key=lambda r: (-reasons[r], r))}
    return first


@dataclasses.dataclass
class Ingested:
    """A kind ingested on the cluster: the gathered ``Loaded`` and its customer partitions."""

    loaded: Any  # ingest.Loaded
    partitions: list  # futures: whole customers, rows in input order, helper columns dropped
    n: int


def ingest_kind(c: Any, paths: Any, kind: Any, *, n: int, block_bytes: int = INGEST_BLOCK_BYTES) -> Ingested:
    """Ingest ``paths`` on the cluster exactly as ``ingest.load_orders`` (``load_events``,
    ``load_customers``) does on one machine.

    1. one task per input file, and per byte range of a large CSV file (:func:`_plan_file`,
       :func:`_scan`, :func:`_cuts`); each runs the pandas engine's reader and validation;
    2. the client gathers only rejects, counts and dtypes, merges the ranges' counts per file;
    3. accepted rows are shuffled to ``n`` partitions by customer (a stable hash of
       ``customer_id``); orders are described per file there (customers, merges, dates) and
       de-duplicated by a second, small shuffle of ``(order_id, position)`` by order id:
       the latest version (later file, then later line) wins; events and customers are
       de-duplicated inside their customer partition;
    4. the partitions stay on the workers for features, training and scoring; the client
       gathers them once, in input order, because the API returns a pandas frame.
    """
    import operator

    from distributed import wait

    from . import ingest, readers

    specs = readers.expand(list(paths) if not isinstance(paths, (str, os.PathLike)) else [paths], kind.kind)
    if not specs:
        raise InputError(f"no {kind.kind} file given")
    clock = [time.perf_counter()]
    [kind_f] = c.scatter([kind], broadcast=True)
    plans = c.gather([c.submit(_plan_file, s, kind_f, block_bytes, pure=False) for s in specs])
    chunks = [[] if plan is None else
              [(a, min(a + block_bytes, plan["size"])) for a in range(plan["start"], plan["size"], block_bytes)]
              for plan in plans]
    scans = c.gather([[c.submit(_scan, spec, a, b, plan["delimiter"], pure=False) for a, b in ch]
                      for spec, plan, ch in zip(specs, plans, chunks)])  # every file's at once
    blocks: list[list[tuple | None]] = []
    for plan, ch, sc in zip(plans, chunks, scans):
        ranges = _cuts(plan, sc, ch) if plan is not None else None
        blocks.append([None] if not ranges or len(ranges) < 2 else
                      [(plan["header"], a, b, off) for a, b, off in ranges])
    log.debug("dask ingest: %s", [(s, len(b)) for s, b in zip(specs, blocks)])

    def submit_parts(i: int, seq: int) -> list:
        return [c.submit(_ingest_part, specs[i], kind_f, blk, seq + j, i, pure=False)
                for j, blk in enumerate(blocks[i])]

    first_seq = np.concatenate([[0], np.cumsum([len(b) for b in blocks])[:-1]]).astype(int).tolist()
    futures = [submit_parts(i, first_seq[i]) for i in range(len(specs))]
    summaries: list[list[_Part]] = []
    try:
        for i, fs in enumerate(futures):
            got = [f.result() for f in [c.submit(_summary, f, pure=False) for f in fs]]
            if len(got) > 1 and any(p.stats.warnings for p in got):  # not UTF-8: read it whole
                c.cancel(fs)
                blocks[i] = [None]
                futures[i] = submit_parts(i, first_seq[i])  # same place in the input order
                got = [c.submit(_summary, futures[i][0], pure=False).result()]
            summaries.append(got)
    except BaseException:
        c.cancel([f for fs in futures for f in fs])
        raise
    clock.append(time.perf_counter())
    stats = []
    rejects = []
    metas = []
    for i, got in enumerate(summaries):
        s = _merge_stats(got)
        if s.read == 0 and s.skipped == 0 and len(got) > 1:  # cut files are CSV text
            c.cancel([f for fs in futures for f in fs])
            raise InputError(f"{specs[i]}: empty file (header but no rows)")
        stats.append(s)
        file_rejects = _concat_rejects([p.rejects for p in got])
        if len(file_rejects) and s.rejected_by_reason.get(ingest.FIELD_COUNT):
            file_rejects = file_rejects.sort_values("line", kind="stable", ignore_index=True)
        if len(file_rejects):
            rejects.append(file_rejects)
        metas.append(next((p.frame for p in got if p.had_rows), got[0].frame))
    schema = _schema(metas, kind.order)
    [schema_f] = c.scatter([schema], broadcast=True)
    parts = [f for fs in futures for f in fs]

    # shuffle by customer
    splits = [c.submit(_split_part, p, "customer_id", n, schema_f, pure=False) for p in parts]
    del parts, futures
    pieces = [[c.submit(operator.getitem, s, q, pure=False) for s in splits] for q in range(n)]
    by_customer = [c.submit(_concat, *pieces[q], pure=False) for q in range(n)]
    del splits, pieces
    files = len(specs)
    if kind.kind == "orders":
        described = [c.submit(_describe_part, f, specs, pure=False) for f in by_customer]
        id_splits = [c.submit(_order_ids, f, q, n, pure=False) for q, f in enumerate(by_customer)]
        id_pieces = [[c.submit(operator.getitem, s, p, pure=False) for s in id_splits] for p in range(n)]
        losers = [c.submit(_losers, n, *id_pieces[p], pure=False) for p in range(n)]
        back = [[c.submit(operator.getitem, lo, q, pure=False) for lo in losers] for q in range(n)]
        final = [c.submit(_drop_positions, by_customer[q], *back[q], pure=False) for q in range(n)]
        _describe_merge(stats, c.gather(described))
        del id_splits, id_pieces, losers, back
    else:
        final = [c.submit(_dedup_local, f, kind.key, pure=False) for f in by_customer]
    del by_customer
    counted = c.gather([c.submit(_file_counts, f, files, pure=False) for f in final])
    counts = np.sum([k for k, _ in counted], axis=0)
    dtypes = _used_categories([u for _, u in counted])
    schema = schema.assign(**{col: pd.Series(dtype=t) for col, t in dtypes.items()})
    final = [c.submit(_with_categories, f, dtypes, pure=False) for f in final]
    clock.append(time.perf_counter())
    for s, kept in zip(stats, counts):
        s.collapsed += s.accepted - int(kept)
        s.accepted = int(kept)
    frame = _gather_in_order(c, final, schema)
    partitions = [c.submit(_strip, f, pure=False) for f in final]
    wait(partitions)
    del final
    clock.append(time.perf_counter())
    log.debug("dask ingest %s: %d tasks; read %.1fs, shuffle and de-duplicate %.1fs, gather %.1fs",
              kind.kind, sum(len(b) for b in blocks), *np.diff(clock))
    empty = next((p.rejects.iloc[:0] for got in summaries for p in got if "reason" in p.rejects), None)
    loaded = ingest.Loaded(frame=frame, rejects=_concat_rejects(rejects, empty), stats=stats)
    return Ingested(loaded, partitions, n)


def _concat_rejects(rejects: list[pd.DataFrame], empty: pd.DataFrame | None = None) -> pd.DataFrame:
    """Return the rejects frames one after the other (``empty`` when there are none)."""
    rejects = [r for r in rejects if len(r)]
    if not rejects:
        return empty if empty is not None else pd.DataFrame()
    return pd.concat(rejects, ignore_index=True) if len(rejects) > 1 else rejects[0]


def _describe_merge(stats: list, partials: list[list[dict]]) -> None:
    """Combine the per-partition facts: customers are disjoint across partitions."""
    for i, s in enumerate(stats):
        got = [p[i] for p in partials if p[i]["customers"] is not None]
        if not got:
            continue
        s.customers = sum(g["customers"] for g in got)
        s.merged_customers = sum(g["merged"] for g in got)
        s.first_date = min(g["first"] for g in got)  # YYYY-MM-DD: text order is date order
        s.last_date = max(g["last"] for g in got)
        s.currencies = sorted(set().union(*(g["currencies"] for g in got)))


def _column(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame[column]


def _gather_in_order(c: Any, futures: list, schema: pd.DataFrame) -> pd.DataFrame:
    """Gather the partitions one column at a time and put the rows back in input order.

    The client holds the result plus one column of every partition, never a second copy of
    the whole frame.
    """
    position = [c.submit(_column, f, _POS, pure=False) for f in futures]
    order = np.argsort(np.concatenate(c.gather(position)), kind="stable")
    out = {}
    for col in schema.columns:
        pieces = c.gather([c.submit(_column, f, col, pure=False) for f in futures])
        joined = pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else pieces[0]
        del pieces
        out[col] = joined.iloc[order].reset_index(drop=True)
        del joined
    return pd.DataFrame(out, copy=False)


def _file_sizes(specs: list[str]) -> list[int]:
    return [os.path.getsize(s) if os.path.isfile(s) else -1 for s in specs]


def _workers_see(c: Any, paths: Any) -> bool:
    """Return True when every input is a file every worker sees, at the same path and size.

    Otherwise (a remote cluster without a shared file system, a database URL) ingest runs on
    the client, as the pandas engine does, and the partitions are sent to the workers.
    """
    from . import readers

    specs = readers.expand(list(paths) if not isinstance(paths, (str, os.PathLike)) else [paths])
    if any(readers.is_url(s) for s in specs):
        return False
    here = _file_sizes(specs)
    if any(size < 0 for size in here):
        return True  # a missing file: the worker's reader reports it as the pandas engine does
    return all(sizes == here for sizes in c.run(_file_sizes, specs).values())


def _input_bytes(paths: Any) -> int:
    from . import readers

    total = 0
    for spec in readers.expand(list(paths) if not isinstance(paths, (str, os.PathLike)) else [paths]):
        if not readers.is_url(spec) and os.path.isfile(spec):
            total += os.path.getsize(spec)
    return total


# --- the engine the API calls -------------------------------------------------------------------
class DaskEngine:
    """Ingest, features, training and scoring on a Dask cluster.

    Keeps the customer partitions ingest built (for features and training) and the feature
    partitions (for scoring), so the rows are sent to the workers once.
    """

    name = "dask"

    def __init__(self, scheduler: str | None = None, *, block_bytes: int | None = None) -> None:
        self.scheduler = scheduler
        self.client = client(scheduler)
        self.block_bytes = block_bytes  # None: INGEST_BLOCK_BYTES
        self._kept: tuple[Any, pd.DataFrame] | None = None  # (persisted partitions, gathered frame)
        self._ingested: dict[str, Ingested] = {}
        self._n: int | None = None

    # ingest: the signatures of ingest.load_orders / load_events / load_customers
    def load_orders(self, paths: Any, config: Any, *, base_currency: str = "USD",
                    source: str | None = None) -> Any:
        """Return ``ingest.load_orders``'s result (frame, rejects, stats), computed on the cluster."""
        from . import ingest

        kind = ingest.reader("orders", config, base_currency=base_currency, source=source)
        self._n = max(_workers(self.client), -(-_input_bytes(paths) // BYTES_PER_PARTITION))
        return self._load("orders", paths, kind, lambda: ingest.load_orders(
            paths, config, base_currency=base_currency, source=source))

    def load_events(self, paths: Any, config: Any) -> Any:
        """Return ``ingest.load_events``'s result, computed on the cluster."""
        from . import ingest

        return self._load("events", paths, ingest.reader("events", config),
                          lambda: ingest.load_events(paths, config))

    def load_customers(self, paths: Any, config: Any) -> Any:
        """Return ``ingest.load_customers``'s result, computed on the cluster."""
        from . import ingest

        return self._load("customers", paths, ingest.reader("customers", config),
                          lambda: ingest.load_customers(paths, config))

    def _load(self, name: str, paths: Any, kind: Any, on_client: Any) -> Any:
        self._ingested.pop(name, None)
        if not _workers_see(self.client, paths):
            log.info("ingest   %s: read on this machine (the Dask workers do not see every input file)", name)
            return on_client()
        n = self._n or _workers(self.client)
        got = ingest_kind(self.client, paths, kind, n=n, block_bytes=self.block_bytes or INGEST_BLOCK_BYTES)
        if name != "customers":  # customers are only used on the client (exports)
            self._ingested[name] = got
        return got.loaded

    def partitioned(self, orders: pd.DataFrame, events: pd.DataFrame | None) -> Partitioned:
        """Return the customer partitions of these frames: ingest's when they are its result."""
        o, e = self._ingested.get("orders"), self._ingested.get("events")
        if o is not None and o.loaded.frame is orders and (
                events is None or (e is not None and e.loaded.frame is events and e.n == o.n)):
            return Partitioned.from_ingested(self.client, o, None if events is None else e)
        return Partitioned(self.client, orders, events)

    def features(self, orders: pd.DataFrame, as_of: pd.Timestamp, *, events: pd.DataFrame | None,
                 config: FeatureConfig) -> pd.DataFrame:
        """Return the features frame, equal to ``features.build``'s; keep the partitions."""
        parts = self.partitioned(orders, events)
        ddf = features_frame(parts, as_of_timestamp(as_of), config).persist()
        frame = _finish_features(ddf.compute())
        self._kept = (ddf, frame)
        return frame

    def scoring_features(self, orders: pd.DataFrame, as_of: pd.Timestamp, config: Config, *,
                         events: pd.DataFrame | None = None) -> pd.DataFrame:
        """Return the features for scoring, equal to ``model.scoring_features``'s.

        Per-customer features come from the partitions; the BG/NBD fit (population-level)
        runs on the client over every customer, and its columns join the kept partitions.
        """
        as_of = as_of_timestamp(as_of)
        frame = self.features(orders, as_of, events=events, config=config.features)
        if frame.empty or not _btyd_on(config):
            return frame
        out, why = _model.add_btyd(frame, orders, as_of, config.horizon_days)
        if why:
            log.info("features BG/NBD not available, its features are left empty (%s)", why)
            out = frame.assign(**{c: np.nan for c in _model.BTYD_FEATURES})
        added = [c for c in out.columns if c not in frame.columns]
        ddf = self._kept[0]
        if added:
            [extra] = self.client.scatter([out[added]], broadcast=True)
            ddf = ddf.map_partitions(_add_columns, extra, meta=_add_columns(ddf._meta, out[added].iloc[:0]),
                                     enforce_metadata=False).persist()
        self._kept = (ddf, out)
        return out

    def score(self, feats: pd.DataFrame, fitted: _model.ChurnModel, config: Config) -> pd.DataFrame:
        """Return the scores frame, equal to ``scoring.score``'s, scored where the features are."""
        fitted.check_features(feats)
        if self._kept is not None and self._kept[1] is feats:
            ddf = self._kept[0]
            return _finish_scores(score_frame(self.client, ddf, feats, fitted, config).compute(), feats, config)
        return score(feats, fitted, config, scheduler=self.scheduler)

    def train(self, orders: pd.DataFrame, as_of: pd.Timestamp, config: Config, *,
              events: pd.DataFrame | None = None, algo: str | None = None) -> _model.ChurnModel:
        """Return a model trained on the cluster (see :func:`train`)."""
        return train(orders, as_of, config, events=events, algo=algo, scheduler=self.scheduler,
                     parts=self.partitioned(orders, events))


def engine(name: str | None, scheduler: str | None = None) -> DaskEngine | None:
    """Return the engine for ``name``: None for pandas (the stages are called directly).

    One DaskEngine is kept per scheduler, so ``train`` and ``score`` in one run reuse the
    partitions ingest left on the workers.
    """
    global _ENGINE
    name = check_engine(name)
    if name == "pandas":
        if scheduler:
            raise ConfigError("--scheduler needs --engine dask")
        return None
    if _ENGINE is None or _ENGINE.scheduler != scheduler or _ENGINE.client is not client(scheduler):
        _ENGINE = DaskEngine(scheduler)
    return _ENGINE
