"""The report in a real browser: headless Chromium opens it from disk, offline.

Asserts no console error, no request besides the page itself, every figure drawn at a non-zero
size, no sideways scrolling at laptop width, and an A4 print; keeps a screenshot and the PDF in
``test-artifacts/`` (or ``$CHURNCTL_TEST_ARTIFACTS``).  Skips, saying why, when Chromium
(``/usr/bin/chromium``, Debian's package, or ``$CHURNCTL_CHROMIUM``) or Playwright is missing.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from churnctl.cli import app

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_AS_OF = "2026-06-30"  # as in conftest.py
CHROMIUM = Path(os.environ.get("CHURNCTL_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("CHURNCTL_TEST_ARTIFACTS", ROOT / "test-artifacts"))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set CHURNCTL_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright not installed (pip install -e '.[test]')")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def report(small_sample, trained_model, tmp_path_factory) -> Path:
    """The page `churnctl run` writes for the small sample (with a copy of the session's model)."""
    tmp = tmp_path_factory.mktemp("browser")
    model = tmp / "model" / trained_model.name
    shutil.copytree(trained_model.parent, model.parent)
    cfg = tmp / "c.yaml"
    cfg.write_text(f"output_dir: {tmp / 'out'}\nmodel: {{path: {model}}}\n"
                   f"inputs:\n  orders: [{small_sample / 'orders.csv'}]\n  events: {small_sample / 'events.csv'}\n"
                   f"  customers: {small_sample / 'customers.csv'}\n")
    result = CliRunner().invoke(app, ["run", "--config", str(cfg), "--as-of", SAMPLE_AS_OF])
    assert result.exit_code == 0, result.output
    return tmp / "out" / SAMPLE_AS_OF / "report.html"


def test_report_opens_offline_with_every_figure_drawn(chromium, report):
    html = report.read_text()
    expected = re.findall(r'data-figure="([^"]+)"', html)
    assert len(expected) >= 12, expected
    page = chromium.new_page(viewport={"width": 1366, "height": 800})
    errors, requests = [], []
    page.on("console", lambda m: errors.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    url = report.resolve().as_uri()
    page.goto(url, wait_until="load")
    sizes = page.eval_on_selector_all(
        "svg.fig", "els => els.map(e => { const r = e.getBoundingClientRect();"
                   " return [e.dataset.figure, r.width, r.height]; })")
    assert [s[0] for s in sizes] == expected
    flat = [s for s in sizes if not (s[1] > 50 and s[2] > 50)]
    assert not flat, f"figures drawn at (near) zero size: {flat}"
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], f"sideways scrolling at laptop width: {widths}"
    sections = page.eval_on_selector_all("section h2", "els => els.map(e => e.textContent)")
    assert sections == ["Headline", "Customer base", "Why customers leave", "Model quality", "Campaigns",
                        "Data quality"]

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    page.emulate_media(media="print")
    pdf = page.pdf(path=str(ARTIFACTS / "report.pdf"), format="A4", print_background=True)
    page.close()
    assert (ARTIFACTS / "report.png").stat().st_size > 50_000
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page[^s]", pdf)) >= 3
    assert not errors, errors
    assert requests == [url], f"requests besides the page itself: {[r for r in requests if r != url][:5]}"
