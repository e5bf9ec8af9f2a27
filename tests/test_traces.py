"""Traces: replay equals direct elimination (checked against dense linear algebra), batch
replay equals per-vector replay, SCC composition equals whole-graph elimination, traces
survive a process restart, corrupt entries are re-recorded, bad parameters fail clearly."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import phasic
from phasic import Graph, ParameterError
from phasic.traces import ensure_trace, evaluate_batch, graph_trace, load_trace, trace_entry_path, trace_key
from tests.models import dense_moments, random_param_graph, two_island


@pytest.mark.parametrize("seed", range(4))
def test_replay_equals_dense_for_many_thetas(seed, cache_dir):
    g = random_param_graph(seed)
    rng = np.random.default_rng(100 + seed)
    for _ in range(5):
        theta = rng.uniform(0.2, 3.0, 3)
        g.update_weights(theta)
        np.testing.assert_allclose(g.moments(3), dense_moments(g, 3), rtol=1e-12)


def test_replay_does_not_rerecord(cache_dir):
    g = random_param_graph(7)
    g.update_weights([1.0, 1.0, 1.0])
    g.moments(2)
    tr = g._trace
    g.update_weights([2.0, 0.5, 1.5])
    g.moments(2)
    assert g._trace is tr


def test_batch_equals_single(cache_dir):
    g = Graph(two_island)
    thetas = np.random.default_rng(3).uniform(0.1, 3.0, (40, 2))
    batch = evaluate_batch(g, thetas, what="moments", k=3)
    h = g.copy()
    for row, got in zip(thetas, batch):
        h.update_weights(row)
        np.testing.assert_allclose(got, h.moments(3), rtol=1e-13)
        np.testing.assert_allclose(got, dense_moments(h, 3), rtol=1e-12)
    ev = evaluate_batch(g, thetas, what="variance")
    np.testing.assert_allclose(ev, batch[:, 1] - batch[:, 0] ** 2, rtol=1e-12)
    rewards = g.states()[:, 0].astype(float)
    rb = evaluate_batch(g, thetas[:5], what="expectation", rewards=rewards)
    for row, got in zip(thetas[:5], rb):
        h.update_weights(row)
        np.testing.assert_allclose(got, dense_moments(h, 1, rewards)[0], rtol=1e-12)
    pdf = evaluate_batch(g, thetas[:3], what="pdf", times=[0.5, 1.0])
    for row, got in zip(thetas[:3], pdf):
        h.update_weights(row)
        np.testing.assert_allclose(got, h.pdf([0.5, 1.0]), rtol=1e-12)


@pytest.mark.parametrize("B", [1, 13, 1000])
def test_batch_threads_give_the_same_bits(B, cache_dir):
    g = Graph(two_island)
    thetas = np.random.default_rng(B).uniform(0.1, 3.0, (B, 2))
    one = evaluate_batch(g, thetas, k=3)
    for threads in (2, 3, 64):
        np.testing.assert_array_equal(evaluate_batch(g, thetas, k=3, threads=threads), one)
    bad = thetas.copy()
    bad[B // 2, 1] = -5.0  # a negative rate in whichever thread gets that row
    with pytest.raises(ParameterError, match="negative rate"):
        evaluate_batch(g, bad, threads=2)


def test_split_rows_covers_every_row_in_whole_blocks():
    from phasic.traces import _split_rows

    for B in (1, 7, 8, 9, 100, 1000):
        for t in (1, 2, 3, 200):
            parts = _split_rows(B, t)
            assert parts[0][0] == 0 and parts[-1][1] == B and len(parts) <= t
            assert all(a == pb for (_, pb), (a, _) in zip(parts, parts[1:]))
            assert all(a % 8 == 0 for a, _ in parts)


def test_batch_bad_input(cache_dir):
    g = Graph(two_island)
    with pytest.raises(ParameterError, match=r"\(B, 2\)"):
        evaluate_batch(g, np.ones((3, 3)))
    with pytest.raises(ParameterError, match="non-finite"):
        evaluate_batch(g, [[1.0, np.nan]])
    with pytest.raises(ParameterError, match="negative rate"):
        evaluate_batch(g, [[1.0, -1.0]])
    with pytest.raises(ParameterError, match="what="):
        evaluate_batch(g, [[1.0, 1.0]], what="median")
    with pytest.raises(ValueError, match="threads must be >= 1, got 0"):
        evaluate_batch(g, [[1.0, 1.0]], threads=0)
    for bad in (1.5, True, "2"):
        with pytest.raises(TypeError, match="threads must be an int"):
            evaluate_batch(g, [[1.0, 1.0]], threads=bad)


def test_update_weights_errors():
    g = Graph(two_island)
    with pytest.raises(ParameterError, match="length 3"):
        g.update_weights([1.0, 2.0, 3.0])
    with pytest.raises(ParameterError, match="non-finite"):
        g.update_weights([np.nan, 1.0])
    with pytest.raises(ParameterError, match="rates must be >= 0"):
        g.update_weights([1.0, -0.5])
    g.update_weights([0.0, 1.0])  # no coalescence at all: never absorbs
    with pytest.raises(ParameterError, match="non-finite"):
        g.moments(1)


@pytest.mark.parametrize("seed", range(3))
def test_scc_composition_equals_whole_graph(seed, cache_dir, monkeypatch):
    g = random_param_graph(seed, n=30, extra=2)
    g.update_weights([0.7, 1.3, 0.4])
    whole = g.moments(3)
    h = g.copy()
    h._hierarchical = True
    h._trace = None
    monkeypatch.setattr(phasic.traces, "HIERARCHICAL_MIN_SCC", 2)  # cache every component
    monkeypatch.setattr(phasic.traces, "SCC_STORE_GAIN", 0.0)  # however cheap to record
    np.testing.assert_allclose(h.moments(3), whole, rtol=1e-12)
    assert h._hierarchy_stats["recorded"] >= 1
    assert h._hierarchy_stats["stored"] == h._hierarchy_stats["recorded"]


def test_hierarchical_reuses_shared_components(cache_dir, monkeypatch):
    monkeypatch.setattr(phasic.traces, "HIERARCHICAL_MIN_SCC", 2)
    monkeypatch.setattr(phasic.traces, "SCC_STORE_GAIN", 0.0)

    def family(n):
        @phasic.with_ipv([[[n, 0], 1.0]])
        def model(state):
            return two_island.__wrapped__(state)

        return Graph(model, hierarchical=True)

    g6 = family(6)
    g6.update_weights([1.0, 0.5])
    m6 = g6.moments(2)
    g7 = family(7)
    g7.update_weights([1.0, 0.5])
    m7 = g7.moments(2)
    s = g7._hierarchy_stats
    assert s["reused"] >= 1, s  # the SCCs with fewer than 7 lineages were recorded for n=6
    np.testing.assert_allclose(m6, dense_moments(g6, 2), rtol=1e-12)
    np.testing.assert_allclose(m7, dense_moments(g7, 2), rtol=1e-12)
    assert phasic.get_trace_cache_stats()["total_files"] >= s["components"]


def test_components_cheaper_to_record_than_to_load_are_not_stored(cache_dir, monkeypatch):
    monkeypatch.setattr(phasic.traces, "HIERARCHICAL_MIN_SCC", 2)
    monkeypatch.setattr(phasic.traces, "LOAD_S_FIXED", 10.0)  # loading "costs" 10 s: never worth it
    g = random_param_graph(0, n=30, extra=2)
    g.update_weights([0.7, 1.3, 0.4])
    whole = g.moments(2)
    h = g.copy()
    h._hierarchical = True
    h._trace = None
    np.testing.assert_allclose(h.moments(2), whole, rtol=1e-12)
    s = h._hierarchy_stats
    assert s["recorded"] >= 1 and s["stored"] == 0, s
    assert phasic.get_trace_cache_stats()["total_files"] == 1  # the whole-graph trace only


def test_large_graph_trace_cheaper_to_record_than_to_load_is_not_stored(cache_dir, monkeypatch):
    monkeypatch.setattr(phasic.traces, "GRAPH_STORE_ALWAYS_BYTES", 0)
    monkeypatch.setattr(phasic.traces, "LOAD_S_FIXED", 10.0)
    g = Graph(two_island, hierarchical=True)
    g.update_weights([1.0, 0.5])
    g.moments(2)
    assert g._hierarchy_stats["graph_stored"] is False
    assert phasic.get_trace_cache_stats()["total_files"] == 0
    assert ensure_trace(g) == trace_key(g)  # an explicit request stores it regardless
    assert phasic.get_trace_cache_stats()["total_files"] == 1


def test_small_components_are_not_stored_alone(cache_dir):
    g = Graph(two_island, hierarchical=True)  # every component is far below the threshold
    g.update_weights([1.0, 0.5])
    g.moments(2)
    assert g._hierarchy_stats["cached_components"] == 0
    assert phasic.get_trace_cache_stats()["total_files"] == 1  # the whole-graph trace only


SCRIPT = textwrap.dedent("""
    import json, sys
    import phasic
    from tests.models import two_island
    g = phasic.Graph(two_island, hierarchical=True)
    g.update_weights([1.5, 0.25])
    m = g.moments(2)
    print(json.dumps({"m": m, "recorded": hasattr(g, "_hierarchy_stats")}))
""")


def test_trace_survives_process_restart(cache_dir):
    import json

    env = dict(os.environ, PHASIC_CACHE_DIR=str(cache_dir))
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", SCRIPT], env=env, check=True, capture_output=True, text=True, cwd=os.getcwd()
            ).stdout
        )
        for _ in range(2)
    ]
    assert runs[0]["recorded"] is True  # first process records and stores
    assert runs[1]["recorded"] is False  # second loads it: no elimination
    assert runs[0]["m"] == runs[1]["m"]
    g = Graph(two_island)
    g.update_weights([1.5, 0.25])
    np.testing.assert_allclose(runs[1]["m"], dense_moments(g, 2), rtol=1e-12)


def test_corrupt_trace_is_rerecorded(cache_dir):
    g = Graph(two_island, hierarchical=True)
    g.update_weights([1.0, 1.0])
    ref = g.moments(2)
    path = trace_entry_path(g)
    assert load_trace(trace_key(g)) is not None
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(b ^ 0xFF for b in data[mid : mid + 64])  # flipped (that part may be zeros)
    path.write_bytes(bytes(data))
    h = Graph(two_island, hierarchical=True)
    h.update_weights([1.0, 1.0])
    with pytest.warns(RuntimeWarning, match="corrupt"):
        got = h.moments(2)
    assert got == ref
    assert hasattr(h, "_hierarchy_stats")  # re-recorded
    assert load_trace(trace_key(g)) is not None


def test_trace_key_is_structural():
    g = Graph(two_island)
    h = g.copy()
    h.update_weights([3.0, 0.1])
    assert trace_key(g) == trace_key(h)
    other = random_param_graph(1)
    assert trace_key(other) != trace_key(g)
    tr = graph_trace(g)
    assert tr["code"].dtype == np.uint8 and tr["xi"].dtype == np.int32
