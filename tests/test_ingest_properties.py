"""Property: random corruption of data rows never crashes ingest and keeps the accounting."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnctl import ingest
from churnctl.config import IngestConfig

EXPORTS = Path(__file__).parent / "fixtures" / "exports"
CFG = IngestConfig(fx_rates={"USD": 1.0, "EUR": 1.5, "GBP": 1.25})
# Everything but NUL (a NUL in the first block means "binary file", a file-level error).
NOISE = st.binary(min_size=1, max_size=6).map(lambda b: b.replace(b"\x00", b"?"))
EDITS = st.lists(
    st.tuples(st.sampled_from(["insert", "delete", "duplicate", "truncate", "quote", "delimiter", "blank"]),
              st.integers(min_value=0, max_value=10**6), NOISE),
    min_size=1, max_size=8)


def corrupt(text: bytes, edits) -> bytes:
    """Apply edits to the data lines only (the header stays readable)."""
    header, _, body = text.partition(b"\n")
    lines = body.split(b"\n")
    for kind, pos, noise in edits:
        i = pos % max(len(lines), 1)
        line = lines[i] if lines else b""
        at = pos % (len(line) + 1)
        if kind == "insert":
            lines[i] = line[:at] + noise + line[at:]
        elif kind == "delete":
            lines[i] = line[:at] + line[at + len(noise):]
        elif kind == "duplicate":
            lines.insert(i, line)
        elif kind == "truncate":
            lines[i] = line[:at]
        elif kind == "quote":
            lines[i] = line[:at] + b'"' + line[at:]
        elif kind == "delimiter":
            lines[i] = line[:at] + b",;\t"[pos % 3:pos % 3 + 1] + line[at:]
        elif kind == "blank":
            lines.insert(i, b"")
    return header + b"\n" + b"\n".join(lines)


def check_invariant(got: ingest.Loaded) -> None:
    for s in got.stats:
        assert s.read == s.accepted + s.rejected + s.collapsed, s
        assert sum(s.rejected_by_reason.values()) == s.rejected, s
    assert sum(s.accepted for s in got.stats) == len(got.frame)
    assert sum(s.rejected for s in got.stats) == len(got.rejects)
    assert got.frame["order_id"].is_unique


# pyarrow cannot hand a row that is not UTF-8 to the bad-row handler (it reports that as
# unraisable before ingest re-reads the file as Windows-1252): not a failure of ingest.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["canonical_orders.csv", "shopify_orders.csv", "ebay_orders.csv",
                             "woocommerce_orders.csv", "magento_orders.csv"]),
       edits=EDITS)
def test_random_corruption_keeps_the_invariant(tmp_path, name, edits):
    source = (EXPORTS / name).read_bytes()
    if name == "ebay_orders.csv":  # keep the blank line above the header as the platform writes it
        head, rest = source[:1], source[1:]
        data = head + corrupt(rest, edits)
    else:
        data = corrupt(source, edits)
    path = tmp_path / f"corrupt_{name}"
    path.write_bytes(data)
    got = ingest.load_orders([path], CFG, source=name.split("_")[0])
    check_invariant(got)
    if len(got.frame):
        assert got.frame["amount"].ge(0).all()
