"""The Dask engine: same features and scores as the pandas engine, on a 2-worker LocalCluster."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from churnctl import api, distributed, features, model, scoring
from churnctl.cli import app
from churnctl.config import Config

pytest.importorskip("dask.dataframe")
pytest.importorskip("distributed")

AS_OF = "2026-06-30"
TS = pd.Timestamp(AS_OF)


@pytest.fixture
def local_client():
    """The engine's cached client on a 2-worker, 1-thread LocalCluster (in-process workers:
    the same pickling of partitions and model, without starting processes)."""
    return distributed.client(None, n_workers=2, processes=False)


@pytest.fixture(scope="module")
def inputs(small_sample):
    return api.load_inputs([small_sample / "orders.csv"], events=small_sample / "events.csv", config=Config())


def _pandas_features(inputs, cfg):
    """The pandas engine's scoring features (features.build plus BG/NBD when model adds them)."""
    if hasattr(model, "scoring_features"):
        return model.scoring_features(inputs.orders, TS, cfg, events=inputs.events)
    return features.build(inputs.orders, TS, events=inputs.events, config=cfg.features)


@pytest.fixture(scope="module", autouse=True)
def _close_cluster():
    yield
    distributed.shutdown()


# --- partitioning -----------------------------------------------------------------------------
def test_split_by_customer_keeps_whole_customers_and_row_order():
    frame = pd.DataFrame({
        "customer_id": ["a", "b", "a", "c", "b", "007", "7", "a"],
        "row": np.arange(8),
    })
    parts = distributed.split_by_customer(frame, 3)
    assert len(parts) == 3
    seen = [set(p["customer_id"]) for p in parts]
    for i in range(3):  # every customer lives in exactly one partition
        for j in range(i + 1, 3):
            assert not seen[i] & seen[j]
    for p in parts:  # rows keep their relative order inside a partition
        assert list(p["row"]) == sorted(p["row"])
    assert sorted(pd.concat(parts)["row"]) == list(range(8))


def test_partition_of_an_id_is_the_same_in_every_frame():
    orders = pd.Series(["C1", "C2", "C3", "C2", "amz-Ab12"])
    events = pd.Series(["amz-Ab12", "C3", "C9", "C1"])
    po = dict(zip(orders, distributed.partition_codes(orders, 4)))
    pe = dict(zip(events, distributed.partition_codes(events, 4)))
    for cid in set(po) & set(pe):
        assert po[cid] == pe[cid]
    assert all(0 <= v < 4 for v in [*po.values(), *pe.values()])


def test_text_hash_depends_on_the_exact_text_only():
    ids = pd.Series(["C1", "C22", "C333", "c1", "C1", "007", "7", "", "Ab12-é"], dtype="str")
    h = distributed.text_hash(ids)
    assert h[0] == h[4] and len(set(h.tolist())) == 8  # equal text, equal hash; others differ
    # the same value hashes the same alone, in another order or as object dtype
    assert distributed.text_hash(ids.iloc[[4, 8, 0]]).tolist() == [h[4], h[8], h[0]]
    assert distributed.text_hash(pd.Series(["C1"], dtype=object))[0] == h[0]


def test_m_scores_known_answer():
    monetary = pd.Series([10.0, 20.0, 20.0, 30.0, 40.0])
    # customers strictly lower: 0, 1, 1, 3, 4 of 5 -> 1 + floor(5 * lower / 5)
    assert list(distributed.m_scores(monetary)) == [1, 2, 2, 4, 5]


def test_n_partitions():
    assert distributed.n_partitions(10, 2) == 2
    assert distributed.n_partitions(1_000_000, 2) == 4


def test_unknown_engine_and_scheduler_without_dask_are_config_errors():
    from churnctl.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown engine 'spark'"):
        distributed.check_engine("spark")
    with pytest.raises(ConfigError, match="--scheduler needs --engine dask"):
        distributed.engine("pandas", "tcp://127.0.0.1:8786")


# --- same results as the pandas engine ----------------------------------------------------------
def test_features_equal_pandas_engine(local_client, inputs):
    cfg = Config()
    eng = distributed.DaskEngine()
    got = eng.scoring_features(inputs.orders, TS, cfg, events=inputs.events)
    want = _pandas_features(inputs, cfg)
    pd.testing.assert_frame_equal(got, want)
    # The population-level column really is redone globally: one partition alone differs.
    part = distributed.split_by_customer(inputs.orders, 2)[0]
    alone = features.build(part, TS, config=cfg.features)
    assert not alone["m_score"].equals(want["m_score"].reindex(alone.index))


def test_scores_equal_pandas_engine_within_1e6(local_client, inputs, trained_model):
    cfg = Config()
    fitted = model.load(trained_model)
    eng = distributed.DaskEngine()
    feats = eng.scoring_features(inputs.orders, TS, cfg, events=inputs.events)
    got = eng.score(feats, fitted, cfg)
    want = scoring.score(_pandas_features(inputs, cfg), fitted, cfg)
    pd.testing.assert_frame_equal(got, want, check_exact=False, atol=1e-6, rtol=0)
    # value_tier is population-level: scoring one partition alone gives other tiers.
    half = feats.iloc[: len(feats) // 2]
    assert not scoring.score(half, fitted, cfg)["value_tier"].equals(want["value_tier"].iloc[: len(half)])
    # Scoring a frame the engine did not build (scattered afresh) gives the same too.
    again = distributed.score(feats, fitted, cfg)
    pd.testing.assert_frame_equal(again, want, check_exact=False, atol=1e-6, rtol=0)


def test_train_on_dask_gives_a_usable_calibrated_model(local_client, inputs, tmp_path):
    cfg = Config()
    fitted = distributed.train(inputs.orders, TS, cfg, events=inputs.events)
    ref = model.build_training_set(inputs.orders, TS, cfg, events=inputs.events)
    m = fitted.meta["metrics"]
    valid = ref["snapshot"] == ref["snapshot"].max()
    assert m["train_rows"] == int((~valid).sum()) and m["valid_rows"] == int(valid.sum())
    assert fitted.features == features.model_columns(ref)
    assert fitted.meta["engine"]["name"] == "dask" and fitted.meta["engine"]["workers"] == 2
    assert m["model"]["roc_auc"] > m["recency_baseline"]["roc_auc"] - 0.05
    assert m["model"]["roc_auc"] > 0.75
    # The artifact round-trips and the pandas engine scores it like the Dask engine does.
    model.save(fitted, tmp_path / "m.joblib")
    loaded = model.load(tmp_path / "m.joblib")
    feats = _pandas_features(inputs, cfg)
    want = scoring.score(feats, loaded, cfg)
    got = distributed.DaskEngine().score(feats, loaded, cfg)
    pd.testing.assert_frame_equal(got, want, check_exact=False, atol=1e-6, rtol=0)


# --- ingest on the workers -----------------------------------------------------------------------
HEADER = "order_id,customer_id,order_date,amount,currency,status,channel,category\n"
#: Records (Arrow counts a blank line as one; a quoted line break does not start one):
#: 2 O1 v1 | 3 O2 v1, two-line value | 4 O3 negative | 5 O1 v2 with "" quotes | 6 blank |
#: 7 O4 bad date | 8 O5 bad number, two-line value with a comma | 9 wrong field count |
#: 10 O7 v1 | 11 O2 v2 (another customer); then blank and empty-field lines only.
ORDERS_A = HEADER + (
    "O1,C1,2026-01-05,10.00,USD,completed,web,books\n"
    'O2,C2,2026-01-06,20.00,USD,completed,web,"two\nlines"\n'
    "O3,C1,2026-01-07,-5.00,USD,completed,web,toys\n"
    'O1,C1,2026-01-08,11.00,USD,completed,app,"say ""hi"""\n'
    "\n"
    "O4,C3,2026-02-30,7.00,USD,completed,web,toys\n"
    'O5,C3,2026-02-01,abc,USD,completed,web,"a,b\nc"\n'
    "O6,C4,2026-02-02,3.00\n"
    "O7,C4,2026-02-03,4.00,USD,completed,shop,books\n"
    "O2,C5,2026-02-04,21.00,USD,completed,web,books\n"
) + "\n,,,,,,,\n" * 12
ORDERS_B = HEADER + (
    "O7,C4,2026-03-01,5.00,USD,completed,web,books\n"
    "O8,C6,2026-03-02,x,USD,completed,web,books\n"
)


def _orders_kind():
    from churnctl import ingest

    return ingest.reader("orders", Config().ingest)


def _same_as_pandas(loader, paths, block_bytes, **kwargs):
    """Load with both engines; assert frame, rejects and per-file stats are identical."""
    from churnctl import ingest

    want = getattr(ingest, loader)(paths, Config().ingest, **kwargs)
    got = getattr(distributed.DaskEngine(block_bytes=block_bytes), loader)(paths, Config().ingest, **kwargs)
    pd.testing.assert_frame_equal(got.frame, want.frame)
    pd.testing.assert_frame_equal(got.rejects, want.rejects)
    assert [s.as_dict() for s in got.stats] == [s.as_dict() for s in want.stats]
    return got


def test_byte_ranges_end_at_record_ends_with_whole_file_line_offsets(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(ORDERS_A)
    data = path.read_bytes()
    ranges = distributed.byte_ranges(str(path), _orders_kind(), block_bytes=40)
    assert ranges is not None and len(ranges) >= 8
    assert ranges[0][0] == len(HEADER) and ranges[-1][1] == len(data)
    for (a, b, offset), nxt in zip(ranges, ranges[1:]):
        assert b == nxt[0] and data[b - 1:b] == b"\n"
        # the records before each range: newlines outside quotes since the header
        assert nxt[2] == sum(1 for i in range(len(HEADER), b) if data[i] == 10 and data[:i].count(b'"') % 2 == 0)
    starts = {a for a, _, _ in ranges}
    assert data.index(b"two\nlines") + 4 not in starts  # never just after a quoted line break
    assert data.index(b"a,b\nc") + 4 not in starts


def test_read_file_returns_accepted_rows_not_yet_de_duplicated(tmp_path):
    from churnctl import ingest

    path = tmp_path / "a.csv"
    path.write_text(ORDERS_A)
    got = ingest.read_file(path, _orders_kind())
    frame, [s] = got.frame, got.stats
    # both versions of O1 and O2 are still there: combining files is the caller's job
    assert frame["order_id"].tolist() == ["O1", "O2", "O1", "O7", "O2"]
    assert (s.read, s.accepted, s.rejected, s.collapsed) == (9, 5, 4, 0)
    assert got.rejects[["line", "reason"]].values.tolist() == [
        [4, "negative amount"], [7, "unparsable date"], [8, "unparsable number"], [9, "wrong field count"]]
    # categories of this file's accepted rows only ("toys" was on rejected rows)
    assert frame["channel"].cat.categories.tolist() == ["app", "shop", "web"]
    assert frame["category"].cat.categories.tolist() == ["books", 'say "hi"', "two\nlines"]


def test_concat_unions_differing_categories():
    a = pd.DataFrame({"channel": pd.Categorical(["web"]), "x": [1]})
    b = pd.DataFrame({"channel": pd.Categorical(["app", "shop"]), "x": [2, 3]})
    got = distributed._concat(a, b)
    assert isinstance(got["channel"].dtype, pd.CategoricalDtype)
    assert got["channel"].cat.categories.tolist() == ["app", "shop", "web"]
    assert got["channel"].tolist() == ["web", "app", "shop"] and got["x"].tolist() == [1, 2, 3]


def test_ingest_on_workers_equals_pandas_engine_known_answers(local_client, tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text(ORDERS_A)
    b.write_text(ORDERS_B)
    paths = [a, b]
    assert len(distributed.byte_ranges(str(a), _orders_kind(), 40)) >= 8
    got = _same_as_pandas("load_orders", paths, 40)
    frame = got.frame
    # later line wins inside a file (O1, O2 even with another customer), later file across files (O7)
    assert frame["order_id"].tolist() == ["O1", "O2", "O7"]
    assert frame["customer_id"].tolist() == ["C1", "C5", "C4"]
    assert frame["amount"].tolist() == [11.0, 21.0, 5.0]
    assert frame["category"].tolist() == ['say "hi"', "books", "books"]
    rej = got.rejects
    assert rej[["file", "line", "column", "reason"]].values.tolist() == [
        [str(a), 4, "amount", "negative amount"],
        [str(a), 7, "order_date", "unparsable date"],
        [str(a), 8, "amount", "unparsable number"],
        [str(a), 9, "", "wrong field count"],
        [str(b), 3, "amount", "unparsable number"],
    ]
    sa, sb = got.stats
    assert (sa.read, sa.accepted, sa.rejected, sa.collapsed) == (9, 2, 4, 3)
    assert (sb.read, sb.accepted, sb.rejected, sb.collapsed) == (2, 1, 1, 0)
    assert sa.read == sa.accepted + sa.rejected + sa.collapsed
    # described from every valid row, replaced versions included (C1, C2, C4, C5); C1 (web, app)
    # and C4 (shop here, web in b.csv) ordered on two channels
    assert sa.customers == 4 and sa.first_date == "2026-01-05" and sa.last_date == "2026-02-04"
    assert sa.merged_customers == 2


def test_ingest_on_workers_events_and_customers_equal_pandas_engine(local_client, tmp_path):
    events = tmp_path / "events.csv"
    rows = ["customer_id,event_time,event_type,topic\n"]
    for i in range(60):
        rows.append(f"C{i % 3},2026-01-{1 + i % 5:02d},{'email_open' if i % 11 else 'teleport'},\n")
    events.write_text("".join(rows))
    got = _same_as_pandas("load_events", [events], 64)
    s = got.stats[0]  # 15 distinct events, 4 copies each, 6 rows rejected (i = 0, 11, ..., 55)
    assert (s.read, s.accepted, s.rejected, s.collapsed) == (60, 15, 6, 39)
    assert s.rejected_by_reason == {"unknown event type": 6}
    c1, c2 = tmp_path / "c1.csv", tmp_path / "c2.csv"
    c1.write_text("customer_id,email,marketing_consent\n" + "".join(
        f"C{i},c{i}@example.com,{'yes' if i % 2 else 'maybe'}\n" for i in range(30)) + "C1,new@example.com,no\n")
    c2.write_text("customer_id,email,marketing_consent\nC3,later@example.com,true\n")
    got = _same_as_pandas("load_customers", [c1, c2], 50)
    by_id = got.frame.set_index("customer_id")
    assert by_id.loc["C1", "email"] == "new@example.com" and by_id.loc["C3", "email"] == "later@example.com"


def test_ingest_on_workers_reports_a_bad_file_like_the_pandas_engine(local_client, tmp_path):
    from churnctl.errors import InputError

    missing = tmp_path / "nope.csv"
    with pytest.raises(InputError, match=f"^{missing}: orders file not found$"):
        distributed.DaskEngine().load_orders([missing], Config().ingest)
    header_only = tmp_path / "empty.csv"
    header_only.write_text(HEADER + "\n" * 400)  # cut into ranges of blank lines only
    with pytest.raises(InputError, match=r"empty\.csv: empty file \(header but no rows\)$"):
        distributed.DaskEngine(block_bytes=100).load_orders([header_only], Config().ingest)


def test_ingest_runs_on_the_client_when_workers_do_not_see_the_files(local_client, tmp_path, monkeypatch):
    a = tmp_path / "a.csv"
    a.write_text(ORDERS_A)
    assert distributed._workers_see(local_client, [a])
    assert not distributed._workers_see(local_client, ["sqlite:///shop.db#orders"])
    monkeypatch.setattr(distributed, "_workers_see", lambda c, paths: False)  # a remote cluster
    eng = distributed.DaskEngine(block_bytes=40)
    got = _same_as_pandas("load_orders", [a], 40)
    assert got.frame["order_id"].tolist() == ["O1", "O7", "O2"]
    eng.load_orders([a], Config().ingest)
    assert eng._ingested == {}  # nothing left on the workers: features send the rows


@pytest.mark.parametrize("case", ["stray quote", "unclosed quote", "gzip", "not utf-8 further down"])
def test_ingest_on_workers_reads_unsplittable_files_whole_and_equal(local_client, tmp_path, case):
    import gzip

    body = "".join(f"O{i},C{i % 9},2026-01-{1 + i % 20:02d},{i}.50,USD,completed,web,books\n" for i in range(1500))
    path = tmp_path / "orders.csv"
    if case == "stray quote":  # a literal quote inside an unquoted value: parity says nothing
        path.write_text(HEADER + body + 'O9x,C1,2026-01-02,3.00,USD,completed,web,27" screen\n' + body)
    elif case == "unclosed quote":
        path.write_text(HEADER + body + 'O9x,C1,2026-01-02,3.00,USD,completed,web,"open\n' + body)
    elif case == "gzip":
        path = tmp_path / "orders.csv.gz"
        path.write_bytes(gzip.compress((HEADER + body).encode()))
    else:  # Windows-1252 text after the first 64 KiB: the whole file is read again as such
        path.write_bytes((HEADER + body + body).encode() + "O9x,C1,2026-01-02,3.00,USD,completed,web,caf\u00e9\n".encode("cp1252"))
    ranges = distributed.byte_ranges(str(path), _orders_kind(), 8 << 10)
    later = tmp_path / "later.csv"  # a later file's version of an order still wins
    later.write_text(HEADER + "O3,C3,2026-04-01,9.00,USD,completed,web,books\n")
    if case == "not utf-8 further down":
        assert ranges is not None and len(ranges) > 4  # cut, then read whole after the first range said so
    else:
        assert ranges is None
    got = _same_as_pandas("load_orders", [path, later], 8 << 10)
    assert got.frame["order_id"].tolist()[-1] == "O3" and got.frame["amount"].iloc[-1] == 9.0
    if case == "unclosed quote":
        assert "broken quoting" in got.stats[0].rejected_by_reason
    if case == "not utf-8 further down":
        assert got.stats[0].warnings and "caf\u00e9" in got.frame["category"].tolist()


# --- CLI ------------------------------------------------------------------------------------------
def _score(sample, model_path, out, *extra):
    return CliRunner().invoke(app, [
        "score", "--orders", str(sample / "orders.csv"), "--events", str(sample / "events.csv"),
        "--customers", str(sample / "customers.csv"), "--as-of", AS_OF, "--model", str(model_path),
        "--out", str(out), *extra,
    ])


def test_cli_score_engine_dask_writes_the_same_scores(local_client, small_sample, trained_model, tmp_path,
                                                      monkeypatch):
    # Each input is cut into several byte ranges, and the rows ingest left on the workers are
    # the ones features and scoring use (never sent again from the client).
    monkeypatch.setattr(distributed, "INGEST_BLOCK_BYTES", 64 << 10)
    from churnctl import ingest

    events_kind = ingest.reader("events", Config().ingest)
    for name, kind in (("orders.csv", _orders_kind()), ("events.csv", events_kind)):
        assert len(distributed.byte_ranges(str(small_sample / name), kind, 64 << 10)) >= 3

    def resent(*args, **kwargs):
        raise AssertionError("rows sent to the cluster again")

    monkeypatch.setattr(distributed.Partitioned, "__init__", resent)
    pandas_run = _score(small_sample, trained_model, tmp_path / "p")
    dask_run = _score(small_sample, trained_model, tmp_path / "d", "--engine", "dask", "--format", "parquet")
    assert pandas_run.exit_code == 0, pandas_run.output
    assert dask_run.exit_code == 0, dask_run.output
    want = pd.read_csv(tmp_path / "p" / "scores.csv", dtype={"customer_id": str})
    got = pd.read_parquet(tmp_path / "d" / "scores.parquet")
    assert not (tmp_path / "d" / "scores.csv").exists()
    assert list(got.columns) == list(want.columns)
    assert got["customer_id"].tolist() == want["customer_id"].tolist()
    assert np.abs(got["churn_probability"].to_numpy() - want["churn_probability"].to_numpy()).max() <= 1e-6
    for col in ("risk_tier", "value_tier", "top_cause", "rfm_segment"):
        assert got[col].tolist() == want[col].tolist(), col
    # Campaign files are identical: the rules saw the same scores.
    for f in sorted((tmp_path / "p" / "campaigns").glob("*.csv")):
        assert f.read_bytes() == (tmp_path / "d" / "campaigns" / f.name).read_bytes(), f.name
    # Rejects (file, line, column, reason, redacted text) and per-file counts are the same too.
    assert (tmp_path / "p" / "rejects.csv").read_bytes() == (tmp_path / "d" / "rejects.csv").read_bytes()
    import json

    manifest = json.loads((tmp_path / "d" / "run.json").read_text())
    assert manifest["outputs"][0]["path"] == "scores.parquet"
    want_manifest = json.loads((tmp_path / "p" / "run.json").read_text())
    assert manifest["inputs"] == want_manifest["inputs"]


def test_cli_features_and_train_accept_an_existing_scheduler(small_sample, tmp_path):
    from distributed import LocalCluster

    distributed.shutdown()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        feats = CliRunner().invoke(app, [
            "features", "--orders", str(small_sample / "orders.csv"), "--as-of", AS_OF,
            "--out", str(tmp_path / "f.parquet"), "--engine", "dask", "--scheduler", address,
        ])
        assert feats.exit_code == 0, feats.output
        got = pd.read_parquet(tmp_path / "f.parquet").set_index("customer_id")
        orders = api.load_inputs([small_sample / "orders.csv"], config=Config()).orders
        want = features.build(orders, TS)
        pd.testing.assert_frame_equal(got, want, check_index_type=False, check_column_type=False,
                                      check_dtype=False)
        distributed.shutdown()


def test_cli_unreachable_scheduler_is_one_line_exit_2(small_sample, tmp_path, monkeypatch):
    monkeypatch.setattr(distributed, "CONNECT_TIMEOUT", "1s")
    result = CliRunner().invoke(app, [
        "features", "--orders", str(small_sample / "orders.csv"), "--as-of", AS_OF,
        "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9",
    ])
    assert result.exit_code == 2, result.output
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in result.output
    assert "Traceback" not in result.output


def test_cli_scheduler_needs_engine_dask(small_sample):
    result = CliRunner().invoke(app, [
        "features", "--orders", str(small_sample / "orders.csv"), "--as-of", AS_OF,
        "--scheduler", "tcp://127.0.0.1:9",
    ])
    assert result.exit_code == 2
    assert "--scheduler needs --engine dask" in result.output


def test_local_worker_processes_run_kernels_on_one_thread_each():
    """The LocalCluster's worker processes already fill the cores: numba and OpenMP use one thread."""
    distributed.shutdown()
    try:
        c = distributed.client(None, n_workers=1)  # worker processes, as the CLI starts them
        got = c.run(lambda: (__import__("os").environ.get("OMP_NUM_THREADS"),
                             __import__("numba").get_num_threads()))
        assert list(got.values()) == [("1", 1)]
    finally:
        distributed.shutdown()
