"""Shared fixtures: a small generated history and a model trained on it once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLE_AS_OF = "2026-06-30"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def small_sample(tmp_path_factory) -> Path:
    """A 700-customer synthetic history written as CSVs (orders, events, customers, truth)."""
    from churnctl import sample

    out = tmp_path_factory.mktemp("sample")
    sample.write(sample.generate(700, seed=11, end_date=SAMPLE_AS_OF, years=3.0), out)
    return out


@pytest.fixture(scope="session")
def trained_model(small_sample, tmp_path_factory) -> Path:
    """A model trained through the CLI on the small sample; returns its path."""
    from typer.testing import CliRunner

    from churnctl.cli import app

    path = tmp_path_factory.mktemp("model") / "model.joblib"
    result = CliRunner().invoke(
        app,
        ["train", "--orders", str(small_sample / "orders.csv"), "--events", str(small_sample / "events.csv"),
         "--as-of", SAMPLE_AS_OF, "--model", str(path)],
    )
    assert result.exit_code == 0, result.output
    return path
