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

Ingest runs on the client (the pandas engine's reader and validation): its duplicate rule
(latest version of an order across files and lines) and reject line numbers need the whole
file in order.  The per-customer frames gathered on the client are small (1M customers: a
few hundred MB) and documented as such.

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
from typing import Any

import numpy as np
import pandas as pd

from . import features as _features
from . import model as _model
from . import scoring as _scoring
from .config import Config, FeatureConfig
from .errors import ChurnctlError, ConfigError, TrainingError
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
        _CLUSTER = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=processes,
            dashboard_address=None, silence_logs=logging.ERROR,
        )
        _CLIENT = Client(_CLUSTER)
    _ADDRESS = key
    log.debug("dask: %s", _CLIENT)
    return _CLIENT


def shutdown() -> None:
    """Close the cached client and the LocalCluster it started (no-op when none)."""
    global _CLIENT, _CLUSTER, _ADDRESS
    if _CLIENT is not None:
        _CLIENT.close()
    if _CLUSTER is not None:
        _CLUSTER.close()
    _CLIENT = _CLUSTER = _ADDRESS = None


atexit.register(shutdown)


def _workers(c: Any) -> int:
    return max(1, len(c.scheduler_info().get("workers", {})))


def n_partitions(customers: int, workers: int) -> int:
    """Return the partition count: at least one per worker, about CUSTOMERS_PER_PARTITION each."""
    return max(workers, -(-int(customers) // CUSTOMERS_PER_PARTITION))


# --- partitioning by customer ---------------------------------------------------------------
def partition_codes(customer_id: pd.Series, n: int) -> np.ndarray:
    """Return each row's partition in ``[0, n)``: a stable hash of its customer_id modulo ``n``.

    The same id goes to the same partition in every frame (orders, events) and on every
    machine (``pandas.util.hash_array`` with its fixed default key).
    """
    codes, uniques = pd.factorize(customer_id)
    part = (pd.util.hash_array(np.asarray(uniques, dtype=object)) % np.uint64(n)).astype(np.int64)
    return np.append(part, 0)[codes]  # missing id (code -1) -> partition 0; features drop it


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
          scheduler: str | None = None) -> _model.ChurnModel:
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
    parts = Partitioned(c, orders, events)
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


# --- the engine the API calls -------------------------------------------------------------------
class DaskEngine:
    """Features, training and scoring on a Dask cluster; keeps feature partitions for scoring."""

    name = "dask"

    def __init__(self, scheduler: str | None = None) -> None:
        self.scheduler = scheduler
        self.client = client(scheduler)
        self._kept: tuple[Any, pd.DataFrame] | None = None  # (persisted partitions, gathered frame)

    def features(self, orders: pd.DataFrame, as_of: pd.Timestamp, *, events: pd.DataFrame | None,
                 config: FeatureConfig) -> pd.DataFrame:
        """Return the features frame, equal to ``features.build``'s; keep the partitions."""
        parts = Partitioned(self.client, orders, events)
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
        return train(orders, as_of, config, events=events, algo=algo, scheduler=self.scheduler)


def engine(name: str | None, scheduler: str | None = None) -> DaskEngine | None:
    """Return the engine for ``name``: None for pandas (the stages are called directly)."""
    name = check_engine(name)
    if name == "pandas":
        if scheduler:
            raise ConfigError("--scheduler needs --engine dask")
        return None
    return DaskEngine(scheduler)
