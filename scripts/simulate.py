"""Several consecutive nightly runs over a synthetic sample, with a planted campaign effect.

    python scripts/simulate.py --out sim --customers 3000 --nights 5 --start 2026-05-01

Generates a sample whose history runs to ``start + nights + window_days``, trains a model as of
``start``, then for each night D = start, start + 1, ...: scores as of D with the contact ledger
(``sim/state/churnctl.db``), so cool-downs, caps, holdouts and budgets apply across nights;
reads the night's treated contacts back from the ledger and plants their simulated response
(``sample.treatment_orders``: a treated customer who would not have ordered buys with the
campaign's probability) into the orders the next nights and ``measure`` see. Finally it runs
``churnctl measure`` and prints, per campaign, the estimated uplift in repeat-purchase rate with
its 95% interval next to the planted one (the share of treated customers who bought only because
of the campaign). ``make simulate`` runs it on 3,000 customers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from churnctl import api, ledger, sample
from churnctl.config import Config, ContactConfig, ModelConfig


def simulate(out: Path, *, customers: int = 3000, nights: int = 5, start: date = date(2026, 5, 1),
             window_days: int = 30, seed: int = 7, effects: dict[str, float] | None = None) -> dict:
    """Run the simulation in ``out``; return the measure table, planted uplift and counts per night."""
    out = Path(out)
    end = start + timedelta(days=nights + window_days)
    data = sample.generate(customers, seed=seed, end_date=end)
    sample.write(data, out / "sample")
    base = data.orders
    config = Config(output_dir=str(out / "runs"),
                    model=ModelConfig(path=str(out / "model" / "model.joblib")),
                    contact=ContactConfig(state=str(out / "state" / "churnctl.db")))
    orders_file = out / "orders_simulated.csv"
    base.to_csv(orders_file, index=False, lineterminator="\n")
    inputs = dict(events=out / "sample" / "events.csv", customers=out / "sample" / "customers.csv")
    api.train([orders_file], as_of=start, events=inputs["events"], config=config)
    planted = pd.DataFrame(columns=[*base.columns, "planted_for"])
    nightly = []
    led = ledger.open_ledger(config.contact.state)
    for night in range(nights):
        day = start + timedelta(days=night)
        summary = api.score([orders_file], as_of=day, out=out / "runs" / str(day), config=config,
                            state=config.contact.state, command="run", **inputs)
        counts = summary.manifest["counts"]
        nightly.append({"as_of": str(day), "treated": sum(counts["recipients"].values()),
                        "holdout": sum(counts["holdout"].values()),
                        "cooldown": counts["excluded"]["cooldown"],
                        "campaign_cap": counts["excluded"]["campaign_cap"]})
        tonight = ledger.contacts(led)
        tonight = tonight.loc[tonight["run_id"].eq(str(day)).to_numpy()]
        new = sample.treatment_orders(tonight, base, window_days=window_days, effects=effects, seed=seed + night)
        planted = pd.concat([planted, new], ignore_index=True)
        pd.concat([base, planted.drop(columns="planted_for")], ignore_index=True).to_csv(
            orders_file, index=False, lineterminator="\n")
    table, path = api.measure(config, orders=[orders_file], window_days=window_days, out=out / "measure.csv")
    treated = ledger.contacts(led)
    treated = treated.loc[treated["group_name"].eq("treated").to_numpy()]
    n_treated = treated.groupby("campaign").size()
    truth = (planted.groupby("planted_for").size().reindex(n_treated.index, fill_value=0) / n_treated).round(4)
    return {"table": table, "planted_uplift": truth.to_dict(), "nights": nightly, "measure_csv": str(path)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("sim"))
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--nights", type=int, default=5)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2026, 5, 1))
    parser.add_argument("--window-days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    result = simulate(args.out, customers=args.customers, nights=args.nights, start=args.start,
                      window_days=args.window_days, seed=args.seed)
    print(json.dumps(result["nights"], indent=1))
    pooled = result["table"].loc[result["table"]["run_id"].eq("all")].set_index("campaign")
    pooled = pooled[["treated", "holdout", "uplift_repeat_rate", "uplift_ci_low", "uplift_ci_high", "net_value"]]
    pooled = pooled.assign(planted_uplift=pd.Series(result["planted_uplift"]))
    pooled["covered"] = (pooled["uplift_ci_low"] <= pooled["planted_uplift"]) & (
        pooled["planted_uplift"] <= pooled["uplift_ci_high"])
    print(pooled.to_string())
    print(f"{args.nights} nights on {args.customers} customers in {time.perf_counter() - began:.1f}s; "
          f"measure -> {result['measure_csv']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
