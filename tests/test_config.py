from pathlib import Path

import pytest

from churnctl.config import Config, load_config
from churnctl.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_no_file_gives_defaults():
    cfg = load_config(None)
    assert cfg == Config()
    assert cfg.horizon_days == 90
    assert cfg.ingest.max_reject_fraction == 0.05
    assert cfg.model.algo == "xgboost"


def test_file_overrides_only_what_it_names(tmp_path):
    cfg = load_config(write(tmp_path, "horizon_days: 180\nmodel:\n  xgboost: {max_depth: 3}\n"))
    assert cfg.horizon_days == 180
    assert cfg.model.xgboost.max_depth == 3
    assert cfg.model.xgboost.n_estimators == Config().model.xgboost.n_estimators
    assert cfg.model.snapshots == Config().model.snapshots


def test_model_threads_default_and_override(tmp_path):
    assert Config().model.threads == 0  # every core
    assert load_config(write(tmp_path, "model:\n  threads: 1\n")).model.threads == 1
    with pytest.raises(ConfigError, match=r"'model.threads' must be a whole number"):
        load_config(write(tmp_path, "model:\n  threads: all\n"))


def test_unknown_key_suggests(tmp_path):
    p = write(tmp_path, "model:\n  snapshot: 3\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert str(exc.value) == f"{p}: unknown key 'model.snapshot' (did you mean 'model.snapshots'?)"
    assert exc.value.exit_code == 2


def test_wrong_type_names_key(tmp_path):
    p = write(tmp_path, "horizon_days: soon\n")
    with pytest.raises(ConfigError, match=r"'horizon_days' must be a whole number"):
        load_config(p)


def test_invalid_yaml_names_line(tmp_path):
    p = write(tmp_path, "a: [1, 2\nb: 3\n")
    with pytest.raises(ConfigError, match=r"not valid YAML"):
        load_config(p)


def test_yaml_tags_are_not_executed(tmp_path):
    p = write(tmp_path, "seed: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError):
        load_config(p)


def test_relative_paths_resolve_against_config_folder(tmp_path):
    sub = tmp_path / "conf"
    sub.mkdir()
    p = sub / "c.yaml"
    p.write_text("inputs:\n  orders: [../data/o.csv]\nmodel: {path: m.joblib}\nrules: /abs/rules.yaml\n")
    cfg = load_config(p)
    assert cfg.inputs.orders == (str(tmp_path / "data" / "o.csv"),)
    assert cfg.model.path == str(sub / "m.joblib")
    assert cfg.rules == "/abs/rules.yaml"


def test_hash_changes_with_config(tmp_path):
    a = load_config(None).hash()
    b = load_config(write(tmp_path, "horizon_days: 180\n")).hash()
    assert a != b and len(a) == 16


def test_shipped_config_loads():
    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "configs" / "churnctl.yaml")
    assert cfg.inputs.orders and Path(cfg.inputs.orders[0]).name == "orders.csv"
