"""Progress: a bar on a terminal, plain log lines under cron, nothing when quiet; never a print."""

from __future__ import annotations

import io
import logging

import pytest
from rich.console import Console
from typer.testing import CliRunner

from churnctl import api, progress
from churnctl.cli import app

from conftest import SAMPLE_AS_OF


@pytest.fixture(autouse=True)
def restore_reporter():
    old = progress.configure("log")
    yield
    progress.configure(old)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_mode_follows_the_terminal_and_quiet():
    assert progress.mode_for(_Tty(), quiet=False) == "live"
    assert progress.mode_for(io.StringIO(), quiet=False) == "log"  # cron: stderr is a file
    assert progress.mode_for(_Tty(), quiet=True) == "off"
    with pytest.raises(ValueError):
        progress.configure("loud")


def test_log_mode_writes_a_start_line_and_throttled_progress_lines(caplog):
    progress.configure(progress.LogReporter(every=0))
    with caplog.at_level(logging.INFO, logger="churnctl"):
        with progress.task("ingest", total=4_000_000, detail="orders.csv", unit="bytes"):
            progress.advance(1_000_000)
            progress.update(3_000_000)
            progress.update(4_000_000)  # done: the stage's summary line says it
        with progress.task("export", total=4):
            progress.advance()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["ingest   started: orders.csv (4 MB)", "ingest   1/4 MB (25%)", "ingest   3/4 MB (75%)",
                     "export   started (4)", "export   1/4 (25%)"]

    caplog.clear()
    progress.configure(progress.LogReporter(every=3600))  # one line per hour at most: just the start
    with caplog.at_level(logging.INFO, logger="churnctl"):
        with progress.task("score", total=10):
            for _ in range(10):
                progress.advance()
    assert [r.getMessage() for r in caplog.records] == ["score    started (10)"]


def test_hooks_do_nothing_outside_a_task_and_off_mode_is_silent(caplog, capsys):
    progress.configure(progress.LogReporter(every=0))
    with caplog.at_level(logging.DEBUG, logger="churnctl"):
        progress.advance(5)
        progress.update(1, total=2)
        assert progress.current() is None
        progress.configure("off")
        with progress.task("ingest", total=2):
            progress.advance(2)
    assert caplog.records == []
    assert capsys.readouterr() == ("", "")


def test_live_mode_draws_a_bar_on_a_terminal_and_removes_it():
    out = io.StringIO()
    progress.configure(progress.RichReporter(Console(file=out, force_terminal=True, width=100)))
    with progress.task("features", total=200, detail="customers") as task:
        task.update(120)
        assert progress.current() is task
        progress.update(200)
    text = out.getvalue()
    assert "features customers" in text
    assert "200/200 (100%)" in text
    assert "\x1b[" in text  # terminal control codes: a live display, not plain lines
    assert progress.current() is None


def test_api_stage_is_a_progress_task_and_logs_its_summary(caplog):
    progress.configure(progress.LogReporter(every=0))
    timer = api.Timer()
    with caplog.at_level(logging.INFO, logger="churnctl"):
        with timer.stage("export", total=2) as info:
            progress.advance()
            info["files"] = 3
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "export   started (2)"
    assert lines[1] == "export   1/2 (50%)"
    assert lines[2].startswith("export   files=3 (")
    assert "export" in timer.seconds


def test_score_under_cron_logs_stage_lines_and_quiet_logs_none(small_sample, trained_model, tmp_path):
    args = ["score", "--orders", str(small_sample / "orders.csv"), "--events", str(small_sample / "events.csv"),
            "--customers", str(small_sample / "customers.csv"),
            "--as-of", SAMPLE_AS_OF, "--model", str(trained_model)]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    started = [ln.split(" churnctl ", 1)[1] for ln in result.output.splitlines() if " started" in ln]
    assert started[0].startswith("ingest   started: orders.csv, events.csv, customers.csv (") and started[0].endswith(" MB)")
    assert [ln.split()[0] for ln in started] == ["ingest", "contacts", "features", "score", "rules", "export"]
    assert "@" not in result.output  # counts and file names only, never an email

    quiet = CliRunner().invoke(app, ["--quiet", *args, "--out", str(tmp_path / "b")])
    assert quiet.exit_code == 0, quiet.output
    assert " started" not in quiet.output and "churnctl ingest" not in quiet.output
