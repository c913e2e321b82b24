"""The README stays true: it names every command, option, config key and output column."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import typing

import typer.main

from churnctl import features, schema
from churnctl.cli import app
from churnctl.config import Config

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_first_lines_are_the_two_commands():
    head = README.split("\n## ")[0]
    assert "make run" in head and "make test" in head
    assert head.index("make run") < 200


def _commands() -> dict:
    group = typer.main.get_command(app)
    return dict(group.commands)


def test_every_command_and_option_is_documented():
    missing = []
    for name, cmd in _commands().items():
        if f"churnctl {name}" not in README:
            missing.append(name)
        for param in cmd.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and opt not in README:
                    missing.append(f"{name} {opt}")
    for opt in ("--debug", "--verbose", "--quiet", "--version"):
        if opt not in README:
            missing.append(opt)
    assert not missing, missing


def _keys(cls, prefix=""):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}"


def test_every_config_key_is_documented():
    missing = []
    for key in _keys(Config):
        if key.startswith("model.xgboost."):
            key = "model.xgboost.*"
        if f"`{key}`" not in README and not re.search(rf"`{re.escape(key)}`", README):
            missing.append(key)
    assert not missing, missing


def test_every_score_column_is_documented():
    missing = [c for c in schema.SCORE_COLUMNS if c not in README]
    assert not missing, missing


def test_every_feature_is_in_the_readme_table():
    missing = [n for n in features.FEATURES if f"`{n}`" not in README]
    assert not missing, missing


def test_every_reject_reason_is_documented():
    from churnctl import ingest

    missing = [r for r in ingest.REASONS if f"`{r}`" not in README]
    assert not missing, missing


def test_no_machine_paths_in_docs():
    assert "/work/" not in README and "/root/" not in README and "/tmp/" not in README
