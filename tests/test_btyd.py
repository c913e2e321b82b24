"""Tests for the BG/NBD and Gamma-Gamma baselines: known answers, independent numerical checks
(integration, Monte Carlo of the generative process), parameter recovery, degenerate data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from scipy import integrate, optimize, special, stats
from sklearn.metrics import roc_auc_score

from churnctl import btyd
from churnctl.errors import InputError, TrainingError

#: CDNOW parameters published in the BG/NBD paper (time unit: weeks).
CDNOW = (0.243, 4.414, 0.793, 2.426)
AS_OF = pd.Timestamp("2024-03-01")


# --- generators of the BG/NBD process ----------------------------------------------------------
def simulate(n, params, T, horizon=0.0, seed=0):
    """Draw n customers from the BG/NBD process; return x, t_x (by T) and purchases in (T, T+horizon]."""
    r, alpha, a, b = params
    rng = np.random.default_rng(seed)
    T = np.broadcast_to(np.asarray(T, dtype=float), (n,))
    lam, p = rng.gamma(r, 1.0 / alpha, n), rng.beta(a, b, n)
    t, x, t_x, future = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    idx = np.arange(n)
    while len(idx):  # one pass per purchase number, all customers at once
        t_new = t[idx] + rng.exponential(1.0, len(idx)) / lam[idx]
        keep = t_new <= T[idx] + horizon
        idx, t_new = idx[keep], t_new[keep]
        seen = t_new <= T[idx]
        x[idx[seen]] += 1
        t_x[idx[seen]] = t_new[seen]
        future[idx[~seen]] += 1
        t[idx] = t_new
        idx = idx[rng.random(len(idx)) >= p[idx]]
    return x, t_x, future


def simulate_orders(n, params, max_age_days, horizon_days=0.0, seed=0):
    """An orders frame from the BG/NBD process (time unit: days), first purchases spread over
    ``max_age_days`` before the end of AS_OF; orders up to ``horizon_days`` after it too."""
    r, alpha, a, b = params
    rng = np.random.default_rng(seed)
    lam, p = rng.gamma(r, 1.0 / alpha, n), rng.beta(a, b, n)
    age = rng.uniform(0, max_age_days, n)
    who, when = [np.arange(n)], [np.zeros(n)]
    t, idx = np.zeros(n), np.arange(n)
    while len(idx):
        t_new = t[idx] + rng.exponential(1.0, len(idx)) / lam[idx]
        keep = t_new < age[idx] + horizon_days
        idx, t_new = idx[keep], t_new[keep]
        who.append(idx)
        when.append(t_new)
        t[idx] = t_new
        idx = idx[rng.random(len(idx)) >= p[idx]]
    c, days = np.concatenate(who), np.concatenate(when)
    first = (AS_OF + pd.Timedelta(days=1)).to_datetime64() - pd.to_timedelta(age, unit="D").to_numpy()
    return pd.DataFrame(
        {
            "order_id": [f"o{i:07d}" for i in range(len(c))],
            "customer_id": pd.array([f"c{i:05d}" for i in c], dtype="str"),
            "order_date": first[c] + pd.to_timedelta(days, unit="D").to_numpy(),
            "amount": np.round(rng.gamma(6.0, 5.0, len(c)), 2),
            "status": "completed",
        }
    )


@pytest.fixture(scope="module")
def recovered():
    """20k customers of known parameters (CDNOW, weeks, ages 27-39 weeks) and their fit."""
    T = np.random.default_rng(5).uniform(27, 39, 20_000)
    x, t_x, _ = simulate(20_000, CDNOW, T, seed=6)
    return x, t_x, T, btyd.fit_bgnbd(x, t_x, T)


# --- summary -----------------------------------------------------------------------------------
def _orders(rows):
    frame = pd.DataFrame(rows, columns=["order_id", "customer_id", "order_date", "amount", "status"])
    frame["order_date"] = pd.to_datetime(frame["order_date"], format="ISO8601")
    return frame.astype({"order_id": "str", "customer_id": "str"})


ORDERS = _orders(
    [
        ("o1", "c1", "2024-01-01 09:00", 10.0, "completed"),
        ("o2", "c1", "2024-01-01 18:00", 5.0, "completed"),  # same day: one purchase of 15
        ("o3", "c1", "2024-01-11 12:00", 20.0, "completed"),
        ("o4", "c1", "2024-01-31 23:00", 30.0, "completed"),
        ("o5", "c1", "2024-02-15 10:00", 99.0, "cancelled"),
        ("o6", "c2", "2024-02-20 08:00", 40.0, "completed"),
        ("o7", "c2", "2024-02-25 08:00", 50.0, "refunded"),
        ("o8", "c3", "2024-03-01 23:59:59", 12.0, "completed"),  # on the as-of day
        ("o9", "c4", "2024-03-02 00:00", 70.0, "completed"),  # after it
        ("o10", "007", "2024-01-01 00:00", 8.0, "completed"),
        ("o11", "007", "2024-02-01 06:00", 16.0, "completed"),
    ]
)


def test_summary_known_answers():
    got = btyd.summary(ORDERS, AS_OF)
    assert list(got.index) == ["007", "c1", "c2", "c3"]
    assert got.index.name == "customer_id"
    assert list(got.columns) == list(btyd.SUMMARY_COLUMNS)
    assert got.loc["c1"].tolist() == [2, 30.0, 60.0, 25.0]  # Jan 1 -> Jan 31; 60 days to Mar 1
    assert got.loc["c2"].tolist() == [0, 0.0, 10.0, 0.0]
    assert got.loc["c3"].tolist() == [0, 0.0, 0.0, 0.0]
    assert got.loc["007"].tolist() == [1, 31.0, 60.0, 16.0]
    assert got["frequency"].dtype == np.int64


def test_summary_time_unit_and_missing_status():
    weeks = btyd.summary(ORDERS.drop(columns="status"), AS_OF, time_unit_days=7.0)
    assert weeks.loc["c1", "T"] == pytest.approx(60 / 7)
    assert weeks.loc["c1", "frequency"] == 3  # the cancelled order counts when status is absent
    assert weeks.loc["c2", "frequency"] == 1


def test_summary_bad_input():
    with pytest.raises(InputError, match="missing required column 'amount'"):
        btyd.summary(ORDERS.drop(columns="amount"), AS_OF)
    with pytest.raises(InputError, match="time_unit_days"):
        btyd.summary(ORDERS, AS_OF, time_unit_days=0)
    assert btyd.summary(ORDERS, "2023-01-01").empty


# --- log-likelihood, p_alive, expectations against independent computations ---------------------
def _individual_likelihood(lam, p, x, t_x, T):
    value = (1 - p) ** x * lam**x * math.exp(-lam * T)
    if x > 0:
        value += p * (1 - p) ** (x - 1) * lam**x * math.exp(-lam * t_x)
    return value


@pytest.mark.parametrize(
    "x, t_x, T", [(0, 0.0, 38.86), (2, 30.43, 38.86), (1, 1.71, 38.86), (5, 2.0, 30.0)]
)
def test_log_likelihood_matches_numerical_integration(x, t_x, T):
    r, alpha, a, b = CDNOW
    # lambda = u^(1/r), p = s^(1/a) take the prior densities' singularities at 0 out of the integrand
    const = alpha**r / (math.gamma(r) * r) / (special.beta(a, b) * a)

    def integrand(s, u):
        lam, p = u ** (1 / r), s ** (1 / a)
        return _individual_likelihood(lam, p, x, t_x, T) * math.exp(-alpha * lam) * (1 - p) ** (b - 1)

    mixed, _ = integrate.dblquad(integrand, 0, np.inf, 0, 1, epsabs=1e-13, epsrel=1e-10)
    mixed *= const
    assert btyd.bgnbd_log_likelihood(CDNOW, x, t_x, T)[0] == pytest.approx(math.log(mixed), abs=1e-6)


@pytest.mark.parametrize("x, t_x, T", [(0, 0.0, 30.0), (2, 30.0, 38.0), (4, 10.0, 38.0), (1, 2.0, 20.0)])
def test_predictions_match_monte_carlo_of_the_process(x, t_x, T):
    """Draw (lambda, p) from the prior, weight by the likelihood of (x, t_x, T), draw alive/dead
    from the individual likelihood split, and simulate the next 39 weeks of purchases."""
    r, alpha, a, b = CDNOW
    rng = np.random.default_rng(1)
    n, horizon = 400_000, 39.0
    lam, p = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)
    alive_lik = (1 - p) ** x * lam**x * np.exp(-lam * T)
    dead_lik = p * (1 - p) ** (x - 1) * lam**x * np.exp(-lam * t_x) if x > 0 else np.zeros(n)
    w = alive_lik + dead_lik
    w /= w.sum()
    alive = rng.random(n) < alive_lik / (alive_lik + dead_lik)
    count, t, idx = np.zeros(n), np.zeros(n), np.flatnonzero(alive)
    while len(idx):
        t[idx] += rng.exponential(1.0, len(idx)) / lam[idx]
        idx = idx[t[idx] <= horizon]
        count[idx] += 1
        idx = idx[rng.random(len(idx)) >= p[idx]]
    for got, sample in [
        (btyd.p_alive(CDNOW, x, t_x, T)[0], alive),
        (btyd.expected_orders(CDNOW, x, t_x, T, horizon)[0], count),
        (btyd.p_no_order(CDNOW, x, t_x, T, horizon)[0], count == 0),
    ]:
        mean = w @ sample
        se = math.sqrt(np.sum(w**2 * (sample - mean) ** 2))
        assert abs(got - mean) <= 4 * se + 1e-9, (got, mean, se)


def test_p_alive_closed_form_known_values():
    r, alpha, a, b = CDNOW
    got = btyd.p_alive(CDNOW, [0, 0, 2], [0, 0, 30.0], [0, 38.0, 38.0])
    odds = a / (b + 1) * ((alpha + 38) / (alpha + 30)) ** (r + 2)
    np.testing.assert_allclose(got, [1.0, 1.0, 1 / (1 + odds)], rtol=1e-12)


def test_hyp2f1_matches_quadrature_including_a_near_one():
    x = np.array([0, 1, 2, 5, 20, 0, 3.0])
    T = np.array([0, 1, 10, 30, 38, 100, 0.5])
    for a in (0.05, 0.793, 0.99, 1.0011, 2.5, 20.0):
        for r, alpha, b in ((0.243, 4.4, 2.4), (3.0, 50.0, 0.1)):
            for horizon in (0.5, 39.0):
                closed = btyd._alive_orders(r, alpha, a, b, x, T, horizon)
                quad = btyd._quad_alive_orders(r, alpha, a, b, x, T, horizon)
                np.testing.assert_allclose(closed, quad, rtol=1e-7)
    # a == 1 exactly (0/0 in the closed form) is continuous with its neighbours
    at_one = btyd.expected_orders((0.5, 10.0, 1.0, 3.0), x, 0 * x, T, 39.0)
    near = btyd.expected_orders((0.5, 10.0, 1.0 + 1e-6, 3.0), x, 0 * x, T, 39.0)
    np.testing.assert_allclose(at_one, near, rtol=1e-5)


def test_p_no_order_and_median_days():
    r, alpha, a, b = CDNOW
    # one-time buyer: alive for sure, P(no purchase) = E[exp(-lambda t)] under Gamma(r, alpha + T)
    expected = ((alpha + 10) / (alpha + 15)) ** r
    assert btyd.p_no_order(CDNOW, 0, 0, 10.0, 5.0)[0] == pytest.approx(expected, rel=1e-12)
    assert btyd.p_no_order(CDNOW, [3], [5.0], [10.0], 0.0)[0] == 1.0  # empty window
    params = btyd.BGNBDParams(*CDNOW, True, log_likelihood=0.0, n_customers=1, time_unit_days=7.0)
    x, t_x = np.array([0, 1, 6, 2]), np.array([0, 30.0, 37.0, 1.0])
    T = np.array([20.0, 38.0, 38.0, 38.0])
    days = btyd.expected_days_to_next_order(params, x, t_x, T, cap_days=1e6)
    alive = btyd.p_alive(params, x, t_x, T)
    assert (alive[:3] > 0.5).all() and alive[3] < 0.5
    # at the median, P(no purchase yet) is exactly one half
    for i in range(3):
        no_order = btyd.p_no_order(params, x[i], t_x[i], T[i], days[i] / 7)[0]
        assert no_order == pytest.approx(0.5, abs=1e-9)
    assert days[3] == 1e6  # more likely dead than alive: capped
    assert btyd.expected_days_to_next_order(params, x, t_x, T)[3] == 3650.0


def test_bad_horizon_and_inputs():
    with pytest.raises(InputError, match="horizon"):
        btyd.p_no_order(CDNOW, 1, 1.0, 2.0, -1)
    with pytest.raises(InputError, match="t_x <= T"):
        btyd.p_alive(CDNOW, 1, 3.0, 2.0)
    with pytest.raises(InputError, match="whole number"):
        btyd.p_alive(CDNOW, 1.5, 1.0, 2.0)


# --- fitting -------------------------------------------------------------------------------------
def test_parameter_recovery(recovered):
    x, t_x, T, fit = recovered
    got = np.log([fit.r, fit.alpha, fit.a, fit.b])
    # 3.5 standard errors of the log-parameters at n = 20k (0.018, 0.029, 0.083, 0.104)
    assert (np.abs(got - np.log(CDNOW)) < [0.06, 0.10, 0.29, 0.36]).all(), np.exp(got)
    assert fit.converged and fit.n_customers == 20_000
    per_customer = btyd.bgnbd_log_likelihood(fit, x, t_x, T)
    assert fit.log_likelihood == pytest.approx(per_customer.sum(), rel=1e-12)
    # the maximum, and the truth lies inside its 99.9% likelihood-ratio region (chi2, 4 dof)
    ll_true = btyd.bgnbd_log_likelihood(CDNOW, x, t_x, T).sum()
    assert 0 <= 2 * (fit.log_likelihood - ll_true) < stats.chi2.ppf(0.999, 4)


def test_bad_start_reaches_the_same_optimum(recovered):
    x, t_x, T, fit = recovered
    for start in [(1e4, 1e-6, 1e-6, 1e6), (1e4, 1e-6, 1.0, 1.0), (np.nan, np.inf, 0.0, -1.0)]:
        again = btyd.fit_bgnbd(x, t_x, T, initial=start)
        np.testing.assert_allclose(
            [again.r, again.alpha, again.a, again.b], [fit.r, fit.alpha, fit.a, fit.b], rtol=1e-4
        )


def test_fit_is_invariant_to_the_time_unit(recovered):
    x, t_x, T, fit = recovered
    days = btyd.fit_bgnbd(x, t_x * 7, T * 7, time_unit_days=1.0)
    assert days.alpha == pytest.approx(fit.alpha * 7, rel=1e-5)
    assert days.r == pytest.approx(fit.r, rel=1e-5)
    assert days.log_likelihood == pytest.approx(fit.log_likelihood - x.sum() * math.log(7), rel=1e-9)


@pytest.mark.parametrize(
    "x, t_x, T, message",
    [
        ([0, 0, 0], [0, 0, 0], [3.0, 5.0, 9.0], "none of 3 customers has a repeat purchase"),
        ([3], [20.0], [30.0], "did not converge from .* starts on 1 customers"),
        ([0, 0], [0, 0], [0.0, 0.0], "none of 2 customers"),
        ([1, 2], [0.0, 0.0], [0.0, 0.0], "age T = 0"),
        ([], [], [], "at least one customer"),
    ],
)
def test_degenerate_data_raise_training_error(x, t_x, T, message):
    with pytest.raises(TrainingError, match=message):
        btyd.fit_bgnbd(x, t_x, T)


def test_new_customers_with_zero_age_are_fine(recovered):
    x, t_x, T, fit = recovered
    both = btyd.fit_bgnbd(np.r_[x, 0, 0], np.r_[t_x, 0, 0], np.r_[T, 0, 0])
    assert both.log_likelihood == pytest.approx(fit.log_likelihood)  # T = 0 adds log(1) = 0
    assert btyd.p_alive(fit, 0, 0, 0)[0] == 1.0
    assert btyd.p_no_order(fit, 0, 0, 0, 13)[0] == pytest.approx((fit.alpha / (fit.alpha + 13)) ** fit.r)
    assert np.isfinite(btyd.expected_orders(fit, [0, 3], [0, 0], [0, 0], 13)).all()


def test_ranking_by_p_no_order_beats_one_minus_p_alive():
    """The trap: P(alive) = 1 for one-time buyers, so 1 - P(alive) ranks them safest although
    they are the likeliest not to buy."""
    T = np.random.default_rng(7).uniform(0, 52, 20_000)
    x, t_x, future = simulate(20_000, CDNOW, T, horizon=13.0, seed=8)
    fit = btyd.fit_bgnbd(x, t_x, T)
    no_order = future == 0
    auc_p_no_order = roc_auc_score(no_order, btyd.p_no_order(fit, x, t_x, T, 13.0))
    auc_dead = roc_auc_score(no_order, 1 - btyd.p_alive(fit, x, t_x, T))
    assert auc_p_no_order > 0.72
    assert auc_p_no_order > auc_dead + 0.2
    # and the model is calibrated on known data
    assert btyd.p_no_order(fit, x, t_x, T, 13.0).mean() == pytest.approx(no_order.mean(), abs=0.01)
    assert btyd.expected_orders(fit, x, t_x, T, 13.0).sum() == pytest.approx(future.sum(), rel=0.05)


# --- Gamma-Gamma -------------------------------------------------------------------------------
def test_gamma_gamma_recovery_and_density():
    rng = np.random.default_rng(0)
    p, q, v, n = 6.25, 3.74, 15.44, 20_000
    x = 1.0 + rng.poisson(2.0, n)
    nu = rng.gamma(q, 1 / v, n)
    m = rng.gamma(p * x, 1 / (nu * x))
    fit = btyd.fit_gamma_gamma(np.r_[x, 0, 0], np.r_[m, 0, 0])  # one-time buyers are left out
    assert fit.converged and fit.n_customers == n
    np.testing.assert_allclose([fit.p, fit.q, fit.v], [p, q, v], rtol=0.1)
    assert fit.p * fit.v / (fit.q - 1) == pytest.approx(p * v / (q - 1), rel=0.02)
    per_customer = btyd.gamma_gamma_log_likelihood(fit, x, m)
    assert fit.log_likelihood == pytest.approx(per_customer.sum(), rel=1e-12)
    # the marginal density of m integrates to 1 and equals the mixture over nu
    truth = btyd.GammaGammaParams(p, q, v, converged=True)
    total, _ = integrate.quad(
        lambda mm: math.exp(btyd.gamma_gamma_log_likelihood(truth, 3, mm)[0]), 0, np.inf
    )
    assert total == pytest.approx(1.0, abs=1e-8)
    mixed, _ = integrate.quad(
        lambda s: stats.gamma.pdf(20.0, 3 * p, scale=1 / (3 * s)) * stats.gamma.pdf(s, q, scale=1 / v),
        0,
        np.inf,
    )
    assert btyd.gamma_gamma_log_likelihood(truth, 3, 20.0)[0] == pytest.approx(math.log(mixed), abs=1e-8)


def test_expected_spend_per_order_is_the_posterior_mean():
    params = btyd.GammaGammaParams(6.25, 3.74, 15.44, converged=True)
    p, q, v = params.p, params.q, params.v
    # E[p / nu | m, x] with posterior nu ~ Gamma(q + p x, v + m x), by integration
    num, _ = integrate.quad(
        lambda s: p / s * stats.gamma.pdf(s, q + 3 * p, scale=1 / (v + 3 * 20.0)), 0, np.inf
    )
    got = btyd.expected_spend_per_order(params, [3, 0], [20.0, 0.0])
    assert got[0] == pytest.approx(num, rel=1e-8)
    assert got[1] == pytest.approx(p * v / (q - 1))


@pytest.mark.parametrize("x, m", [([1, 2], [10.0, 20.0]), ([1], [5.0]), ([0, 0], [0.0, 0.0])])
def test_gamma_gamma_degenerate(x, m):
    with pytest.raises(TrainingError, match="Gamma-Gamma"):
        btyd.fit_gamma_gamma(x, m)


# --- end to end ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def orders_with_future():
    daily = (0.243, 4.414 * 7, 0.793, 2.426)
    return simulate_orders(4000, daily, max_age_days=365, horizon_days=120, seed=3)


def test_orders_after_as_of_change_nothing(orders_with_future):
    before = orders_with_future[orders_with_future["order_date"] < AS_OF + pd.Timedelta(days=1)]
    assert len(before) < len(orders_with_future)
    assert_frame_equal(btyd.summary(orders_with_future, AS_OF), btyd.summary(before, AS_OF))
    model_all, model_before = btyd.fit(orders_with_future, AS_OF), btyd.fit(before, AS_OF)
    assert model_all == model_before
    assert_frame_equal(
        btyd.predict(model_all, orders_with_future, AS_OF, 90),
        btyd.predict(model_before, before, AS_OF, 90),
    )


def test_precomputed_summary_gives_the_same_model_and_predictions(orders_with_future):
    summ = btyd.summary(orders_with_future, AS_OF)
    model = btyd.fit(orders_with_future, AS_OF)
    assert btyd.fit(orders_with_future.iloc[:0], AS_OF, precomputed=summ) == model
    assert_frame_equal(
        btyd.predict(model, orders_with_future.iloc[:0], AS_OF, 90, precomputed=summ),
        btyd.predict(model, orders_with_future, AS_OF, 90),
    )


def test_add_btyd_summarises_the_orders_once(orders_with_future, monkeypatch):
    from churnctl import model as churn_model

    calls = []
    real = btyd.summary

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(btyd, "summary", counted)
    ids = real(orders_with_future, AS_OF).index[:50]
    out, why = churn_model.add_btyd(pd.DataFrame(index=ids), orders_with_future, AS_OF, 90)
    assert why is None and len(calls) == 1
    expected = btyd.predict(btyd.fit(orders_with_future, AS_OF), orders_with_future, AS_OF, 90)
    np.testing.assert_array_equal(out["p_alive"].to_numpy(), expected.loc[ids, "p_alive"].to_numpy())


def test_fit_predict_frame(orders_with_future):
    model = btyd.fit(orders_with_future, AS_OF)
    assert model.gamma_gamma is not None and model.as_of == AS_OF
    got = btyd.predict(model, orders_with_future, AS_OF, horizon_days=90)
    summ = btyd.summary(orders_with_future, AS_OF)
    assert list(got.columns) == list(btyd.PREDICTION_COLUMNS)
    assert got.index.equals(summ.index) and got.index.name == "customer_id"
    assert np.isfinite(got.to_numpy()).all()
    assert got["p_alive"].between(0, 1).all() and got["p_no_order_horizon"].between(0, 1).all()
    one_time = summ["frequency"] == 0
    assert (got.loc[one_time, "p_alive"] == 1.0).all()
    # spend: expected orders over a year times the Gamma-Gamma spend per order
    x, t_x, T, m = (summ[c].to_numpy(float) for c in btyd.SUMMARY_COLUMNS)
    spend = btyd.expected_spend_per_order(model.gamma_gamma, x, m)
    expected = btyd.expected_orders(model.bgnbd, x, t_x, T, 365) * spend
    np.testing.assert_allclose(got["predicted_value_12m"], expected, rtol=1e-12)


def test_predicted_value_without_gamma_gamma():
    bg = btyd.BGNBDParams(*CDNOW, converged=True, log_likelihood=0.0, n_customers=2, time_unit_days=7.0)
    got = btyd.predicted_value(
        bg, None, [2, 0], [20.0, 0.0], [30.0, 30.0], [40.0, 0.0], 364, default_spend=25.0
    )
    orders = btyd.expected_orders(bg, [2, 0], [20.0, 0.0], [30.0, 30.0], 52)
    np.testing.assert_allclose(got, orders * [40.0, 25.0], rtol=1e-12)


def test_analytic_gradients_match_finite_differences(recovered):
    x, t_x, T, _ = recovered
    bg_data = btyd._BGData(x[:3000], t_x[:3000], T[:3000], scale=33.0)
    gg_data = btyd._GGData(np.array([1.0, 2, 5, 3, 1]), np.array([10.0, 20, 15, 40, 7]), scale=15.0)
    for data, theta in [(bg_data, np.log([0.3, 0.2, 0.9, 2.0])), (gg_data, np.log([2.0, 1.5, 1.2]))]:
        numeric = optimize.approx_fprime(theta, lambda th: data.negll(th)[0], 1e-7)
        np.testing.assert_allclose(data.negll(theta)[1], numeric, rtol=1e-4, atol=1e-7)


def test_predict_is_partition_invariant(orders_with_future):
    model = btyd.fit(orders_with_future, AS_OF)
    whole = btyd.predict(model, orders_with_future, AS_OF)
    low = orders_with_future["customer_id"] < "c02000"
    parts = pd.concat(btyd.predict(model, orders_with_future[mask], AS_OF) for mask in (low, ~low))
    assert_frame_equal(parts.sort_index(), whole)


def test_spend_model_that_cannot_fit_falls_back_to_observed_spend(orders_with_future):
    # every purchase worth exactly 20: no spread in spend, so Gamma-Gamma is not identified
    day = orders_with_future.assign(day=orders_with_future["order_date"].dt.floor("D"))
    flat = orders_with_future[~day.duplicated(["customer_id", "day"])].assign(amount=20.0)
    model = btyd.fit(flat, AS_OF)
    assert model.gamma_gamma is None and "Gamma-Gamma" in model.gamma_gamma_error
    got = btyd.predict(model, flat, AS_OF)
    summ = btyd.summary(flat, AS_OF)
    x, t_x, T, m = (summ[c].to_numpy(float) for c in btyd.SUMMARY_COLUMNS)
    spend = np.where(x > 0, m, 20.0)
    expected = btyd.expected_orders(model.bgnbd, x, t_x, T, 365) * spend
    np.testing.assert_allclose(got["predicted_value_12m"], expected, rtol=1e-12)


def test_predictions_do_not_depend_on_the_time_unit(orders_with_future):
    days = btyd.fit(orders_with_future, AS_OF)
    weeks = btyd.fit(orders_with_future, AS_OF, time_unit_days=7.0)
    assert weeks.bgnbd.alpha == pytest.approx(days.bgnbd.alpha / 7, rel=1e-4)
    assert_frame_equal(
        btyd.predict(weeks, orders_with_future, AS_OF), btyd.predict(days, orders_with_future, AS_OF),
        rtol=1e-4,
    )


def test_nearly_constant_dropout_fits_the_fixed_dropout_limit():
    # Dropout probability almost the same for everyone (Beta(500, 9500) ~ 0.05): the 4-parameter
    # likelihood keeps rising with a and b together, a ridge to infinity that is often "not
    # identified" (the committed sample is so); the fixed-dropout fit returns the identified
    # limit (r, alpha and a / (a + b)).
    T = np.random.default_rng(8).uniform(100, 1000, 4000)
    x, t_x, _ = simulate(4000, (1.8, 90.0, 500.0, 9500.0), T, seed=9)
    data = btyd._BGData(x, t_x, T, float(np.median(T)))
    theta, _, reasons = btyd._fit_fixed_dropout(data, float(x.sum() / T.sum() * np.median(T)), 1000)
    assert theta is not None and not reasons
    r, alpha, a, b = np.exp(theta)
    assert a + b == pytest.approx(btyd._FIXED_DROPOUT_K, rel=1e-9)
    assert a / (a + b) == pytest.approx(0.05, abs=0.015)
    assert r == pytest.approx(1.8, rel=0.15) and alpha * np.median(T) == pytest.approx(90.0, rel=0.15)
    fit = btyd.fit_bgnbd(x, t_x, T)  # the 4-parameter fit climbs the ridge, then this limit
    assert fit.converged and fit.a / (fit.a + fit.b) == pytest.approx(a / (a + b), rel=1e-4)
    assert fit.a + fit.b == pytest.approx(btyd._FIXED_DROPOUT_K, rel=1e-9)
    assert np.isfinite(btyd.p_no_order(fit, x, t_x, T, 90.0)).all()


def test_ridge_is_left_at_once_and_the_limit_does_not_depend_on_the_start(monkeypatch):
    # The first start that climbs the ridge (a + b past _RIDGE_K) ends the 4-parameter search:
    # no restarts from the other starts, one warm-started fixed-dropout fit, so a flat
    # likelihood costs a few dozen evaluations (it used to cost hundreds); and whatever the
    # start, the same limit comes back.
    T = np.random.default_rng(8).uniform(100, 1000, 4000)
    x, t_x, _ = simulate(4000, (1.8, 90.0, 500.0, 9500.0), T, seed=9)
    starts, evals = [], []
    minimize, negll = optimize.minimize, btyd._BGData.negll

    def counted_minimize(fun, x0, **kw):
        starts.append(len(x0))
        return minimize(fun, x0, **kw)

    def counted_negll(self, theta):
        evals.append(1)
        return negll(self, theta)

    monkeypatch.setattr(btyd.optimize, "minimize", counted_minimize)
    monkeypatch.setattr(btyd._BGData, "negll", counted_negll)
    fit = btyd.fit_bgnbd(x, t_x, T)
    assert starts == [4, 3], starts  # one 4-parameter start, one fixed-dropout start
    assert len(evals) < 120, len(evals)
    for start in [(1.0, 50.0, 1e3, 2e5), fit, (0.5, 300.0, 2.0, 30.0)]:
        again = btyd.fit_bgnbd(x, t_x, T, initial=start)
        np.testing.assert_allclose(
            [again.r, again.alpha, again.a, again.b], [fit.r, fit.alpha, fit.a, fit.b], rtol=1e-4
        )


def test_maximise_stop_gives_up_on_every_later_start():
    def fun(theta):
        return float(theta @ theta), 2 * theta

    seen = []

    def stop(theta):
        seen.append(theta.copy())
        return "stopped here"

    lo, hi = np.full(2, -10.0), np.full(2, 10.0)
    theta, value, reasons = btyd._maximise(fun, [np.array([3.0, 4.0]), np.zeros(2)], lo, hi, 100, 50, stop=stop)
    assert theta is None and math.isnan(value) and reasons == ["stopped here"] and len(seen) == 1
    theta, value, reasons = btyd._maximise(fun, [np.array([3.0, 4.0])], lo, hi, 100, 50)
    assert np.allclose(theta, 0.0, atol=1e-6) and reasons == []
