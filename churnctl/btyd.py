"""Classic "buy till you die" baselines: BG/NBD purchase model and Gamma-Gamma spend model.

These are the customer-base models the churn classifier is compared against. Everything is
vectorised over customers (numpy/scipy); a fit on a million customers takes seconds.

Data summary (:func:`summary`)
    Time is counted in whole days: several completed orders of one customer on the same day
    are one *purchase* whose value is their sum. With ``d0`` the first purchase day, ``dL``
    the last one and ``D`` the as-of day (all day starts), in time units of
    ``time_unit_days`` days:

    * ``frequency`` x = number of purchase days - 1 (repeat purchases);
    * ``recency`` t_x = (dL - d0), the time of the last purchase since the first;
    * ``T`` = (D - d0), the time during which a repeat purchase could have been seen (0 for a
      customer whose first purchase is on D);
    * ``monetary_value`` = mean value of the repeat purchases (0 when x == 0).

    Only completed orders with ``order_date < schema.day_end(as_of)`` are used.

BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way")
    While alive a customer buys at Poisson rate lambda ~ Gamma(r, alpha); after each repeat
    purchase they drop out with probability p ~ Beta(a, b). With G the gamma function and B
    the beta function:

    * likelihood: ``L = A1 A2 (A3 + [x>0] A4)`` with ``A1 = G(r+x) alpha^r / G(r)``,
      ``A2 = B(a, b+x) / B(a, b)``, ``A3 = (alpha+T)^-(r+x)``,
      ``A4 = a/(b+x-1) (alpha+t_x)^-(r+x)``; summed in logs with log-sum-exp for A3 + A4;
    * ``P(alive) = 1 / (1 + [x>0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x))``, exactly 1 for
      x == 0 (a customer can only drop out right after a repeat purchase);
    * ``E[X(T, T+t)] = P(alive) (a+b+x-1)/(a-1) [1 - ((alpha+T)/(alpha+T+t))^(r+x)
      2F1(r+x, b+x; a+b+x-1; t/(alpha+T+t))]``.  Where ``scipy.special.hyp2f1`` is not
      trustworthy (a within 1e-3 of 1, where the formula is 0/0; non-finite values;
      cancellation in the bracket; a result outside the bounds below) the same expectation is
      computed as ``E_p[(1 - (1 + p t/(alpha+T))^-(r+x)) / p]`` with ``p ~ Beta(a, b+x)`` by
      64-point Gauss-Jacobi quadrature. Bounds: for an alive customer the expectation lies
      between P(at least one purchase) and the no-dropout value ``(r+x) t/(alpha+T)``.
    * ``P(no purchase in (T, T+t]) = 1 - P(alive) + P(alive) ((alpha+T)/(alpha+T+t))^(r+x)``.
      This is exact, not an approximation: given alive, lambda ~ Gamma(r+x, alpha+T) and
      p ~ Beta(a, b+x) independently, and because dropout happens only right after a purchase,
      a customer alive at T who dies inside the window has bought in it; so in-window dropout
      does not add to the zero-purchase probability (it equals the BG/NBD ``P(X(t)=0) =
      (alpha/(alpha+t))^r`` with updated parameters r+x, alpha+T).
    * days to next order: the *median* time until the next purchase, from the distribution
      above, ``(alpha+T) ((P/(P-0.5))^(1/(r+x)) - 1)`` with P = P(alive); when P <= 0.5 the
      median is infinite and ``cap_days`` is returned (the mean is infinite whenever
      P(alive) < 1, since a dead customer never buys).

    Fitting maximises the log-likelihood over log-parameters (alpha is fitted in units of the
    median T, so starts and bounds are scale-free) with L-BFGS-B and an analytic gradient,
    from a data-driven start and then fallback starts. A start counts as converged when the
    optimiser succeeds, no parameter sits at a bound and the observed information matrix is
    positive definite with every log-parameter standard error below ``_MAX_LOG_SE`` (this
    rejects flat ridges, e.g. a single customer). When the dropout probability hardly varies
    between customers the likelihood rises along a ridge ``a, b -> infinity`` (``a/(a+b)``
    fixed): as soon as a start's iterate passes ``a + b > _RIDGE_K`` (both > 1) the remaining
    starts are skipped and the fixed-dropout limit (``a + b = _FIXED_DROPOUT_K``, see
    :func:`_fit_fixed_dropout`) is fitted from that point, so a flat likelihood costs a few
    dozen evaluations and gives the same answer whatever the start. If no start converges,
    :class:`~churnctl.errors.TrainingError` is raised; parameters are never NaN.

Gamma-Gamma (Fader, Hardie & Lee 2005 "RFM and CLV"; Fader & Hardie 2013 note)
    Each purchase value ~ Gamma(p, nu) with nu ~ Gamma(q, v); the mean ``m`` of x purchase
    values has density ``G(px+q)/(G(px)G(q)) v^q m^(px-1) x^(px) / (v+mx)^(px+q)``. It is fitted
    on customers with x > 0 and m > 0 with q constrained above 1 so that the population mean
    spend ``p v/(q-1)`` exists. Conditional expected spend per purchase:
    ``p (v + m x)/(p x + q - 1)``, the population mean for x == 0. The model assumes spend is
    independent of purchase frequency.

Predicted value: ``E[X(T, T+365 days)] * expected spend per purchase``, undiscounted, in the
base currency.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special
from threadpoolctl import threadpool_limits

from . import schema
from .errors import InputError, TrainingError

SUMMARY_COLUMNS = ("frequency", "recency", "T", "monetary_value")
PREDICTION_COLUMNS = (
    "p_alive",
    "expected_orders_horizon",
    "p_no_order_horizon",
    "expected_days_to_next_order",
    "predicted_value_12m",
)

#: A fit whose log-parameter standard error exceeds this is "not identified" (factor e^5 ~ 150).
_MAX_LOG_SE = 5.0
#: Parameter bounds (r, a, b, p, q - 1; alpha and v relative to the data scale).
_LOG_LO, _LOG_HI = math.log(1e-6), math.log(1e6)
_BOUND_EPS = 1e-3
#: Fallback starts (r, a, b) of the BG/NBD fit; alpha starts at r / (observed repeat rate).
_BG_STARTS = ((1.0, 0.8, 2.5), (0.3, 0.5, 1.5), (3.0, 2.0, 8.0), (0.1, 1.0, 1.0), (10.0, 0.3, 5.0))
#: Starts (p, q) of the Gamma-Gamma fit.
_GG_STARTS = ((1.0, 3.0), (4.0, 4.0), (0.5, 2.0), (10.0, 10.0), (2.0, 1.5))
_QUAD_NODES = 64
#: Beta concentration a + b of the fixed-dropout fallback fit (see _fit_fixed_dropout).
_FIXED_DROPOUT_K = 1e4
#: A 4-parameter BG/NBD start whose a + b passes this (both > 1) is on the ridge to the
#: fixed-dropout limit: the Beta's standard deviation is below 0.0016, a point mass in effect.
_RIDGE_K = 10 * _FIXED_DROPOUT_K


# --- data summary -------------------------------------------------------------------------
def summary(orders: pd.DataFrame, as_of: pd.Timestamp, *, time_unit_days: float = 1.0) -> pd.DataFrame:
    """Return one row per customer_id: frequency, recency, T, monetary_value.

    Parameters
    ----------
    orders : pd.DataFrame
        Canonical orders frame; ``customer_id``, ``order_date`` and ``amount`` are used, and
        ``status`` when present (only ``completed`` orders count).
    as_of : pd.Timestamp
        As-of date D; orders with ``order_date < schema.day_end(D)`` are used, later ones ignored.
    time_unit_days : float, default 1.0
        Length of the model's time unit in days (7.0 for weeks).

    Returns
    -------
    pd.DataFrame
        Index ``customer_id`` (str, sorted), one row per customer with at least one completed
        order on or before D: ``frequency`` (int64, repeat purchase days), ``recency`` and ``T``
        (float64, time units) and ``monetary_value`` (float64, mean repeat purchase value).
    """
    if not time_unit_days > 0:
        raise InputError(f"btyd: time_unit_days must be > 0, got {time_unit_days!r}")
    for col in ("customer_id", "order_date", "amount"):
        if col not in orders.columns:
            raise InputError(f"orders: missing required column '{col}'")
    as_of = schema.as_of_timestamp(as_of)
    dates = orders["order_date"]
    keep = (dates < schema.day_end(as_of)).to_numpy(dtype=bool, na_value=False)
    if "status" in orders.columns:
        keep = keep & (orders["status"] == schema.COMPLETED).to_numpy(dtype=bool, na_value=False)
    codes, ids = pd.factorize(orders["customer_id"][keep], sort=True)
    if (codes < 0).any():
        raise InputError(f"orders: customer_id is missing in {int((codes < 0).sum())} completed orders")
    days = dates[keep].to_numpy(dtype="datetime64[ns]").astype("datetime64[D]").astype(np.int64)
    amount = orders["amount"][keep].to_numpy(dtype=np.float64)
    if len(ids):
        # Stable: the orders of one customer and day are summed in input order.
        order = np.argsort(codes.astype(np.int64) * (int(days.max()) - int(days.min()) + 1)
                           + (days - days.min()), kind="stable")
        codes, days, amount = codes[order], days[order], amount[order]
    as_of_day = (as_of - pd.Timestamp(0)).days
    return purchase_summary(pd.Index(ids, name="customer_id"), codes, days, amount, as_of_day,
                            time_unit_days=time_unit_days)


def purchase_summary(index: pd.Index, code: np.ndarray, day: np.ndarray, amount: np.ndarray,
                     as_of_day: int, *, time_unit_days: float = 1.0) -> pd.DataFrame:
    """Return the :func:`summary` of completed orders that are already grouped by customer.

    Parameters
    ----------
    index : pd.Index
        The customers, in code order; every one has at least one order.
    code : ndarray of int
        Customer position in ``index`` per order, non-decreasing.
    day : ndarray of int
        Order day (days since 1970-01-01) per order, non-decreasing within a customer.
    amount : ndarray of float
        Order amount (base currency).
    as_of_day : int
        The as-of day (days since 1970-01-01); every order is on or before it.
    time_unit_days : float, default 1.0

    Returns
    -------
    pd.DataFrame
        As :func:`summary`, indexed by ``index``.
    """
    n_cust = len(index)
    index = pd.Index(index, name="customer_id")
    code = np.asarray(code, dtype=np.int64)
    day = np.asarray(day, dtype=np.int64)
    # One purchase per (customer, day): a new one wherever the customer or the day changes.
    new = np.ones(code.size, dtype=bool)
    new[1:] = (code[1:] != code[:-1]) | (day[1:] != day[:-1])
    day_value = np.bincount(np.cumsum(new) - 1, weights=amount)
    cust = code[new]
    pday = day[new]
    n_days = np.bincount(cust, minlength=n_cust)
    last = np.cumsum(n_days) - 1
    first = last - n_days + 1
    x = n_days - 1
    total = np.bincount(cust, weights=day_value, minlength=n_cust)
    repeat_value = total - day_value[first] if n_cust else np.zeros(0)
    return pd.DataFrame(
        {
            "frequency": x.astype(np.int64),
            "recency": (pday[last] - pday[first]) / time_unit_days if n_cust else np.zeros(0),
            "T": (as_of_day - pday[first]) / time_unit_days if n_cust else np.zeros(0),
            "monetary_value": np.divide(repeat_value, x, out=np.zeros(n_cust), where=x > 0),
        },
        index=index,
    )


# --- helpers --------------------------------------------------------------------------------
def _arrays(x, t_x, T) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return x, t_x, T as validated, broadcast 1-D float64 arrays."""
    arrays = (np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (x, t_x, T))
    x, t_x, T = np.broadcast_arrays(*arrays)
    if x.ndim != 1:
        raise InputError(f"btyd: x, t_x and T must be 1-D, got shape {x.shape}")
    if not (np.isfinite(x).all() and np.isfinite(t_x).all() and np.isfinite(T).all()):
        raise InputError("btyd: x, t_x and T must be finite")
    if (x < 0).any() or (x != np.round(x)).any():
        raise InputError("btyd: frequency x must be a whole number >= 0")
    if (t_x < 0).any() or (t_x > T * (1 + 1e-12) + 1e-12).any():
        raise InputError("btyd: recency t_x must satisfy 0 <= t_x <= T")
    return x, t_x, T


def _factor(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (distinct values, code of each value); hash-based, so fast on millions."""
    codes, uniq = pd.factorize(values)
    return np.asarray(uniq), codes.astype(np.intp)


def _pair_factor(x: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (distinct x, matching distinct T, code of each (x, T) pair)."""
    ux, ix = _factor(x)
    uT, iT = _factor(T)
    key, inv = _factor(ix.astype(np.int64) * len(uT) + iT)
    return ux[key // len(uT)], uT[key % len(uT)], inv


def _converged_result(fun, theta, res, lo, hi, n) -> tuple[bool, str]:
    """Return (converged, reason) for an optimiser result: success, interior, identified."""
    # ABNORMAL_TERMINATION_IN_LNSRCH is L-BFGS-B failing to improve at machine precision,
    # usually at the optimum: the gradient and curvature checks below decide.
    if not res.success and "ABNORMAL" not in str(res.message):
        return False, f"optimiser stopped: {res.message}"
    if not (np.isfinite(theta).all() and np.isfinite(res.fun)):
        return False, "non-finite parameters or likelihood"
    if ((theta - lo) < _BOUND_EPS).any() or ((hi - theta) < _BOUND_EPS).any():
        return False, "a parameter ran to its bound"
    k = len(theta)
    h = 1e-4
    hess = np.empty((k, k))
    for j in range(k):
        step = np.zeros(k)
        step[j] = h
        hess[:, j] = (fun(theta + step)[1] - fun(theta - step)[1]) / (2 * h)
    hess = (hess + hess.T) / 2
    if not np.isfinite(hess).all():
        return False, "non-finite curvature"
    grad = fun(theta)[1]
    if np.abs(grad).max() > 1e-3:
        return False, f"gradient not zero (max |g| = {np.abs(grad).max():.2g})"
    eig = np.linalg.eigvalsh(hess)
    if eig.min() <= 0:
        return False, "likelihood is flat or not concave at the optimum (parameters not identified)"
    se = np.sqrt(np.diag(np.linalg.inv(hess * n)))
    if se.max() > _MAX_LOG_SE:
        return False, f"parameters not identified (log-parameter standard error {se.max():.3g})"
    return True, ""


def _maximise(fun, starts, lo, hi, n, max_iter, stop=None) -> tuple[np.ndarray | None, float, list[str]]:
    """Minimise ``fun`` (mean negative log-likelihood, gradient) from each start in turn.

    Returns the first converged (theta, mean negative LL) and the failure reasons so far;
    theta is None when no start converges.  ``stop``, if given, is called with each accepted
    iterate and returns a reason to give up (on this start and all later ones) or None.
    """
    # One BLAS thread: the likelihood's dot products and L-BFGS-B's own vector work are a few
    # hundred thousand numbers at most, and OpenBLAS worker threads waking for each of them
    # made every evaluation 10-50x slower on a busy 2-core machine (measured).
    with threadpool_limits(limits=1, user_api="blas"):
        return _maximise_starts(fun, starts, lo, hi, n, max_iter, stop)


def _maximise_starts(fun, starts, lo, hi, n, max_iter, stop) -> tuple[np.ndarray | None, float, list[str]]:
    reasons: list[str] = []
    bounds = list(zip(lo, hi, strict=True))
    for start in starts:
        theta0 = np.clip(np.asarray(start, dtype=np.float64), lo + 2 * _BOUND_EPS, hi - 2 * _BOUND_EPS)
        stopped: list[str] = []

        def callback(intermediate_result):  # scipy passes the iterate under this name
            why = stop(intermediate_result.x)
            if why:
                stopped.append(why)
                raise StopIteration

        with np.errstate(all="ignore"):
            res = optimize.minimize(
                fun,
                theta0,
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                callback=None if stop is None else callback,
                options={"maxiter": max_iter, "ftol": 1e-14, "gtol": 1e-8},
            )
            if stopped:
                reasons.append(stopped[0])
                return None, math.nan, reasons
            ok, why = _converged_result(fun, res.x, res, lo, hi, n)
        if ok:
            return res.x, float(res.fun), reasons
        reasons.append(why)
    return None, math.nan, reasons


# --- BG/NBD ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class BGNBDParams:
    """Fitted BG/NBD parameters (alpha in the model's time unit of ``time_unit_days`` days)."""

    r: float
    alpha: float
    a: float
    b: float
    converged: bool
    log_likelihood: float
    n_customers: int
    time_unit_days: float = 1.0


class _BGData:
    """Customers compressed to distinct (x, t_x, T) with counts, times divided by ``scale``.

    One-time buyers contribute ``r log(alpha) - r log(alpha + T)`` only, so they are kept as
    counts per distinct T; the row-level work is done for repeat customers alone.
    """

    def __init__(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, scale: float) -> None:
        ux, ix = _factor(x)
        ut, it = _factor(t_x)
        uT, iT = _factor(T)
        sizes = (len(ux), len(ut), len(uT))
        if math.prod(sizes) < 2**62:  # identical customers are one row with a weight
            key, inv = _factor((ix.astype(np.int64) * sizes[1] + it) * sizes[2] + iT)
            w = np.bincount(inv, minlength=len(key)).astype(np.float64)
            ix, rest = np.divmod(key, sizes[1] * sizes[2])
            it, iT = np.divmod(rest, sizes[2])
        else:
            w = np.ones(len(x))
        self.ux, self.ut, self.uT = ux, ut / scale, uT / scale
        self.pos_u = ux > 0
        self.cnt_x = np.bincount(ix, weights=w, minlength=len(ux))
        zero = ~self.pos_u[ix]
        self.zero_T = np.bincount(iT[zero], weights=w[zero], minlength=len(uT))
        rep = ~zero
        self.ix, self.it, self.iT, self.w = ix[rep], it[rep], iT[rep], w[rep]
        self.k0 = ux[self.ix]  # x of each repeat row
        self.n = float(w.sum())

    def negll(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """Return the mean negative log-likelihood and its gradient in log-parameters."""
        r, al, a, b = np.exp(theta)
        ux, pos, w = self.ux, self.pos_u, self.w
        g, ps = special.gammaln, special.digamma
        # terms of x alone (ln A1 + ln A2), per distinct x
        lnx = g(r + ux) - g(r) + r * math.log(al) + special.betaln(a, b + ux) - special.betaln(a, b)
        bx1 = np.where(pos, b + ux - 1, 1.0)
        LT, Lt = np.log(al + self.uT), np.log(al + self.ut)
        inv_T, inv_t = 1.0 / (al + self.uT), 1.0 / (al + self.ut)
        # repeat customers: ln(A3 + A4) by log-sum-exp
        k = r + self.k0
        LTr, Ltr = LT[self.iT], Lt[self.it]
        l3 = -k * LTr
        l4 = (math.log(a) - np.log(bx1))[self.ix] - k * Ltr
        lse = np.logaddexp(l3, l4)
        ll = self.cnt_x @ lnx + w @ lse - r * (self.zero_T @ LT)
        ww4 = w * np.exp(l4 - lse)  # weight of the "dropped out after the last purchase" term
        ww3 = w - ww4
        dr = self.cnt_x @ (ps(r + ux) - ps(r) + math.log(al)) - ww3 @ LTr - ww4 @ Ltr - self.zero_T @ LT
        dal = (
            r / al * self.n - (ww3 * k) @ inv_T[self.iT] - (ww4 * k) @ inv_t[self.it]
            - r * (self.zero_T @ inv_T)
        )
        da = self.cnt_x @ (ps(a + b) - ps(a + b + ux)) + ww4.sum() / a
        db = self.cnt_x @ (ps(b + ux) - ps(a + b + ux) - ps(b) + ps(a + b)) - ww4 @ (1.0 / bx1)[self.ix]
        grad = np.array([dr * r, dal * al, da * a, db * b])
        return -float(ll) / self.n, -grad / self.n


def _bg_values(params: BGNBDParams | Sequence[float]) -> tuple[float, float, float, float]:
    if isinstance(params, BGNBDParams):
        return params.r, params.alpha, params.a, params.b
    r, alpha, a, b = (float(v) for v in params)
    return r, alpha, a, b


def fit_bgnbd(
    x,
    t_x,
    T,
    *,
    initial: BGNBDParams | Sequence[float] | None = None,
    max_iter: int = 1000,
    time_unit_days: float = 1.0,
) -> BGNBDParams:
    """Return maximum-likelihood BG/NBD parameters fitted on n customers.

    Parameters
    ----------
    x, t_x, T : array-like of shape (n,)
        Repeat purchases, time of last purchase and age, in the model's time unit.
    initial : BGNBDParams or (r, alpha, a, b), optional
        First start; the data-driven start and fallback starts are tried after it if it does
        not converge (none are once a start climbs the fixed-dropout ridge).
    max_iter : int, default 1000
        L-BFGS-B iterations per start.
    time_unit_days : float, default 1.0
        Recorded in the result so day-based predictions convert correctly.

    Returns
    -------
    BGNBDParams
        Finite parameters with ``converged=True`` and the total log-likelihood.

    Raises
    ------
    TrainingError
        No repeat purchases at all, no positive age, or no start converged to an identified
        optimum.
    """
    x, t_x, T = _arrays(x, t_x, T)
    n = len(x)
    n_repeat = int((x > 0).sum())
    if n == 0:
        raise TrainingError("btyd: BG/NBD needs at least one customer, got none")
    if n_repeat == 0:
        raise TrainingError(
            f"btyd: none of {n} customers has a repeat purchase; BG/NBD cannot estimate purchase "
            "and dropout rates"
        )
    pos_T = T[T > 0]
    scale = float(np.median(pos_T)) if len(pos_T) else 0.0
    if scale <= 0:
        raise TrainingError(f"btyd: all {n} customers have age T = 0; BG/NBD needs observed time")
    data = _BGData(x, t_x, T, scale)
    rate = max(float(x.sum() / T.sum()) * scale, 1e-6)  # repeat purchases per scaled unit
    starts = []
    if initial is not None:
        r0, al0, a0, b0 = _bg_values(initial)
        with np.errstate(all="ignore"):
            start = np.log(np.array([r0, al0 / scale, a0, b0], dtype=np.float64))
        starts.append(np.nan_to_num(start, nan=0.0, posinf=_LOG_HI, neginf=_LOG_LO))
    for r0, a0, b0 in _BG_STARTS:
        starts.append(np.log([r0, r0 / rate, a0, b0]))
    lo = np.full(4, _LOG_LO)
    hi = np.full(4, _LOG_HI)
    ridge: list[np.ndarray] = []

    def on_ridge(theta: np.ndarray) -> str | None:
        # Dropout probability Beta(a, b) concentrated far beyond the fixed-dropout limit's: the
        # iterate is climbing the ridge a, b -> infinity (see _fit_fixed_dropout).
        a, b = np.exp(theta[2:])
        if a + b > _RIDGE_K and min(a, b) > 1.0:
            ridge.append(theta.copy())
            return (
                f"dropout probability does not vary between customers (a + b > {_RIDGE_K:.0e}): "
                "likelihood rises towards the fixed-dropout limit"
            )
        return None

    theta, fun, reasons = _maximise(data.negll, starts, lo, hi, data.n, max_iter, stop=on_ridge)
    if theta is None:
        theta, fun, more = _fit_fixed_dropout(data, rate, max_iter, start=ridge[0] if ridge else None)
        reasons += more
    if theta is None:
        raise TrainingError(
            f"btyd: BG/NBD fit did not converge from {len(starts)} starts on {n} customers "
            f"({n_repeat} with repeat purchases): {reasons[-1]}"
        )
    r, al, a, b = np.exp(theta)
    return BGNBDParams(
        r=float(r),
        alpha=float(al * scale),
        a=float(a),
        b=float(b),
        converged=True,
        log_likelihood=float(-fun * data.n) - _scale_shift(x, scale),
        n_customers=n,
        time_unit_days=float(time_unit_days),
    )


def _fit_fixed_dropout(
    data: _BGData, rate: float, max_iter: int, *, start: np.ndarray | None = None
) -> tuple[np.ndarray | None, float, list[str]]:
    """Fit the BG/NBD limit where every customer has the same dropout probability.

    When the dropout probabilities barely vary between customers, the likelihood keeps rising
    as ``a`` and ``b`` grow together with ``a / (a + b)`` fixed: a ridge whose top is at
    infinity, so the 4-parameter fit is (rightly) "not identified".  This fit parametrises
    ``a = mu K``, ``b = (1 - mu) K`` with the concentration ``K`` fixed at
    ``_FIXED_DROPOUT_K`` (a Beta that is a near point mass at ``mu``) and fits ``r``,
    ``alpha`` and ``mu``, which are identified.  Returns the 4 log-parameters (or None) as
    :func:`_maximise` does.  ``start`` (4 log-parameters, e.g. where the 4-parameter fit left
    the ridge) is tried first.
    """
    k = _FIXED_DROPOUT_K

    def fun(phi: np.ndarray) -> tuple[float, np.ndarray]:
        mu = special.expit(phi[2])
        theta = np.array([phi[0], phi[1], math.log(mu * k), math.log((1 - mu) * k)])
        value, g = data.negll(theta)
        return value, np.array([g[0], g[1], g[2] * (1 - mu) - g[3] * mu])

    starts = [np.array([math.log(r0), math.log(r0 / rate), special.logit(m0)])
              for r0, m0 in ((1.0, 0.1), (0.3, 0.03), (3.0, 0.3))]
    if start is not None:
        a, b = np.exp(start[2:])
        starts.insert(0, np.array([start[0], start[1], special.logit(a / (a + b))]))
    lo = np.array([_LOG_LO, _LOG_LO, -15.0])
    hi = np.array([_LOG_HI, _LOG_HI, 15.0])
    phi, value, reasons = _maximise(fun, starts, lo, hi, data.n, max_iter)
    if phi is None:
        return None, math.nan, [f"fixed-dropout fit: {why}" for why in reasons]
    mu = special.expit(phi[2])
    return np.array([phi[0], phi[1], math.log(mu * k), math.log((1 - mu) * k)]), value, []


def _scale_shift(x: np.ndarray, scale: float) -> float:
    """Log-likelihood change from measuring time in units of ``scale``: each purchase-time
    density picks up a factor 1/scale, so LL(original units) = LL(scaled) - sum(x) log(scale)."""
    return float(x.sum()) * math.log(scale)


def bgnbd_log_likelihood(params: BGNBDParams | Sequence[float], x, t_x, T) -> np.ndarray:
    """Return the BG/NBD log-likelihood of each customer, shape (n,).

    Parameters
    ----------
    params : BGNBDParams or (r, alpha, a, b)
    x, t_x, T : array-like of shape (n,)
    """
    r, al, a, b = _bg_values(params)
    x, t_x, T = _arrays(x, t_x, T)
    pos = x > 0
    lnA12 = (
        special.gammaln(r + x) - special.gammaln(r) + r * math.log(al)
        + special.betaln(a, b + x) - special.betaln(a, b)
    )
    l3 = -(r + x) * np.log(al + T)
    bx1 = np.where(pos, b + x - 1, 1.0)
    l4 = np.where(pos, math.log(a) - np.log(bx1) - (r + x) * np.log(al + t_x), -np.inf)
    return lnA12 + np.logaddexp(l3, l4)


def _log_alive_odds_against(r, al, a, b, x, t_x, T) -> np.ndarray:
    """Return log(P(dead)/P(alive)); -inf for x == 0."""
    pos = x > 0
    bx1 = np.where(pos, b + x - 1, 1.0)
    out = math.log(a) - np.log(bx1) + (r + x) * (np.log(al + T) - np.log(al + t_x))
    return np.where(pos, out, -np.inf)


def p_alive(params: BGNBDParams | Sequence[float], x, t_x, T) -> np.ndarray:
    """Return P(alive at T | x, t_x, T) for each customer, shape (n,); exactly 1 when x == 0.

    Parameters
    ----------
    params : BGNBDParams or (r, alpha, a, b)
    x, t_x, T : array-like of shape (n,)
        In the model's time unit.
    """
    r, al, a, b = _bg_values(params)
    x, t_x, T = _arrays(x, t_x, T)
    return special.expit(-_log_alive_odds_against(r, al, a, b, x, t_x, T))


def _quad_alive_orders(r, al, a, b, x, T, t) -> np.ndarray:
    """E[purchases in (T, T+t] | alive] = E_p[(1 - (1 + p c)^-(r+x)) / p], p ~ Beta(a, b+x).

    Gauss-Jacobi quadrature on p = (1 + u)/2, one rule per distinct x (a loop over order
    counts, not customers).
    """
    out = np.empty(len(x))
    c = t / (al + T)
    for xv in np.unique(x):
        sel = x == xv
        u, w = special.roots_jacobi(_QUAD_NODES, b + xv - 1, a - 1)
        p = (1 + u) / 2
        k = r + xv
        g = -np.expm1(-k * np.log1p(np.outer(c[sel], p))) / p
        out[sel] = g @ w / w.sum()
    return out


def _horizon(value: float) -> float:
    horizon = float(value)
    if not (math.isfinite(horizon) and horizon >= 0):
        raise InputError(f"btyd: horizon must be a finite number >= 0, got {value!r}")
    return horizon


def _alive_orders(r, al, a, b, x, T, t) -> np.ndarray:
    """Return E[purchases in (T, T+t] | alive, x, T]; hyp2f1 with a quadrature fallback."""
    if t == 0 or len(x) == 0:
        return np.zeros(len(x))
    # Only x and T matter: evaluate once per distinct pair.
    ux, uT, inv = _pair_factor(x, T)
    k = r + ux
    log_u = -k * np.log1p(t / (al + uT))  # log P(no purchase | alive)
    upper = k * t / (al + uT)  # no-dropout expectation
    lower = -np.expm1(log_u)  # P(at least one purchase | alive)
    with np.errstate(all="ignore"):
        hyp = special.hyp2f1(k, b + ux, a + b + ux - 1, t / (al + uT + t))
        uf = np.exp(log_u) * hyp
        bracket = 1.0 - uf
        val = (a + b + ux - 1) / (a - 1) * bracket
        ok = (
            np.isfinite(val)
            & (abs(a - 1) > 1e-3)
            & (np.abs(uf) < 1e8 * np.abs(bracket))
            & (val >= lower * (1 - 1e-9))
            & (val <= upper * (1 + 1e-9))
        )
    if not ok.all():
        bad = ~ok
        val[bad] = _quad_alive_orders(r, al, a, b, ux[bad], uT[bad], t)
    return np.clip(val, lower, upper)[inv]


def expected_orders(params: BGNBDParams | Sequence[float], x, t_x, T, horizon: float) -> np.ndarray:
    """Return E[purchases in (T, T + horizon] | x, t_x, T] for each customer, shape (n,).

    Parameters
    ----------
    params : BGNBDParams or (r, alpha, a, b)
    x, t_x, T : array-like of shape (n,)
    horizon : float
        Window length in the model's time unit.
    """
    r, al, a, b = _bg_values(params)
    x, t_x, T = _arrays(x, t_x, T)
    return special.expit(-_log_alive_odds_against(r, al, a, b, x, t_x, T)) * _alive_orders(
        r, al, a, b, x, T, _horizon(horizon)
    )


def p_no_order(params: BGNBDParams | Sequence[float], x, t_x, T, horizon: float) -> np.ndarray:
    """Return P(no purchase in (T, T + horizon] | x, t_x, T) for each customer, shape (n,).

    ``1 - P(alive) + P(alive) ((alpha+T)/(alpha+T+horizon))^(r+x)``; exact under BG/NBD (see
    the module docstring for why in-window dropout adds nothing).

    Parameters
    ----------
    params : BGNBDParams or (r, alpha, a, b)
    x, t_x, T : array-like of shape (n,)
    horizon : float
        Window length in the model's time unit.
    """
    r, al, a, b = _bg_values(params)
    x, t_x, T = _arrays(x, t_x, T)
    alive = special.expit(-_log_alive_odds_against(r, al, a, b, x, t_x, T))
    buys_if_alive = -np.expm1(-(r + x) * np.log1p(_horizon(horizon) / (al + T)))
    return 1.0 - alive * buys_if_alive


def expected_days_to_next_order(
    params: BGNBDParams, x, t_x, T, *, cap_days: float = 3650.0
) -> np.ndarray:
    """Return the median number of days from as_of to the next purchase, shape (n,).

    The median of ``P(no purchase by s) = 1 - P + P ((alpha+T)/(alpha+T+s))^(r+x)`` with
    P = P(alive); ``cap_days`` when P <= 0.5 (more likely dead than alive: the median is
    infinite) or when the median exceeds it.

    Parameters
    ----------
    params : BGNBDParams
        Its ``time_unit_days`` converts the model's time unit to days.
    x, t_x, T : array-like of shape (n,)
    cap_days : float, default 3650
        Value for customers who will most likely never buy again.
    """
    r, al, a, b = _bg_values(params)
    x, t_x, T = _arrays(x, t_x, T)
    alive = special.expit(-_log_alive_odds_against(r, al, a, b, x, t_x, T))
    unit = params.time_unit_days if isinstance(params, BGNBDParams) else 1.0
    with np.errstate(all="ignore"):
        log_u = np.log(alive - 0.5) - np.log(alive)  # log P(no purchase by s | alive) at the median
        days = (al + T) * np.expm1(-log_u / (r + x)) * unit
    return np.where((alive > 0.5) & np.isfinite(days), np.minimum(days, cap_days), float(cap_days))


# --- Gamma-Gamma ----------------------------------------------------------------------------
@dataclass(frozen=True)
class GammaGammaParams:
    """Fitted Gamma-Gamma spend parameters (v in the base currency)."""

    p: float
    q: float
    v: float
    converged: bool
    log_likelihood: float = 0.0
    n_customers: int = 0


class _GGData:
    """Repeat customers' x and mean purchase value m (divided by ``scale``)."""

    def __init__(self, x: np.ndarray, m: np.ndarray, scale: float) -> None:
        self.ux, self.ix = _factor(x)
        self.cnt_x = np.bincount(self.ix, minlength=len(self.ux)).astype(np.float64)
        self.x = x
        self.m = m / scale
        self.log_m = np.log(self.m)
        self.log_x = np.log(x)
        self.n = float(len(x))

    def negll(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """Return the mean negative log-likelihood and its gradient in (log p, log(q-1), log v)."""
        p, q1, v = np.exp(theta)
        q = 1.0 + q1
        ux, x, m = self.ux, self.x, self.m
        g, ps = special.gammaln, special.digamma
        px = p * x
        log_vmx = np.log(v + m * x)
        lnx = g(p * ux + q) - g(p * ux)
        ll = (
            self.cnt_x @ lnx - self.n * (g(q) - q * math.log(v))
            + ((px - 1) * self.log_m + px * self.log_x - (px + q) * log_vmx).sum()
        )
        d_p = self.cnt_x @ (ux * (ps(p * ux + q) - ps(p * ux)))
        d_p += (x * (self.log_m + self.log_x - log_vmx)).sum()
        d_q = self.cnt_x @ ps(p * ux + q) - self.n * (ps(q) - math.log(v)) - log_vmx.sum()
        d_v = self.n * q / v - ((px + q) / (v + m * x)).sum()
        grad = np.array([d_p * p, d_q * q1, d_v * v])
        return -float(ll) / self.n, -grad / self.n


def fit_gamma_gamma(x, m, *, max_iter: int = 1000) -> GammaGammaParams:
    """Return maximum-likelihood Gamma-Gamma parameters fitted on the repeat customers.

    Parameters
    ----------
    x : array-like of shape (n,)
        Repeat purchases per customer.
    m : array-like of shape (n,)
        Mean repeat purchase value; customers with x == 0 or m <= 0 are left out of the fit.
    max_iter : int, default 1000
        L-BFGS-B iterations per start.

    Returns
    -------
    GammaGammaParams
        Finite p, q (> 1) and v with ``converged=True``.

    Raises
    ------
    TrainingError
        Fewer than two usable customers, or no start converged to an identified optimum.
    """
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    m = np.atleast_1d(np.asarray(m, dtype=np.float64))
    if x.shape != m.shape:
        raise InputError(f"btyd: x and m must have the same shape, got {x.shape} and {m.shape}")
    use = (x > 0) & (m > 0) & np.isfinite(m) & np.isfinite(x)
    n = int(use.sum())
    if n < 2:
        raise TrainingError(
            "btyd: Gamma-Gamma needs at least 2 customers with repeat purchases of positive value, "
            f"got {n}"
        )
    scale = float(np.mean(m[use]))
    data = _GGData(x[use], m[use], scale)
    # starts at the observed mean spend (1 after scaling): p v / (q - 1) = 1
    starts = [np.log([p0, q0 - 1, (q0 - 1) / p0]) for p0, q0 in _GG_STARTS]
    lo, hi = np.full(3, _LOG_LO), np.full(3, _LOG_HI)
    theta, fun, reasons = _maximise(data.negll, starts, lo, hi, data.n, max_iter)
    if theta is None:
        raise TrainingError(
            f"btyd: Gamma-Gamma fit did not converge from {len(starts)} starts on {n} repeat "
            f"customers: {reasons[-1]}"
        )
    p, q1, v = np.exp(theta)
    return GammaGammaParams(
        p=float(p),
        q=float(1.0 + q1),
        v=float(v * scale),
        converged=True,
        log_likelihood=float(-fun * data.n - n * math.log(scale)),
        n_customers=n,
    )


def gamma_gamma_log_likelihood(params: GammaGammaParams, x, m) -> np.ndarray:
    """Return the log density of each customer's mean purchase value m given x, shape (n,).

    Only meaningful for x > 0 and m > 0.
    """
    x, m = np.broadcast_arrays(
        np.atleast_1d(np.asarray(x, dtype=np.float64)), np.atleast_1d(np.asarray(m, dtype=np.float64))
    )
    p, q, v = params.p, params.q, params.v
    px = p * x
    g = special.gammaln
    with np.errstate(all="ignore"):
        return (
            g(px + q) - g(px) - g(q) + q * math.log(v) + (px - 1) * np.log(m) + px * np.log(x)
            - (px + q) * np.log(v + m * x)
        )


def expected_spend_per_order(params: GammaGammaParams, x, m) -> np.ndarray:
    """Return the conditional expected value of a future purchase, shape (n,).

    ``p (v + m x) / (p x + q - 1)`` for x > 0 (m clipped at 0); the population mean
    ``p v / (q - 1)`` for x == 0.

    Parameters
    ----------
    params : GammaGammaParams
    x, m : array-like of shape (n,)
        Repeat purchases and mean repeat purchase value (base currency).
    """
    x, m = np.broadcast_arrays(
        np.atleast_1d(np.asarray(x, dtype=np.float64)), np.atleast_1d(np.asarray(m, dtype=np.float64))
    )
    p, q, v = params.p, params.q, params.v
    m = np.clip(np.nan_to_num(m, nan=0.0), 0.0, None)
    return np.where(x > 0, p * (v + m * x) / (p * x + q - 1), p * v / (q - 1))


def predicted_value(
    bg: BGNBDParams,
    gg: GammaGammaParams | None,
    x,
    t_x,
    T,
    m,
    horizon_days: float = 365,
    *,
    default_spend: float = math.nan,
) -> np.ndarray:
    """Return the expected spend in the next ``horizon_days`` days, shape (n,), undiscounted.

    ``expected_orders * expected_spend_per_order``. Without a Gamma-Gamma fit (``gg is None``)
    the spend per purchase is the customer's own mean repeat value, or ``default_spend`` for
    customers without one.

    Parameters
    ----------
    bg : BGNBDParams
    gg : GammaGammaParams or None
    x, t_x, T, m : array-like of shape (n,)
        The :func:`summary` columns, times in ``bg.time_unit_days`` units.
    horizon_days : float, default 365
    default_spend : float, default NaN
        Spend per purchase of customers without repeat purchases when ``gg`` is None.
    """
    orders = expected_orders(bg, x, t_x, T, horizon_days / bg.time_unit_days)
    if gg is not None:
        spend = expected_spend_per_order(gg, x, m)
    else:
        x_arr, m_arr = np.broadcast_arrays(
            np.asarray(x, dtype=np.float64), np.asarray(m, dtype=np.float64)
        )
        spend = np.where((x_arr > 0) & (m_arr > 0), m_arr, default_spend)
    return orders * spend


# --- model ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class BTYDModel:
    """BG/NBD + Gamma-Gamma fitted on the completed orders on or before ``as_of``."""

    bgnbd: BGNBDParams
    #: None when the spend model could not be fitted; ``gamma_gamma_error`` says why.
    gamma_gamma: GammaGammaParams | None
    as_of: pd.Timestamp
    time_unit_days: float = 1.0
    #: Mean repeat purchase value of repeat customers; spend fallback when gamma_gamma is None.
    mean_order_value: float = math.nan
    gamma_gamma_error: str | None = None


def fit(
    orders: pd.DataFrame,
    as_of: pd.Timestamp,
    *,
    time_unit_days: float = 1.0,
    precomputed: pd.DataFrame | None = None,
) -> BTYDModel:
    """Return a BTYDModel fitted on the completed orders on or before ``as_of``.

    The Gamma-Gamma part is ``None`` when it cannot be fitted (too few repeat customers, or
    no identified optimum); predictions then fall back to observed spend.

    Parameters
    ----------
    orders : pd.DataFrame
        Canonical orders frame (see :func:`summary`).
    as_of : pd.Timestamp
    time_unit_days : float, default 1.0
        The model's time unit; results do not depend on it beyond rounding.
    precomputed : pd.DataFrame, optional
        ``summary(orders, as_of, time_unit_days=time_unit_days)`` when the caller already has
        it (``orders`` is then not read again).

    Raises
    ------
    TrainingError
        The BG/NBD part cannot be fitted (see :func:`fit_bgnbd`).
    """
    as_of = schema.as_of_timestamp(as_of)
    s = summary(orders, as_of, time_unit_days=time_unit_days) if precomputed is None else precomputed
    x, t_x, T, m = (s[c].to_numpy(dtype=np.float64) for c in SUMMARY_COLUMNS)
    bg = fit_bgnbd(x, t_x, T, time_unit_days=time_unit_days)
    gg, gg_error = None, None
    try:
        gg = fit_gamma_gamma(x, m)
    except TrainingError as exc:
        gg_error = str(exc)
    repeat = (x > 0) & (m > 0)
    mean_value = float(m[repeat].mean()) if repeat.any() else math.nan
    return BTYDModel(bg, gg, as_of, float(time_unit_days), mean_value, gg_error)


def predict(
    model: BTYDModel,
    orders: pd.DataFrame,
    as_of: pd.Timestamp,
    horizon_days: float = 90,
    *,
    precomputed: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Return one row per customer_id with the BTYD predictions at ``as_of``.

    Parameters
    ----------
    model : BTYDModel
    orders : pd.DataFrame
        Canonical orders frame; only completed orders before ``day_end(as_of)`` are read.
    as_of : pd.Timestamp
    horizon_days : float, default 90
        Window ``(as_of, as_of + horizon_days]`` of ``expected_orders_horizon`` and
        ``p_no_order_horizon``.
    precomputed : pd.DataFrame, optional
        ``summary(orders, as_of, time_unit_days=model.time_unit_days)`` when the caller
        already has it.

    Returns
    -------
    pd.DataFrame
        Index ``customer_id``; columns ``PREDICTION_COLUMNS``: ``p_alive``,
        ``expected_orders_horizon``, ``p_no_order_horizon``, ``expected_days_to_next_order``
        and ``predicted_value_12m`` (365 days, base currency).
    """
    if precomputed is None:
        s = summary(orders, as_of, time_unit_days=model.time_unit_days)
    else:
        s = precomputed
    x, t_x, T, m = (s[c].to_numpy(dtype=np.float64) for c in SUMMARY_COLUMNS)
    bg = model.bgnbd
    horizon = horizon_days / model.time_unit_days
    return pd.DataFrame(
        {
            "p_alive": p_alive(bg, x, t_x, T),
            "expected_orders_horizon": expected_orders(bg, x, t_x, T, horizon),
            "p_no_order_horizon": p_no_order(bg, x, t_x, T, horizon),
            "expected_days_to_next_order": expected_days_to_next_order(bg, x, t_x, T),
            "predicted_value_12m": predicted_value(
                bg, model.gamma_gamma, x, t_x, T, m, 365, default_spend=model.mean_order_value
            ),
        },
        index=s.index,
    )
