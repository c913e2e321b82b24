"""Figures of the report: aggregate tables in, inline SVG text out (matplotlib, no pyplot).

Each function takes small aggregate frames (never per-customer data beyond the histogram
counts it computes) and returns one ``<svg>`` element ready to inline: text stays text
(``svg.fonttype: none``, so the page stays small and searchable), rasters (heatmaps) are
embedded PNG, ids are salted per figure so several SVGs can share one page, and no date is
written so the same run gives the same page.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

TIER_COLORS = {"high": "#c0392b", "medium": "#e69b22", "low": "#3a9d5d"}
FAMILY_COLORS = {"price": "#8e44ad", "logistics": "#2e86c1", "service": "#d35400", "product": "#16a085",
                 "engagement": "#c2185b", "activity": "#7f8c8d"}
INK = "#333333"
ACCENT = "#2e86c1"

_RC = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 9,
    "axes.edgecolor": "#999999",
    "axes.labelcolor": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "xtick.color": INK,
    "ytick.color": INK,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "legend.frameon": False,
    "image.interpolation": "nearest",
}
_SIZE_ATTRS = re.compile(r'\s(width|height)="[^"]*"')


def _svg(name: str, title: str, draw: Callable, size: tuple[float, float] = (6.4, 3.2)) -> str:
    """Return the figure drawn by ``draw(fig)`` as an inline, responsive ``<svg>`` element."""
    import matplotlib

    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    with matplotlib.rc_context({**_RC, "svg.hashsalt": f"churnctl-{name}"}):
        fig = Figure(figsize=size, layout=None)
        FigureCanvasSVG(fig)
        draw(fig)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight", pad_inches=0.05)
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    head_end = text.index(">")
    head = _SIZE_ATTRS.sub("", text[:head_end])
    label = title.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    head += f' class="fig" role="img" aria-label="{label}" data-figure="{name}"'
    return head + text[head_end:]


def _pct(v: float) -> str:
    return f"{100 * v:.0f}%"


# --- customer base ----------------------------------------------------------------------
def risk_histogram(p: pd.Series, high: float, medium: float) -> str:
    """Histogram of churn probability (20 bins), bars coloured by the tier they fall in."""
    edges = np.linspace(0, 1, 21)
    counts, _ = np.histogram(np.clip(p.to_numpy(np.float64), 0, 1), bins=edges)
    mids = (edges[:-1] + edges[1:]) / 2
    colors = [TIER_COLORS["high"] if m >= high else TIER_COLORS["medium"] if m >= medium else TIER_COLORS["low"]
              for m in mids]

    def draw(fig):
        ax = fig.subplots()
        ax.bar(mids, counts, width=0.048, color=colors)
        for x, lab in ((medium, "medium"), (high, "high")):
            ax.axvline(x, color=INK, lw=0.8, ls="--")
            ax.text(x, ax.get_ylim()[1], f" {lab} ≥ {x:g}", va="top", ha="left", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_xlabel("churn probability")
        ax.set_ylabel("customers")
    return _svg("risk", "Churn-risk distribution", draw, (6.4, 2.6))


def rfm_grid(counts: np.ndarray, rates: np.ndarray, r_labels: Sequence[str], f_labels: Sequence[str]) -> str:
    """Recency x frequency heat map: colour = mean churn probability, text = customers and rate."""
    def draw(fig):
        ax = fig.subplots()
        masked = np.ma.masked_invalid(rates)
        im = ax.imshow(masked, cmap="RdYlGn_r", vmin=0, vmax=1, aspect="auto")
        for (i, j), n in np.ndenumerate(counts):
            if n:
                ax.text(j, i, f"{int(n)}\n{_pct(rates[i, j])}", ha="center", va="center", fontsize=8, color="black")
        ax.set_xticks(range(len(f_labels)), f_labels)
        ax.set_yticks(range(len(r_labels)), r_labels)
        ax.set_xlabel("frequency (completed orders)")
        ax.set_ylabel("recency (days since last order)")
        ax.spines[:].set_visible(False)
        fig.colorbar(im, ax=ax, label="mean churn probability", shrink=0.8)
    return _svg("rfm", "RFM segment map", draw, (6.4, 3.4))


def cohort_heatmap(table: pd.DataFrame) -> str:
    """Cohort retention heat map: rows cohort months, columns months since first order, % retained."""
    values = table.to_numpy(np.float64)

    def draw(fig):
        ax = fig.subplots()
        im = ax.imshow(np.ma.masked_invalid(values), cmap="Blues", vmin=0, vmax=max(0.05, np.nanmax(
            values[:, 1:]) if values.shape[1] > 1 and np.isfinite(values[:, 1:]).any() else 1), aspect="auto")
        if values.shape[1] <= 13:
            for (i, j), v in np.ndenumerate(values):
                if np.isfinite(v) and j > 0:
                    ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if v > 0.6 * np.nanmax(values[:, 1:]) else "black")
        ax.set_xticks(range(values.shape[1]), [str(c) for c in table.columns])
        ax.set_yticks(range(values.shape[0]), [str(i) for i in table.index], fontsize=7)
        ax.set_xlabel("months since first order")
        ax.set_ylabel("cohort (first-order month)")
        ax.spines[:].set_visible(False)
        fig.colorbar(im, ax=ax, label="share of cohort buying", shrink=0.8,
                     format=lambda x, _: f"{100 * x:.0f}%")
    return _svg("cohorts", "Monthly cohort retention", draw, (6.8, 4.2))


def repeat_rate(monthly: pd.DataFrame) -> str:
    """Buyers per month (bars: new and repeat) with the repeat purchase rate (line)."""
    def draw(fig):
        ax = fig.subplots()
        x = np.arange(len(monthly))
        ax.bar(x, monthly["new_buyers"], color="#b0c4de", label="new buyers")
        ax.bar(x, monthly["repeat_buyers"], bottom=monthly["new_buyers"], color=ACCENT, label="repeat buyers")
        ax.set_ylabel("buyers")
        step = max(1, len(x) // 12)
        ax.set_xticks(x[::step], monthly["month"].iloc[::step], rotation=45, ha="right", fontsize=7)
        ax2 = ax.twinx()
        rate = monthly["repeat_buyers"] / monthly["buyers"].where(monthly["buyers"] > 0)
        ax2.plot(x, rate, color="#c0392b", marker="o", ms=2.5, lw=1.2, label="repeat purchase rate")
        ax2.set_ylim(0, 1)
        ax2.yaxis.set_major_formatter(lambda v, _: f"{100 * v:.0f}%")
        ax2.spines["right"].set_visible(True)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=7)
    return _svg("repeat", "Repeat purchase rate by month", draw, (6.8, 2.8))


# --- causes -----------------------------------------------------------------------------
def cause_bars(counts: pd.Series) -> str:
    """High-risk customers by top cause (horizontal bars)."""
    counts = counts[::-1]

    def draw(fig):
        ax = fig.subplots()
        ax.barh(counts.index, counts.to_numpy(), color=[FAMILY_COLORS.get(c, ACCENT) for c in counts.index])
        total = max(1, counts.sum())
        for i, v in enumerate(counts.to_numpy()):
            ax.text(v, i, f" {int(v)} ({_pct(v / total)})", va="center", fontsize=8)
        ax.set_xlabel("high-risk customers")
        ax.margins(x=0.2)
    return _svg("causes", "Why high-risk customers leave", draw, (6.4, 2.4))


def cause_share_by(table: pd.DataFrame, dim: str, name: str) -> str:
    """100% stacked bars: share of each group's high-risk customers per top cause."""
    shares = table.div(table.sum(axis=1).where(table.sum(axis=1) > 0), axis=0).fillna(0)
    shares = shares.iloc[::-1]

    def draw(fig):
        ax = fig.subplots()
        left = np.zeros(len(shares))
        for fam in shares.columns:
            ax.barh(shares.index, shares[fam].to_numpy(), left=left, color=FAMILY_COLORS.get(fam, ACCENT), label=fam)
            left += shares[fam].to_numpy()
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(lambda v, _: f"{100 * v:.0f}%")
        ax.set_xlabel(f"share of high-risk customers by top cause, per {dim.replace('_', ' ')}")
        ax.legend(ncols=6, loc="lower left", bbox_to_anchor=(0, 1.0), fontsize=7)
    return _svg(name, f"Causes by {dim}", draw, (6.4, 0.9 + 0.22 * len(shares)))


def importance_bars(frame: pd.DataFrame) -> str:
    """The model's most important features, coloured by cause family."""
    frame = frame.iloc[::-1]

    def draw(fig):
        ax = fig.subplots()
        ax.barh(frame["feature"], frame["importance"], color=[FAMILY_COLORS.get(f, ACCENT) for f in frame["family"]])
        ax.xaxis.set_major_formatter(lambda v, _: f"{100 * v:.0f}%")
        ax.set_xlabel("share of the model's importance")
        ax.tick_params(axis="y", labelsize=8)
    return _svg("importance", "Features that matter most", draw, (6.4, 0.8 + 0.2 * len(frame)))


# --- model quality ----------------------------------------------------------------------
def metric_bars(table: pd.DataFrame, name: str = "baselines", colors: list[str | None] | None = None) -> str:
    """Grouped bars: each metric (columns) for the model and its baselines (rows).

    ``colors``: one colour per row (None: the default palette by position).
    """
    palette = [ACCENT, "#95a5a6", "#bdc3c7", "#d5dbdb", "#e5e8e8"]
    fill = [(colors[i] if colors and i < len(colors) else None) or palette[i % len(palette)]
            for i in range(len(table))]
    upright = len(table) > 2  # side by side the values would overlap: written upwards

    def draw(fig):
        axes = fig.subplots(1, len(table.columns))
        axes = np.atleast_1d(axes)
        for ax, metric in zip(axes, table.columns):
            vals = table[metric].to_numpy(np.float64)
            ax.bar(range(len(vals)), np.nan_to_num(vals), color=fill)
            for i, v in enumerate(vals):
                if np.isfinite(v):
                    ax.text(i, v, f" {v:.3f}" if upright else f"{v:.3f}", ha="center", va="bottom", fontsize=7,
                            rotation=90 if upright else 0)
            ax.set_xticks(range(len(vals)), list(table.index), rotation=30, ha="right", fontsize=7)
            ax.set_title(metric.replace(" (lower is better)", "\n(lower is better)")
                         .replace(" (ECE)", "\n(ECE)"), fontsize=8)
            ax.set_ylim(0, max(1e-9, np.nanmax(np.r_[vals, 0])) * (1.45 if upright else 1.18))
        fig.subplots_adjust(wspace=0.45)
    return _svg(name, "Model against baselines", draw, (6.8, 2.6))


def curve(name: str, title: str, series: dict[str, tuple[np.ndarray, np.ndarray]], xlabel: str, ylabel: str,
          diagonal: bool = False, colors: list[str | None] | None = None) -> str:
    """A line chart of one or more curves (ROC, precision-recall, reliability, lift/capture).

    ``colors``: one colour per series (None: the default palette by position).
    """
    palette = [ACCENT, "#e69b22", "#3a9d5d", "#7f8c8d", "#c0392b"]

    def draw(fig):
        ax = fig.subplots()
        for i, (label, (x, y)) in enumerate(series.items()):
            color = (colors[i] if colors and i < len(colors) else None) or palette[i % len(palette)]
            ax.plot(x, y, lw=1.5, marker="o" if len(x) <= 20 else None, ms=3, color=color, label=label)
        if diagonal:
            ax.plot([0, 1], [0, 1], color="#bbbbbb", lw=0.8, ls="--")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        if len(series) > 1 or diagonal:
            ax.legend(fontsize=7)
    return _svg(name, title, draw, (3.3, 3.0))


# --- campaigns and data quality ---------------------------------------------------------
def campaign_bars(table: pd.DataFrame) -> str:
    """Stacked horizontal bars per campaign: recipients, holdout and exclusion columns."""
    table = table.iloc[::-1]
    palette = {"recipients": ACCENT, "holdout": "#f5b041", "no_consent": "#bdc3c7", "unsubscribed": "#95a5a6",
               "no_email": "#7f8c8d"}

    def draw(fig):
        ax = fig.subplots()
        left = np.zeros(len(table))
        for col in table.columns:
            vals = table[col].to_numpy(np.float64)
            ax.barh(table.index, vals, left=left, color=palette.get(col, "#d5dbdb"), label=col.replace("_", " "))
            left += vals
        ax.set_xlabel("customers")
        ax.legend(ncols=5, loc="lower left", bbox_to_anchor=(0, 1.0), fontsize=7)
        ax.tick_params(axis="y", labelsize=8)
    return _svg("campaigns", "Campaign recipients", draw, (6.4, 1.0 + 0.24 * len(table)))


def uplift_chart(frame: pd.DataFrame, label: str, value: str, low: str | None, high: str | None) -> str:
    """Measured uplift per campaign with its confidence interval (error bars)."""
    frame = frame.iloc[::-1]

    def draw(fig):
        ax = fig.subplots()
        y = np.arange(len(frame))
        v = frame[value].to_numpy(np.float64)
        if low and high:
            err = np.vstack([v - frame[low].to_numpy(np.float64), frame[high].to_numpy(np.float64) - v])
            ax.errorbar(v, y, xerr=np.abs(err), fmt="o", color=ACCENT, capsize=3)
        else:
            ax.plot(v, y, "o", color=ACCENT)
        ax.axvline(0, color=INK, lw=0.8)
        ax.set_yticks(y, frame[label].astype(str))
        ax.set_xlabel(value.replace("_", " "))
    return _svg("uplift", "Measured uplift", draw, (6.4, 1.0 + 0.3 * len(frame)))


def reject_bars(counts: pd.Series) -> str:
    """Rejected rows by reason."""
    counts = counts.iloc[::-1]

    def draw(fig):
        ax = fig.subplots()
        ax.barh(counts.index, counts.to_numpy(), color="#95a5a6")
        for i, v in enumerate(counts.to_numpy()):
            ax.text(v, i, f" {int(v)}", va="center", fontsize=8)
        ax.set_xlabel("rejected rows")
        ax.margins(x=0.15)
    return _svg("rejects", "Rejected rows by reason", draw, (6.4, 0.8 + 0.25 * len(counts)))
