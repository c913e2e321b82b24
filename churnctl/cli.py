"""The ``churnctl`` command line: parse options, make one library call, report to stderr.

Exit codes: 0 success; 2 bad input, configuration, rules or model file; 1 unexpected error.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import __version__

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Tell which customers are about to stop buying, why, and what to do about it.",
)
log = logging.getLogger("churnctl")


class Algo(str, Enum):
    xgboost = "xgboost"
    logistic = "logistic"


# --- shared option types -----------------------------------------------------------------
OrdersOpt = Annotated[
    list[str],
    typer.Option("--orders", help="Orders export: file, glob or SQLAlchemy URL#table (repeat for several).",
                 show_default=False),
]
SourceOpt = Annotated[
    Optional[str],
    typer.Option("--source", help="Orders preset or mapping YAML [default: ingest.source, else detected per file].",
                 show_default=False),
]
EventsOpt = Annotated[Optional[str], typer.Option(help="Engagement/event CSV or SQLAlchemy URL#table (optional).")]
CustomersOpt = Annotated[Optional[str], typer.Option(help="Customers CSV or SQLAlchemy URL#table (optional).")]
AsOfOpt = Annotated[datetime, typer.Option("--as-of", formats=["%Y-%m-%d"], help="As-of date, YYYY-MM-DD.")]
ConfigOpt = Annotated[
    Optional[Path], typer.Option("--config", help="YAML config; built-in defaults when omitted.")
]
ModelOpt = Annotated[Optional[Path], typer.Option("--model", help="Model file [default: config model.path].")]
class Engine(str, Enum):
    pandas = "pandas"
    dask = "dask"


class TableFormat(str, Enum):
    csv = "csv"
    parquet = "parquet"


EngineOpt = Annotated[
    Engine, typer.Option("--engine", help="pandas (one machine) or dask (a Dask cluster; see --scheduler).")
]
SchedulerOpt = Annotated[
    Optional[str],
    typer.Option("--scheduler", help="Dask scheduler address, e.g. tcp://host:8786 (default: start a local cluster)."),
]
FormatOpt = Annotated[TableFormat, typer.Option("--format", help="scores file format: csv or parquet.")]
HorizonOpt = Annotated[
    Optional[int], typer.Option("--horizon-days", min=1, help="Churn horizon in days [default: config, 90].")
]


@contextmanager
def reported(ctx: typer.Context) -> Iterator[None]:
    """Turn library errors into one line and an exit code; tracebacks only with --debug."""
    try:
        yield
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        typer.echo("churnctl: interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001 - the boundary of the program
        if ctx.obj and ctx.obj.get("debug"):
            raise
        code = getattr(exc, "exit_code", 1)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if code == 1:
            message = f"unexpected error: {type(exc).__name__}: {message} (rerun with --debug)"
        typer.echo(f"churnctl: {message}", err=True)
        raise typer.Exit(code) from None


def _config(ctx: typer.Context, path: Path | None, horizon_days: int | None = None,
            source: str | None = None):
    import dataclasses

    from .config import load_config

    cfg = load_config(path)
    if horizon_days is not None:
        cfg = cfg.replace(horizon_days=horizon_days)
    if source is not None:
        cfg = cfg.replace(ingest=dataclasses.replace(cfg.ingest, source=source))
    return cfg


def _setup_logging(verbose: int, quiet: bool) -> None:
    from . import progress

    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s churnctl %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger("churnctl")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # Long stages: a progress bar on a terminal, plain log lines under cron, nothing with --quiet.
    progress.configure(progress.mode_for(sys.stderr, quiet=quiet))


class _StderrHandler(logging.StreamHandler):
    """A stream handler writing to whatever ``sys.stderr`` is now (a progress bar redirects it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _version(value: bool) -> None:
    if value:
        typer.echo(f"churnctl {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log lines.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """churnctl: churn risk, causes and retention campaigns from order exports."""
    ctx.obj = {"debug": debug}
    _setup_logging(verbose, quiet)


@app.command()
def sample(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Folder to write orders.csv, events.csv, customers.csv, truth.csv.")],
    customers: Annotated[int, typer.Option(min=1, help="Number of customers.")] = 2500,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same files).")] = 7,
    end_date: Annotated[
        Optional[datetime], typer.Option("--end-date", formats=["%Y-%m-%d"], help="Last day of history.")
    ] = None,
    years: Annotated[float, typer.Option(min=0.25, help="Years of history.")] = 3.0,
    purchase_rate: Annotated[float, typer.Option(
        "--purchase-rate", min=0.01, max=10.0,
        help="Multiplier of the customers' purchase rates: 2 gives about twice the orders per customer.")] = 1.0,
) -> None:
    """Write a realistic synthetic cross-border order history (deterministic by seed)."""
    from . import api

    with reported(ctx):
        counts = api.make_sample(
            out, customers=customers, seed=seed, end_date=end_date.date() if end_date else None, years=years,
            purchase_rate=purchase_rate,
        )
    typer.echo(", ".join(f"{k}: {v} rows" for k, v in counts.items()) + f" -> {out}", err=True)


@app.command("features")
def features_cmd(
    ctx: typer.Context,
    list_: Annotated[bool, typer.Option("--list", help="List features with cause family and meaning.")] = False,
    orders: OrdersOpt = None,  # type: ignore[assignment]
    events: EventsOpt = None,
    as_of: Annotated[
        Optional[datetime], typer.Option("--as-of", formats=["%Y-%m-%d"], help="As-of date, YYYY-MM-DD.")
    ] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write the features here (.parquet: Parquet, else CSV).")] = None,
    config: ConfigOpt = None,
    source: SourceOpt = None,
    engine: EngineOpt = Engine.pandas,
    scheduler: SchedulerOpt = None,
) -> None:
    """List the feature registry, or compute features at an as-of date."""
    from . import api, features

    with reported(ctx):
        if list_:
            table = features.list_features()
            width = max(len(n) for n in table["name"])
            for row in table.itertuples(index=False):
                typer.echo(f"{row.name:<{width}}  {row.family:<10}  {row.description}")
            return
        if not orders or as_of is None:
            raise _usage("features needs --list, or --orders and --as-of")
        frame = api.build_features(orders, as_of=as_of.date(), events=events, out=out,
                                   config=_config(ctx, config, source=source),
                                   engine=engine.value, scheduler=scheduler)
    typer.echo(f"{len(frame)} customers, {len(features.model_columns(frame))} features"
               + (f" -> {out}" if out else ""), err=True)


class _UsageError(Exception):
    exit_code = 2


def _usage(message: str) -> Exception:
    return _UsageError(message)


@app.command()
def train(
    ctx: typer.Context,
    orders: OrdersOpt,
    as_of: AsOfOpt,
    events: EventsOpt = None,
    model: ModelOpt = None,
    algo: Annotated[Optional[Algo], typer.Option(help="Model family [default: config model.algo].")] = None,
    horizon_days: HorizonOpt = None,
    config: ConfigOpt = None,
    source: SourceOpt = None,
    engine: EngineOpt = Engine.pandas,
    scheduler: SchedulerOpt = None,
    tune: Annotated[bool, typer.Option("--tune", help="Pick XGBoost parameters by time-series CV first.")] = False,
) -> None:
    """Train the churn model on snapshots before the as-of date; write it with metrics.json."""
    from . import api

    with reported(ctx):
        summary = api.train(
            orders, as_of=as_of.date(), events=events, model_path=model,
            algo=algo.value if algo else None, config=_config(ctx, config, horizon_days, source),
            engine=engine.value, scheduler=scheduler, tune=tune,
        )
    m = summary.metrics.get("model", {})
    b = summary.metrics.get("recency_baseline", {})
    typer.echo(
        f"model {summary.model_version} -> {summary.model_path}: ROC-AUC {m.get('roc_auc', float('nan')):.3f}"
        f" (recency baseline {b.get('roc_auc', float('nan')):.3f}), PR-AUC {m.get('pr_auc', float('nan')):.3f},"
        f" Brier {m.get('brier', float('nan')):.3f}, top-decile lift {m.get('top_decile_lift', float('nan')):.2f}",
        err=True,
    )


@app.command()
def score(
    ctx: typer.Context,
    orders: OrdersOpt,
    as_of: AsOfOpt,
    events: EventsOpt = None,
    customers: CustomersOpt = None,
    model: ModelOpt = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("out"),
    rules: Annotated[Optional[Path], typer.Option(help="Rules YAML [default: config rules, else built-in].")] = None,
    horizon_days: HorizonOpt = None,
    config: ConfigOpt = None,
    source: SourceOpt = None,
    state: Annotated[Optional[str], typer.Option(
        help="Contact ledger (SQLite path or SQLAlchemy URL): record the run, apply cool-downs and caps.",
        show_default=False)] = None,
    engine: EngineOpt = Engine.pandas,
    scheduler: SchedulerOpt = None,
    format_: FormatOpt = TableFormat.csv,
) -> None:
    """Score customers; write scores.csv, rejects.csv, campaign CSVs and run.json."""
    from . import api

    with reported(ctx):
        summary = api.score(
            orders, as_of=as_of.date(), out=out, events=events, customers=customers, model_path=model,
            rules_path=rules, config=_config(ctx, config, horizon_days, source), state=state,
            engine=engine.value, scheduler=scheduler, scores_format=format_.value,
        )
    _report_run(summary)


@app.command()
def run(
    ctx: typer.Context,
    config: ConfigOpt = None,
    as_of: Annotated[
        Optional[datetime],
        typer.Option("--as-of", formats=["%Y-%m-%d"], help="As-of date [default: today, UTC]."),
    ] = None,
    orders: Annotated[
        Optional[list[str]], typer.Option("--orders", help="Override inputs.orders.", show_default=False)
    ] = None,
    events: EventsOpt = None,
    customers: CustomersOpt = None,
    out: Annotated[Optional[Path], typer.Option(help="Override output_dir (a dated folder goes inside).")] = None,
    source: SourceOpt = None,
    engine: EngineOpt = Engine.pandas,
    scheduler: SchedulerOpt = None,
    format_: FormatOpt = TableFormat.csv,
) -> None:
    """The nightly job: retrain if needed, score, apply rules, export to <output_dir>/<as_of>/."""
    from . import api

    with reported(ctx):
        summary = api.run(
            _config(ctx, config, source=source), as_of=as_of.date() if as_of else None, orders=orders or None,
            events=events, customers=customers, out_root=out,
            engine=engine.value, scheduler=scheduler, scores_format=format_.value,
        )
    _report_run(summary)


@app.command("report")
def report_cmd(
    ctx: typer.Context,
    run_dir: Annotated[Path, typer.Option("--run", help="Run folder written by `score --out` or `run`.")],
    out: Annotated[Optional[Path], typer.Option(help="Write the page here [default: <run>/report.html].")] = None,
    evaluation: Annotated[
        Optional[Path], typer.Option(help="Folder `churnctl evaluate` wrote [default: looked for beside the run].")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Render a finished run's one-page HTML report (self-contained, aggregates only)."""
    from . import api

    with reported(ctx):
        path = api.write_report(run_dir, config=_config(ctx, config), out=out, evaluation=evaluation)
    typer.echo(f"report ({path.stat().st_size // 1024} KB) -> {path}", err=True)


@app.command("validate")
def validate_cmd(
    ctx: typer.Context,
    orders: OrdersOpt,
    source: SourceOpt = None,
    events: EventsOpt = None,
    customers: CustomersOpt = None,
    out: Annotated[Optional[Path], typer.Option(help="Write rejects.csv here.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Run ingest alone: per-file table of rows read, accepted, rejected, collapsed; rejects.csv."""
    from . import api

    with reported(ctx):
        summary = api.validate(orders, source=source, events=events, customers=customers, out=out,
                               config=_config(ctx, config))
    typer.echo(summary.table)
    if summary.error:
        typer.echo(f"churnctl: {summary.error}", err=True)
        raise typer.Exit(2)


@app.command("measure")
def measure_cmd(
    ctx: typer.Context,
    config: ConfigOpt = None,
    campaign: Annotated[Optional[str], typer.Option(help="Only this campaign.", show_default=False)] = None,
    window_days: Annotated[int, typer.Option(help="Days after the planned send an order counts.")] = 30,
    orders: Annotated[
        Optional[list[Path]], typer.Option("--orders", help="Override inputs.orders.", show_default=False)
    ] = None,
    state: Annotated[Optional[str], typer.Option(
        help="Contact ledger [default: contact.state].", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option(
        help="CSV to write [default: <output_dir>/measure.csv].", show_default=False)] = None,
) -> None:
    """Treated vs holdout per campaign and run: repeat rate, revenue, uplift with 95% CI, net value."""
    from . import api

    with reported(ctx):
        table, path = api.measure(_config(ctx, config), orders=orders, state=state, campaign=campaign,
                                  window_days=window_days, out=out)
    if table.empty:
        typer.echo("no treated or holdout contacts recorded yet", err=True)
    else:
        show = table[["campaign", "run_id", "treated", "holdout", "repeat_rate_treated", "repeat_rate_holdout",
                      "uplift_repeat_rate", "uplift_ci_low", "uplift_ci_high", "net_value", "complete"]]
        typer.echo(show.to_string(index=False))
    typer.echo(f"-> {path}", err=True)


@app.command("evaluate")
def evaluate_cmd(
    ctx: typer.Context,
    orders: OrdersOpt,
    as_of: AsOfOpt,
    events: EventsOpt = None,
    backtests: Annotated[int, typer.Option("--backtests", min=1, help="Number of backtest cutoffs.")] = 3,
    out: Annotated[Path, typer.Option(help="Folder for evaluation.csv, evaluation.json, reliability.csv, curves.csv.")] = Path(
        "evaluation"
    ),
    horizon_days: HorizonOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Backtest the model against recency, BG/NBD and a logistic RFM baseline."""
    from . import api

    with reported(ctx):
        summary = api.evaluate(
            orders, as_of=as_of.date(), events=events, backtests=backtests, out=out,
            config=_config(ctx, config, horizon_days),
        )
    typer.echo(f"backtest at {', '.join(summary.cutoffs)} (all cutoffs pooled):")
    typer.echo(f"{'model':<14}{'ROC-AUC':>9}{'PR-AUC':>9}{'Brier':>8}{'logloss':>9}{'ECE':>7}"
               f"{'capt10':>8}{'lift10':>8}{'capt20':>8}{'lift20':>8}")
    for name, m in summary.overall.items():
        typer.echo(f"{name:<14}{m['roc_auc']:>9.3f}{m['pr_auc']:>9.3f}{m['brier']:>8.3f}{m['log_loss']:>9.3f}"
                   f"{m['ece']:>7.3f}{m['capture_10']:>8.3f}{m['lift_10']:>8.2f}{m['capture_20']:>8.3f}"
                   f"{m['lift_20']:>8.2f}")
    typer.echo(f"-> {out}/evaluation.csv, evaluation.json, reliability.csv, curves.csv", err=True)


@app.command("explain")
def explain_cmd(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(help="Customer id, exactly as in the orders file.")],
    orders: OrdersOpt,
    as_of: AsOfOpt,
    events: EventsOpt = None,
    customers: CustomersOpt = None,
    model: ModelOpt = None,
    rules: Annotated[Optional[Path], typer.Option(help="Rules YAML [default: config rules, else built-in].")] = None,
    horizon_days: HorizonOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Explain one customer's score: features, contributions by cause, reasons, rule and action."""
    from . import api

    with reported(ctx):
        result = api.explain(
            customer_id, orders, as_of=as_of.date(), events=events, customers=customers, model_path=model,
            rules_path=rules, config=_config(ctx, config, horizon_days),
        )
    for line in result.lines():
        typer.echo(line)


def _report_run(summary) -> None:
    tiers = ", ".join(f"{summary.risk_counts.get(t, 0)} {t}" for t in ("high", "medium", "low"))
    camps = ", ".join(f"{k} {v}" for k, v in sorted(summary.campaigns.items())) or "none"
    typer.echo(
        f"scored {summary.customers} customers as of {summary.as_of} ({tiers} risk);"
        f" campaigns: {camps}; rejected rows: {summary.rejected} -> {summary.out}",
        err=True,
    )


def main() -> None:
    """Entry point of the ``churnctl`` script."""
    app()
