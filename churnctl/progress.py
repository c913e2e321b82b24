"""Progress of the long stages: a bar on a terminal, plain log lines under cron, nothing when quiet.

Library code never prints. The stages report through the hooks below, and the program decides
once what they do (the CLI calls :func:`configure`):

* ``"live"`` (stderr is a terminal and no ``--quiet``): a rich progress bar per running task,
  removed when the task ends (the stage's one summary log line stays);
* ``"log"`` (the default, and under cron): a ``<task> started: <detail> (<total>)`` line through
  the ``churnctl`` logger when a task starts, then at most one ``<task> <done>/<total>`` line every
  :attr:`LogReporter.every` seconds while it runs;
* ``"off"`` (``--quiet``): nothing.

``api`` opens one task per long stage (ingest, features, score, export). A stage module can
report how far it is inside the current task without knowing who listens::

    from churnctl import progress

    for start in range(0, n, chunk):
        ...
        progress.update(min(start + chunk, n), total=n)   # or progress.advance(chunk)

Units per stage as ``api`` opens them: ``ingest`` counts bytes of the input files (orders
first, then events, then customers: ``ingest.load_orders`` may call ``update(bytes read so
far)``), ``score`` counts customers, ``export`` its four steps; ``features`` and ``contacts``
have no total yet (a spinner). Outside a task the hooks do nothing, so they cost nothing in
tests or notebooks. Lines hold
counts and names of stages or files only, never an email or a name.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("churnctl")

MODES = ("live", "log", "off")


@dataclass
class Task:
    """One running task: ``name`` (a stage), ``total`` units (None: unknown) and ``done`` so far."""

    name: str
    total: float | None = None
    done: float = 0
    detail: str = ""
    #: "bytes" shows megabytes; anything else plain counts.
    unit: str = ""

    def update(self, done: float, total: float | None = None) -> None:
        """Set how many units are done (and the total when it became known)."""
        self.done = done
        if total is not None:
            self.total = total
        _reporter.update(self)

    def advance(self, n: float = 1) -> None:
        """Add ``n`` units done."""
        self.update(self.done + n)


class Reporter:
    """Shows nothing: the base of the reporters and the ``"off"`` mode."""

    def start(self, task: Task) -> None:
        pass

    def update(self, task: Task) -> None:
        pass

    def stop(self, task: Task) -> None:
        pass


def _amount(task: Task) -> str:
    """Return ``done/total (percent)`` of a task as text ("" when nothing is known yet)."""
    scale, suffix = (1e6, " MB") if task.unit == "bytes" else (1, "")

    def fmt(v: float) -> str:
        return f"{v / scale:,.0f}"

    if task.total:
        return f"{fmt(task.done)}/{fmt(task.total)}{suffix} ({100 * task.done / task.total:.0f}%)"
    return f"{fmt(task.done)}{suffix}" if task.done else ""


class LogReporter(Reporter):
    """Plain, timestamped lines through the ``churnctl`` logger (INFO), for cron and log files.

    ``every``: least seconds between two progress lines of a task (its start line always shows).
    """

    def __init__(self, every: float = 30.0, logger: logging.Logger = log) -> None:
        self.every = every
        self.logger = logger
        self._last: dict[int, float] = {}

    def start(self, task: Task) -> None:
        self._last[id(task)] = time.monotonic()
        size = ""
        if task.total:
            size = f"{task.total / 1e6:,.0f} MB" if task.unit == "bytes" else f"{task.total:,.0f}"
        self.logger.info("%-8s started%s%s", task.name, f": {task.detail}" if task.detail else "",
                         f" ({size})" if size else "")

    def update(self, task: Task) -> None:
        now = time.monotonic()
        if task.total and task.done >= task.total:
            return  # finished: the stage's summary line follows
        if now - self._last.get(id(task), 0.0) >= self.every:
            self._last[id(task)] = now
            self.logger.info("%-8s %s", task.name, _amount(task))

    def stop(self, task: Task) -> None:
        self._last.pop(id(task), None)


class RichReporter(Reporter):
    """A rich progress bar on the terminal, one line per running task, removed when it ends.

    ``console``: where to draw (default: a stderr console). While a bar is shown, rich redirects
    ``sys.stderr`` so log lines print above it instead of through it.
    """

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self._progress: Any = None
        self._ids: dict[int, Any] = {}

    def start(self, task: Task) -> None:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        if self._progress is None:
            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                      TextColumn("{task.fields[amount]}"), TimeElapsedColumn(),
                                      console=self.console, transient=True)
            self._progress.start()
        label = f"{task.name} {task.detail}".strip()
        self._ids[id(task)] = self._progress.add_task(label, total=task.total, completed=task.done,
                                                      amount=_amount(task))

    def update(self, task: Task) -> None:
        if self._progress is not None and id(task) in self._ids:
            self._progress.update(self._ids[id(task)], completed=task.done, total=task.total,
                                  amount=_amount(task))

    def stop(self, task: Task) -> None:
        if self._progress is None:
            return
        tid = self._ids.pop(id(task), None)
        if tid is not None:
            self._progress.refresh()  # draw the final count once before the bar goes
            self._progress.remove_task(tid)
        if not self._ids:
            self._progress.stop()
            self._progress = None


_reporter: Reporter = LogReporter()
_stack: list[Task] = []


def configure(mode: str | Reporter) -> Reporter:
    """Choose what progress does: ``"live"``, ``"log"``, ``"off"`` or a :class:`Reporter`; return the old one."""
    global _reporter
    old = _reporter
    if isinstance(mode, Reporter):
        _reporter = mode
    elif mode == "live":
        _reporter = RichReporter()
    elif mode == "log":
        _reporter = LogReporter()
    elif mode == "off":
        _reporter = Reporter()
    else:
        raise ValueError(f"progress mode must be one of {', '.join(MODES)}, got {mode!r}")
    return old


def mode_for(stream: Any, *, quiet: bool) -> str:
    """Return ``"off"`` when quiet, ``"live"`` when ``stream`` is a terminal, else ``"log"``."""
    if quiet:
        return "off"
    isatty = getattr(stream, "isatty", None)
    return "live" if isatty is not None and isatty() else "log"


@contextmanager
def task(name: str, *, total: float | None = None, detail: str = "", unit: str = "") -> Iterator[Task]:
    """Report a long task (a stage) from start to end; yields the :class:`Task`.

    ``unit="bytes"`` shows amounts in MB (ingest counts the bytes of its input files).
    """
    t = Task(name, total=total, detail=detail, unit=unit)
    _stack.append(t)
    _reporter.start(t)
    try:
        yield t
    finally:
        _stack.remove(t)
        _reporter.stop(t)


def current() -> Task | None:
    """Return the innermost running task, or None."""
    return _stack[-1] if _stack else None


def update(done: float, total: float | None = None) -> None:
    """Hook for stage modules: the current task has ``done`` of ``total`` units (no-op outside a task)."""
    if _stack:
        _stack[-1].update(done, total)


def advance(n: float = 1) -> None:
    """Hook for stage modules: ``n`` more units of the current task are done (no-op outside a task)."""
    if _stack:
        _stack[-1].advance(n)
