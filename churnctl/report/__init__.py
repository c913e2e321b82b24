"""The analyst's report: one self-contained HTML page per run (aggregates only).

``aggregates.build`` computes, at score time, the small monthly and per-group count tables a
run folder needs beyond ``scores.csv``; ``data.load_run`` reads a finished run folder;
``page.render`` turns it into HTML with inline SVG figures (matplotlib).  Writing files is left
to ``api``.
"""

from __future__ import annotations

from .aggregates import build as build_aggregates
from .data import RunData, load_run
from .page import render

#: File name of the report inside a run folder.
REPORT_FILE = "report.html"
#: Folder of the aggregate tables inside a run folder.
AGGREGATES_DIR = "aggregates"

__all__ = ["AGGREGATES_DIR", "REPORT_FILE", "RunData", "build_aggregates", "load_run", "render"]
