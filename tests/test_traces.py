"""Traces (phasic/traces.py): replay equals direct elimination (checked against dense linear
algebra), SCC composition equals whole-graph elimination, traces survive a process restart,
corrupt entries are re-recorded.

Stored traces are checked (issue 14, items 1 and 5):

* A trace entry with a valid checksum but out-of-range operands (crafted, or written by a
  buggy phasic) is checked before any core loop indexes memory with it: the entry is moved
  to ``<root>/corrupt/`` with a warning naming the bad field, the trace is recorded again
  (and stored again), and every result equals that of a fresh store. The calls that used
  to read or write out of bounds run in a subprocess, so a regression fails the test
  instead of killing pytest.
* A trace write that fails (read-only store, full disk, the store's directory replaced
  underneath) gives one :class:`phasic.exceptions.CacheWarning` naming the store and the
  cause; the computation goes on in memory with the right values.
* The core's entry points that take trace arrays refuse out-of-range entries themselves.

Compiled replay plans (phasic._core.ReplayPlan, csrc/replay*.hpp) give bitwise the results of
the plain tape replay, for single weight vectors and blocks of parameter vectors, with
rewards, degenerate and negative weights; graphs switch to them on their second evaluation;
malformed traces are rejected.
"""

import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

import phasic
from phasic import Graph, ParameterError, _core
from phasic.batch import evaluate_batch
from phasic.exceptions import CacheWarning, TraceError
from phasic.traces import ensure_trace, graph_trace, load_trace, trace_entry_path, trace_key
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
    tr = g._ll.trace
    g.update_weights([2.0, 0.5, 1.5])
    g.moments(2)
    assert g._ll.trace is tr


@pytest.mark.parametrize("seed", range(3))
def test_scc_composition_equals_whole_graph(seed, cache_dir, monkeypatch):
    g = random_param_graph(seed, n=30, extra=2)
    g.update_weights([0.7, 1.3, 0.4])
    whole = g.moments(3)
    h = g.copy()
    h._ll.hierarchical = True
    h._ll.trace = None
    monkeypatch.setattr(phasic.traces, "HIERARCHICAL_MIN_SCC", 2)  # cache every component
    monkeypatch.setattr(phasic.traces, "SCC_STORE_GAIN", 0.0)  # however cheap to record
    np.testing.assert_allclose(h.moments(3), whole, rtol=1e-12)
    assert h._ll.hierarchy_stats["recorded"] >= 1
    assert h._ll.hierarchy_stats["stored"] == h._ll.hierarchy_stats["recorded"]


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
    s = g7._ll.hierarchy_stats
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
    h._ll.hierarchical = True
    h._ll.trace = None
    np.testing.assert_allclose(h.moments(2), whole, rtol=1e-12)
    s = h._ll.hierarchy_stats
    assert s["recorded"] >= 1 and s["stored"] == 0, s
    assert phasic.get_trace_cache_stats()["total_files"] == 1  # the whole-graph trace only


def test_large_graph_trace_cheaper_to_record_than_to_load_is_not_stored(cache_dir, monkeypatch):
    monkeypatch.setattr(phasic.traces, "GRAPH_STORE_ALWAYS_BYTES", 0)
    monkeypatch.setattr(phasic.traces, "LOAD_S_FIXED", 10.0)
    g = Graph(two_island, hierarchical=True)
    g.update_weights([1.0, 0.5])
    g.moments(2)
    assert g._ll.hierarchy_stats["graph_stored"] is False
    assert phasic.get_trace_cache_stats()["total_files"] == 0
    assert ensure_trace(g) == trace_key(g)  # an explicit request stores it regardless
    assert phasic.get_trace_cache_stats()["total_files"] == 1


def test_small_components_are_not_stored_alone(cache_dir):
    g = Graph(two_island, hierarchical=True)  # every component is far below the threshold
    g.update_weights([1.0, 0.5])
    g.moments(2)
    assert g._ll.hierarchy_stats["cached_components"] == 0
    assert phasic.get_trace_cache_stats()["total_files"] == 1  # the whole-graph trace only


SCRIPT = textwrap.dedent("""
    import json, sys
    import phasic
    from tests.models import two_island
    g = phasic.Graph(two_island, hierarchical=True)
    g.update_weights([1.5, 0.25])
    m = g.moments(2)
    print(json.dumps({"m": m, "recorded": g._ll.hierarchy_stats is not None}))
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
    assert h._ll.hierarchy_stats is not None  # re-recorded
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


# --------------------- stored traces are checked (issue 14, items 1 and 5)


ROOT = Path(__file__).resolve().parent.parent


THETA = [1.0, 0.5]


# Runs in a subprocess: for every (mutation, call) it records the two-island trace into a
# fresh store, overwrites the stored entry with a mutated copy (Store.put: valid checksum),
# runs the call on a new graph and prints one JSON line. The reference values come from a
# second, untouched store.
CRAFT = textwrap.dedent("""
    import json, os, sys, warnings
    import numpy as np
    import phasic
    from phasic import Graph, batch, traces
    from phasic.store import Store
    from tests.models import two_island

    mutations, calls, kind = sys.argv[1].split(","), sys.argv[2].split(","), sys.argv[3]
    base = sys.argv[4]
    THETA = [1.0, 0.5]
    THETAS = np.random.default_rng(1).uniform(0.2, 2.0, (20, 2))
    if kind == "scc":  # store every cyclic component on its own
        traces.HIERARCHICAL_MIN_SCC = 2
        traces.SCC_STORE_GAIN = 0.0

    def graph(hierarchical=True):
        g = Graph(two_island, hierarchical=hierarchical)
        g.update_weights(THETA)
        return g

    def run(call):
        if call == "sojourn":
            return graph().expected_sojourn_time().tolist()
        if call == "moments":
            return graph().moments(3)
        if call in ("batch3", "batch20"):
            return batch.evaluate_batch(graph(), THETAS[:int(call[5:])], k=2).tolist()
        if call == "attach":  # the path of the workflow and of Dask sweeps
            g = graph(False)
            return [traces.attach_trace(g)] + g.moments(2)
        if call in ("jax", "jaxcore"):
            from phasic.jax._ops import moments_from_graph
            f = moments_from_graph(graph(), 2, backend="jax" if call == "jax" else "core")
            return np.asarray(f(np.asarray(THETA))).tolist()
        raise ValueError(call)

    def mutate(tr, what, E):
        tr = {f: np.array(v) for f, v in tr.items()}
        code = tr["code"]
        ops = np.flatnonzero(code != 0)
        adds = np.flatnonzero(code == 1)
        reads = np.flatnonzero(tr["xj"] >= 0)
        if what == "xi":      # a program write far past x
            tr["xi"][tr["xi"].size // 2] = 10**8
        elif what == "xj":    # a program read far past x
            tr["xj"][reads[reads.size // 2]] = 10**8
        elif what == "xj0":   # local traces: vertex 0 is the dummy start (splices to -1)
            tr["xj"][reads[0]] = 0
        elif what == "xs":    # a negative multiplier index
            tr["xs"][tr["xs"].size // 2] = -10**6
        elif what == "a":     # a tape operand after the end of the tape
            tr["a"][ops[ops.size // 2]] = 10**8
        elif what == "ssa":   # an operand that is a later op (read before it is written)
            i = int(ops[0])
            tr["a"][i] = code.size - 1
        elif what == "weight":  # an edge index past the graph's edges
            tr["a"][np.flatnonzero(code == 0)[0]] = E + 5
        elif what == "b":
            tr["b"][adds[0]] = -7
        elif what == "code":
            code[ops[ops.size // 2]] = 77
        elif what == "xinit":
            v = np.flatnonzero(tr["xinit"] >= 0)[-1]
            tr["xinit"][v] = 10**7
        elif what == "xinit_short":
            tr["xinit"] = tr["xinit"][:-2]
        elif what == "short":  # arrays of different lengths
            tr["xj"] = tr["xj"][:-1]
        elif what == "order":
            tr["order"][0] = 10**9
        elif what == "scc_ptr":
            tr["scc_ptr"][1] = -3
        elif what == "wrap":  # int64 on disk: 2**32 + 3 would wrap to 3 when narrowed
            tr["xi"] = tr["xi"].astype(np.int64)
            tr["xi"][0] += 2**32
        else:
            raise ValueError(what)
        return tr

    def entries(store, scope):
        out = []
        for key in store.entries("traces"):
            arrays, attrs = store.get("traces", key)
            if attrs.get("scope") == scope:
                out.append((key, arrays, attrs))
        return out

    # reference values from a fresh store
    os.environ["PHASIC_CACHE_DIR"] = os.path.join(base, "ref")
    ref = {call: run(call) for call in calls}
    root = os.path.join(base, "crafted")
    os.environ["PHASIC_CACHE_DIR"] = root
    store = Store()
    g = graph()
    g.moments(2)
    E = int(g._ll.target.size)
    (gkey, garrays, gattrs), = entries(store, "graph")
    target = (gkey, garrays, gattrs)
    if kind == "scc":  # the largest stored component, and no whole-graph entry
        comps = entries(store, "scc")
        target = max(comps, key=lambda c: c[1]["code"].size)
    key, arrays, attrs = target
    attrs = {a: attrs[a] for a in ("trace_format", "n_ops", "n_program", "scope")}
    for what in mutations:
        for call in calls:
            tr = traces._from_entry(arrays, attrs) if what != "wrap" else dict(arrays)
            bad = mutate(tr, what, E if kind == "graph" else 10**6)
            if kind == "scc":
                store.path("traces", gkey).unlink(missing_ok=True)
            store.put("traces", key, bad, attrs)
            before = len(os.listdir(os.path.join(root, "corrupt"))) if os.path.isdir(os.path.join(root, "corrupt")) else 0
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    got, error = run(call), None
                except Exception as exc:
                    got, error = None, f"{type(exc).__name__}: {exc}"
            after = len(os.listdir(os.path.join(root, "corrupt"))) if os.path.isdir(os.path.join(root, "corrupt")) else 0
            back = store.get("traces", key)
            restored = back is not None and all(np.array_equal(back[0][f], arrays[f]) for f in arrays)
            print(json.dumps({"what": what, "call": call, "got": got, "ref": ref[call], "error": error,
                              "quarantined": after - before, "restored": restored,
                              "warnings": [[w.category.__name__, str(w.message)] for w in caught]}),
                  flush=True)
""")


def run_crafted(tmp_path, mutations, calls, kind="graph", timeout=240):
    env = dict(os.environ, PYTHONPATH=str(ROOT), PHASIC_CACHE_MEMORY_MB="64")
    proc = subprocess.run(
        [sys.executable, "-c", CRAFT, ",".join(mutations), ",".join(calls), kind, str(tmp_path)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0:
        done = [(r["what"], r["call"]) for r in rows]
        pytest.fail(
            f"the subprocess died with code {proc.returncode} (a signal if negative) after {done}; "
            f"stderr: {proc.stderr[-3000:]}"
        )
    assert len(rows) == len(mutations) * len(calls), proc.stderr[-3000:]
    return rows


def check_rows(rows, restored=True):
    for r in rows:
        where = f"mutation {r['what']!r}, call {r['call']!r}"
        assert r["error"] is None, f"{where}: raised {r['error']}"
        got, ref = r["got"], r["ref"]
        if r["call"] == "attach":
            assert got[0] is False, where  # the bad entry is not attached
            got, ref = got[1:], ref[1:]
        np.testing.assert_allclose(got, ref, rtol=1e-13, atol=0, err_msg=where)
        assert r["quarantined"] == 1, f"{where}: {r}"
        msgs = [m for c, m in r["warnings"] if "fails its check" in m]
        assert msgs, f"{where}: no warning about the bad entry: {r['warnings']}"
        if restored and r["call"] != "attach":
            assert r["restored"], f"{where}: the entry was not stored again"


GRAPH_MUTATIONS = [
    "xi",
    "xj",
    "xs",
    "a",
    "ssa",
    "weight",
    "b",
    "code",
    "xinit",
    "xinit_short",
    "short",
    "order",
    "scc_ptr",
    "wrap",
]


def test_crafted_graph_trace_entries_are_quarantined_and_rerecorded(tmp_path):
    """Every kind of out-of-range entry, through every core path that replays the trace:
    the plain program (expected_sojourn_time), the compiled plan (moments), the batch
    replay with and without a plan (evaluate_batch of 3 and 20 rows) and attach_trace."""
    rows = run_crafted(tmp_path, GRAPH_MUTATIONS, ["sojourn", "moments", "batch3", "batch20", "attach"])
    check_rows(rows)
    # the warning names the field and the offending value
    msg = next(m for r in rows if r["what"] == "xi" for c, m in r["warnings"] if "fails its check" in m)
    assert "xi[" in msg and "100000000" in msg, msg


def test_crafted_component_trace_is_quarantined_and_rerecorded(tmp_path):
    """hierarchical=True splices stored per-component traces into the graph's trace: a bad
    component entry is checked against its component before the splice."""
    rows = run_crafted(
        tmp_path, ["xi", "xj", "xj0", "weight", "a", "xinit_short", "code"], ["sojourn", "moments"], kind="scc"
    )
    check_rows(rows)


def test_crafted_trace_under_jax(tmp_path):
    pytest.importorskip("jax")
    rows = run_crafted(tmp_path, ["ssa"], ["jax", "jaxcore"])
    check_rows(rows)


def in_child(test):
    """Runs `test` in a child pytest: should a check regress, the out-of-range access it
    let through fails the test instead of corrupting (or killing) this process."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        if os.environ.get("PHASIC_TEST_CHILD") == test.__name__:
            return test(*args, **kwargs)
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", f"{__file__}::{test.__name__}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=dict(os.environ, PHASIC_TEST_CHILD=test.__name__),
            timeout=240,
        )
        assert proc.returncode == 0, f"child exit {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"

    return run


@pytest.fixture
def trace_and_graph():
    g = Graph(two_island)
    g.update_weights(THETA)
    return dict(graph_trace(g)), g


def bad_copy(tr, field, index, value):
    out = dict(tr)
    out[field] = tr[field].copy()
    out[field][index] = value
    return out


@in_child
def test_core_entry_points_refuse_out_of_range_operands(trace_and_graph):
    tr, g = trace_and_graph
    V, E = g.vertices_length(), int(g._ll.target.size)
    hi = int(g._ll.indptr[1])
    n = tr["code"].size
    w = g._ll.w
    r = np.ones(V)
    i = int(np.flatnonzero(tr["code"] == 1)[0])
    with pytest.raises(TraceError, match=rf"b\[{i}\]"):
        _core.evaluate_tape(tr["code"], tr["a"], bad_copy(tr, "b", i, n + 9)["b"], tr["c"], w)
    with pytest.raises(TraceError, match="lengths"):
        _core.evaluate_tape(tr["code"], tr["a"][:-1], tr["b"], tr["c"], w)
    with pytest.raises(TraceError, match="edge"):
        _core.evaluate_tape(tr["code"], tr["a"], tr["b"], tr["c"], w[:3])
    val = _core.evaluate_tape(tr["code"], tr["a"], tr["b"], tr["c"], w)
    x = np.ones(V)
    with pytest.raises(TraceError, match=r"xi\[0\]"):
        _core.run_program(bad_copy(tr, "xi", 0, V)["xi"], tr["xj"], tr["xs"], val, x)
    with pytest.raises(TraceError, match=r"xs\[1\]"):
        _core.run_program(tr["xi"], tr["xj"], bad_copy(tr, "xs", 1, -2)["xs"], val, x)
    with pytest.raises(TraceError, match="lengths"):
        _core.run_program(tr["xi"], tr["xj"][:-1], tr["xs"], val, x)
    with pytest.raises(TraceError, match=r"x[ij]\["):
        _core.run_program(tr["xi"], tr["xj"], tr["xs"], val, np.ones(3))
    a_t, a_e = g._ll.target[:hi].astype(np.int64), np.arange(hi, dtype=np.int64)
    for bad in (bad_copy(tr, "xj", 2, 10**6), bad_copy(tr, "xinit", 3, n), bad_copy(tr, "a", i, i)):
        with pytest.raises(TraceError):
            _core.cph_moments_batch(bad, w.reshape(1, -1), a_t, a_e, r, 2)
        with pytest.raises(TraceError):
            _core.cph_moments_theta(bad, np.array([THETA]), g._ll.base, g._ll.coef, a_t, a_e, r, 2)
    with pytest.raises(TraceError, match="start edge"):
        _core.cph_moments_batch(tr, w.reshape(1, -1), a_t, a_e + E, r, 2)
    with pytest.raises(TraceError, match="rewards"):
        _core.cph_moments_batch(tr, w.reshape(1, -1), a_t, a_e, r[:2], 2)
    bad_ip = g._ll.indptr.copy()
    bad_ip[2] = -5
    with pytest.raises(TraceError, match="indptr"):
        _core.record_trace(bad_ip, g._ll.target)
    with pytest.raises(TraceError, match="target"):
        _core.record_trace(g._ll.indptr, np.full_like(g._ll.target, V))
    with pytest.raises(TraceError, match="indptr"):
        _core.scc(bad_ip, g._ll.target)
    plan = _core.ReplayPlan(tr, E, hi, g._ll.target[:hi])
    with pytest.raises(TraceError, match="target"):
        plan.moments_vjp(w, 2, None, np.ones(2), g._ll.indptr, np.full_like(g._ll.target, V))
    # the good arrays still work, and give the graph's moments
    np.testing.assert_allclose(
        _core.cph_moments_batch(tr, w.reshape(1, -1), a_t, a_e, r, 2)[0], dense_moments(g, 2), rtol=1e-12
    )


@in_child
def test_core_refuses_a_bad_component_trace_in_the_splice(trace_and_graph):
    """record_trace(provided=...) checks each provided component trace against the
    component it replaces (the splice indexes the component's edges and vertices)."""
    tr, g = trace_and_graph
    order, ptr = _core.scc(g._ll.indptr, g._ll.target)
    k = int(np.argmax(np.diff(ptr)))
    lp, lt = phasic.traces.local_structure(g._ll.indptr, g._ll.target, order[ptr[k] : ptr[k + 1]])
    local = _core.record_trace(lp, lt, None, True)
    good = _core.record_trace(g._ll.indptr, g._ll.target, {k: local})
    phasic.traces.check_trace(good, g.vertices_length(), int(g._ll.target.size))
    hi = int(g._ll.indptr[1])
    got = _core.cph_moments_batch(
        good,
        g._ll.w.reshape(1, -1),
        g._ll.target[:hi].astype(np.int64),
        np.arange(hi, dtype=np.int64),
        np.ones(g.vertices_length()),
        2,
    )[0]
    np.testing.assert_allclose(got, dense_moments(g, 2), rtol=1e-12)
    w0 = int(np.flatnonzero(local["code"] == 0)[0])
    for bad in (
        bad_copy(local, "a", w0, lt.size),
        bad_copy(local, "xi", 0, lp.size - 1),
        bad_copy(local, "xj", int(np.flatnonzero(local["xj"] >= 0)[0]), 0),
        dict(local, xinit=local["xinit"][:2]),
    ):
        with pytest.raises(TraceError, match=f"component {k}"):
            _core.record_trace(g._ll.indptr, g._ll.target, {k: bad})


def test_check_trace_accepts_recorded_traces_and_names_the_bad_entry(trace_and_graph):
    tr, g = trace_and_graph
    V, E = g.vertices_length(), int(g._ll.target.size)
    phasic.traces.check_trace(tr, V, E)
    with pytest.raises(TraceError, match=r"order"):
        phasic.traces.check_trace(bad_copy(tr, "order", 0, 0), V, E)
    with pytest.raises(TraceError, match=r"seg_ptr"):
        phasic.traces.check_trace(bad_copy(tr, "seg_ptr", -1, tr["code"].size + 1), V, E)
    with pytest.raises(TraceError, match=r"edge"):
        phasic.traces.check_trace(tr, V, 4)


@contextlib.contextmanager
def tmpfs(path, size="1m", read_only=False):
    path.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True, capture_output=True
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root and mount): {exc}")
    try:
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def reference(thetas):
    g = Graph(two_island)
    g.update_weights(THETA)
    return g.moments(2), g.expected_sojourn_time(), evaluate_batch(g, thetas, k=2)


def check_in_memory(root, monkeypatch, cause, scc=False):
    """moments, expected_sojourn_time and evaluate_batch of hierarchical graphs with `root`
    as the store: one CacheWarning each, naming the store and `cause` (or one of several);
    right values."""
    monkeypatch.setenv("PHASIC_CACHE_DIR", str(root))
    if scc:
        monkeypatch.setattr(phasic.traces, "HIERARCHICAL_MIN_SCC", 2)
        monkeypatch.setattr(phasic.traces, "SCC_STORE_GAIN", 0.0)
    thetas = np.random.default_rng(2).uniform(0.2, 2.0, (12, 2))
    m_ref, s_ref, b_ref = reference(thetas)
    for what in ("moments", "sojourn", "batch"):
        g = Graph(two_island, hierarchical=True)
        g.update_weights(THETA)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if what == "moments":
                np.testing.assert_allclose(g.moments(2), m_ref, rtol=1e-13)
            elif what == "sojourn":
                np.testing.assert_allclose(g.expected_sojourn_time(), s_ref, rtol=1e-13)
            else:
                np.testing.assert_allclose(evaluate_batch(g, thetas, k=2), b_ref, rtol=1e-13)
        mine = [w for w in caught if issubclass(w.category, CacheWarning)]
        assert len(mine) == 1, [str(w.message) for w in caught]  # once, not per component
        msg = str(mine[0].message)
        causes = (cause,) if isinstance(cause, str) else cause
        assert str(root) in msg and any(c.lower() in msg.lower() for c in causes), msg
        assert mine[0].filename == __file__, mine[0].filename  # points at the caller
        assert g._ll.trace is not None
        # the same graph again: the trace is in memory, nothing more is written or warned
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            g.moments(2)


@pytest.mark.parametrize("scc", [False, True])
def test_read_only_store(tmp_path, monkeypatch, scc):
    root = tmp_path / "ro"
    with tmpfs(root, read_only=True):
        check_in_memory(root, monkeypatch, "Read-only file system", scc)


def test_full_disk(tmp_path, monkeypatch):
    root = tmp_path / "full"
    with tmpfs(root, size="64k"):
        with open(root / "filler", "wb", buffering=0) as fh, contextlib.suppress(OSError):
            while True:  # unbuffered: the write that finds the disk full raises here
                fh.write(b"\0" * 4096)
        check_in_memory(root / "store", monkeypatch, "No space left on device")


def test_traces_directory_replaced_by_a_file(tmp_path, monkeypatch):
    """What a concurrent `cache clear` and another writer can leave: <root>/traces is not
    a directory."""
    root = tmp_path / "store"
    root.mkdir()
    (root / "traces").write_text("not a directory")
    check_in_memory(root, monkeypatch, ("Not a directory", "File exists"), scc=True)


def test_store_removed_between_record_and_write(tmp_path, monkeypatch):
    """The store directory is removed (and its name taken by a file) after the elimination
    is recorded and before the trace is written."""
    root = tmp_path / "store"
    real = phasic.traces._record_hierarchical

    def record_then_remove(*args, **kwargs):
        tr = real(*args, **kwargs)
        shutil.rmtree(root, ignore_errors=True)
        root.write_text("removed by a concurrent clear")
        return tr

    monkeypatch.setattr(phasic.traces, "_record_hierarchical", record_then_remove)
    try:
        check_in_memory(root, monkeypatch, ("Not a directory", "File exists"))
    finally:
        with contextlib.suppress(OSError):
            root.unlink()


def test_ensure_trace_warns_instead_of_raising(tmp_path, monkeypatch):
    root = tmp_path / "ro"
    with tmpfs(root, read_only=True):
        monkeypatch.setenv("PHASIC_CACHE_DIR", str(root))
        g = Graph(two_island)
        g.update_weights(THETA)
        with pytest.warns(CacheWarning, match="Read-only"):
            key = phasic.traces.ensure_trace(g)
        assert key == phasic.traces.trace_key(g)
        np.testing.assert_allclose(g.moments(2), dense_moments(g, 2), rtol=1e-12)


@in_child
def test_traces_are_checked_once_and_a_changed_array_is_checked_again(tmp_path):
    """A trace the core recorded (or check_trace validated, as every stored one is) is
    checked once: its arrays are read-only and the entry points skip their per-call checks
    only while the arrays are the ones checked; a replaced or re-enabled array, a copy or a
    pickle is checked again on every call."""
    import pickle

    from phasic.store import Store
    from phasic.traces import check_trace, ensure_trace, load_trace, trace_key

    g = Graph(two_island)
    g.update_weights(THETA)
    tr = graph_trace(g)
    V, E, hi = g.vertices_length(), int(g._ll.target.size), int(g._ll.indptr[1])
    assert _core.is_checked(tr, V, E) and not _core.is_checked(tr, V, E + 1)
    with pytest.raises(ValueError, match="read-only"):
        tr["b"][0] = 10**6
    for other in (dict(tr), pickle.loads(pickle.dumps(tr))):
        assert not _core.is_checked(other, V, E)
    st = Store(tmp_path / "store")
    ensure_trace(g, st)
    stored = load_trace(trace_key(g), st, graph=g)
    assert _core.is_checked(stored, V, E) and _core.is_checked(check_trace(dict(tr), V, E), V, E)

    n, w, r = tr["code"].size, g._ll.w, np.ones(V)
    a_t, a_e = g._ll.target[:hi].astype(np.int64), np.arange(hi, dtype=np.int64)
    i = int(np.flatnonzero(tr["code"] == 1)[0])
    swapped = graph_trace(Graph.from_arrays(*g.to_arrays()))  # another trace object
    swapped["b"] = bad_copy(tr, "b", i, n + 9)["b"]  # a field replaced after the check
    with pytest.raises(TraceError, match=rf"b\[{i}\]"):
        _core.evaluate_tape(swapped["code"], swapped["a"], swapped["b"], swapped["c"], w, swapped)
    with pytest.raises(TraceError):
        _core.cph_moments_batch(swapped, w.reshape(1, -1), a_t, a_e, r, 2)
    reopened = graph_trace(Graph.from_arrays(*g.to_arrays()))
    reopened["xj"].flags.writeable = True  # made writable again, then broken
    reopened["xj"][2] = 10**6
    with pytest.raises(TraceError):
        _core.cph_moments_theta(reopened, np.array([THETA]), g._ll.base, g._ll.coef, a_t, a_e, r, 2)
    val = _core.evaluate_tape(tr["code"], tr["a"], tr["b"], tr["c"], w, tr)
    with pytest.raises(TraceError, match=r"x[ij]\["):  # x too short for the checked trace
        _core.run_program(tr["xi"], tr["xj"], tr["xs"], val, np.ones(3), False, tr)
    with pytest.raises(TraceError, match=r"xi\[0\]"):  # arrays not the trace's own
        _core.run_program(bad_copy(tr, "xi", 0, V)["xi"], tr["xj"], tr["xs"], val, np.ones(V), False, tr)


def test_ensure_trace_stores_although_an_earlier_write_of_the_graph_failed(tmp_path):
    """ensure_trace read a ``write_failed`` left on the graph by an earlier computation and
    then skipped storing the trace in a store that can be written."""
    from phasic.store import Store
    from phasic.traces import ensure_trace, trace_key

    g = Graph(two_island, hierarchical=True)
    g.update_weights(THETA)
    ro = tmp_path / "ro"
    with tmpfs(ro, read_only=True):
        with pytest.warns(CacheWarning):
            graph_trace(g, Store(ro))
    assert g._ll.hierarchy_stats["write_failed"]
    g._ll.hierarchical = False  # the same graph, now computed in memory (its stats stay)
    g._ll.trace = None
    st = Store(tmp_path / "rw")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        key = ensure_trace(g, st)
    assert key == trace_key(g) and st.contains("traces", key)


# --------------------------------------------------- compiled replay plans


def with_parallel_edges(seed):
    """Random graph with duplicated edges (the tape merges them before normalising)."""
    g = random_param_graph(seed, n=25)
    rng = np.random.default_rng(seed)
    for v in range(1, 20, 3):
        g.add_edge(v, v + 1, 0.0, coefficients=rng.uniform(0, 1, 3))
        g.add_edge(v, v + 1, 0.3)
    return g


def graphs():
    yield "two_island", Graph(two_island)
    for seed in range(3):
        yield f"random{seed}", random_param_graph(seed)
    yield "parallel", with_parallel_edges(7)


def plain(g, tr, W, k, r):
    hi = int(g._ll.indptr[1])
    return _core.cph_moments_batch(
        tr, np.atleast_2d(W), g._ll.target[:hi].astype(np.int64), np.arange(hi, dtype=np.int64), r, k
    )


def plan_of(g):
    tr = graph_trace(g)
    hi = int(g._ll.indptr[1])
    return tr, _core.ReplayPlan(tr, int(g._ll.target.size), hi, g._ll.target[:hi])


def rewards_for(g, rng, kind):
    if kind is None:
        return None, np.r_[0.0, np.ones(g.vertices_length() - 1)]
    r = rng.uniform(0.0, 2.0, g.vertices_length())
    r[0] = 0.0
    return r, r


@pytest.mark.parametrize("name,g", list(graphs()))
@pytest.mark.parametrize("rewards", [None, "random"])
def test_single_is_bitwise_plain_replay(name, g, rewards):
    rng = np.random.default_rng(1)
    tr, plan = plan_of(g)
    r_plan, r_plain = rewards_for(g, rng, rewards)
    for _ in range(3):
        g.update_weights(rng.uniform(0.3, 2.5, g.theta_dim))
        for k in (1, 2, 4):
            got = plan.moments(g._ll.w, k, r_plan)
            want = plain(g, tr, g._ll.w, k, r_plain)[0]
            assert got == want.tolist()


@pytest.mark.parametrize("name,g", list(graphs()))
@pytest.mark.parametrize("block", [4, 8, 16])
def test_batch_is_bitwise_plain_replay(name, g, block):
    rng = np.random.default_rng(2)
    tr, plan = plan_of(g)
    th = rng.uniform(0.3, 2.5, (block * 2 + 3, g.theta_dim))  # last block partial
    r_plan, r_plain = rewards_for(g, rng, "random")
    hi = int(g._ll.indptr[1])
    want, wneg = _core.cph_moments_theta(
        tr, th, g._ll.base, g._ll.coef, g._ll.target[:hi].astype(np.int64), np.arange(hi, dtype=np.int64), r_plain, 3
    )
    got, neg = plan.moments_theta(th, g._ll.base, g._ll.coef, 3, r_plan, block)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(neg, wneg)


def test_negative_and_degenerate_weights_match_plain_replay():
    g = random_param_graph(3)
    tr, plan = plan_of(g)
    hi = int(g._ll.indptr[1])
    th = np.array([[1.0, 1.0, 1.0], [-5.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.5, 0.2]])
    r = np.r_[0.0, np.ones(g.vertices_length() - 1)]
    want, wneg = _core.cph_moments_theta(
        tr, th, g._ll.base, g._ll.coef, g._ll.target[:hi].astype(np.int64), np.arange(hi, dtype=np.int64), r, 2
    )
    got, neg = plan.moments_theta(th, g._ll.base, g._ll.coef, 2, None, 8)
    assert neg.tolist() == [False, True, False, False]
    np.testing.assert_array_equal(neg, wneg)
    np.testing.assert_array_equal(got, want)  # NaN where the plain replay has NaN
    assert not np.all(np.isfinite(got[2]))


def test_graph_switches_to_the_plan_on_its_second_evaluation():
    g = random_param_graph(4)
    g.update_weights([0.7, 1.1, 0.4])
    first = g.moments(3)
    assert g._ll.plan[1] is None  # one evaluation: no compilation
    second = g.moments(3)
    assert g._ll.plan[1] is not None  # compiled on the second
    assert first == second
    h = g.copy()  # a new graph starts over
    h.update_weights([0.7, 1.1, 0.4])
    assert h.moments(3) == first and getattr(h, "_plan", (None, None))[1] is None
    batch = evaluate_batch(g, np.array([[0.7, 1.1, 0.4]] * 9), k=3)
    np.testing.assert_array_equal(batch[0], first)


def test_degenerate_theta_still_raises_clearly():
    g = random_param_graph(5)
    g.update_weights([1.0, 1.0, 1.0])
    g.moments(2)
    g.moments(2)
    g.update_weights([0.0, 0.0, 0.0])
    with pytest.raises(ParameterError, match="non-finite|total out-rate 0|never left"):
        g.moments(2)
    with pytest.raises(ParameterError, match="negative rate"):
        evaluate_batch(g, np.array([[1.0, 1.0, 1.0]] * 8 + [[-9.0, 1.0, 1.0]]), k=2)


def test_concurrent_evaluations_do_not_share_work_arrays():
    g = Graph(two_island)
    tr, plan = plan_of(g)
    thetas = np.random.default_rng(6).uniform(0.5, 2.0, (40, 2))
    weights = []
    for th in thetas:
        g.update_weights(th)
        weights.append(g._ll.w.copy())
    want = [plan.moments(w, 2) for w in weights]
    got = [None] * len(weights)

    def work(idx):
        for i in idx:
            got[i] = plan.moments(weights[i], 2)

    ts = [threading.Thread(target=work, args=(range(j, len(weights), 4),)) for j in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert got == want


def test_malformed_traces_are_rejected():
    g = Graph(two_island)
    tr = dict(graph_trace(g))
    hi = int(g._ll.indptr[1])
    bad = dict(tr, a=tr["a"].copy())
    i = int(np.flatnonzero(tr["code"] != 0)[0])
    bad["a"][i] = i + 5  # an operand after the op
    with pytest.raises(ValueError, match="malformed"):
        _core.ReplayPlan(bad, int(g._ll.target.size), hi, g._ll.target[:hi])
    bad = dict(tr, xs=tr["xs"].copy())
    bad["xs"][0] = tr["code"].size
    with pytest.raises(ValueError, match="malformed"):
        _core.ReplayPlan(bad, int(g._ll.target.size), hi, g._ll.target[:hi])


def test_edge_weights():
    g = random_param_graph(8)
    g._ll.flush()
    th = np.array([0.3, 1.7, 0.9])
    w, bad = _core.edge_weights(g._ll.base, g._ll.coef, th)
    np.testing.assert_allclose(w, g._ll.base + g._ll.coef @ th, rtol=1e-15, atol=0)
    assert bad == -1
    w, bad = _core.edge_weights(g._ll.base, g._ll.coef, np.array([0.3, -50.0, 0.9]))
    assert bad == int(np.flatnonzero(~(g._ll.base + g._ll.coef @ [0.3, -50.0, 0.9] >= 0))[0])
    with pytest.raises(ParameterError, match="rates must be >= 0"):
        g.update_weights([0.3, -50.0, 0.9])


def dense_moments_of_weights(g, w, k, r):
    """First k reward moments from edge weights w (CSR order of g), by dense algebra written
    here: alpha and S assembled from (indptr, target, w), m_j = j! alpha (U diag r)^j 1."""
    V = g.vertices_length()
    src = np.repeat(np.arange(V), np.diff(g._ll.indptr))
    tv = np.array([v for v in range(1, V) if g._ll.indptr[v + 1] > g._ll.indptr[v]])
    pos = {v: i for i, v in enumerate(tv)}
    alpha, S = np.zeros(tv.size), np.zeros((tv.size, tv.size))
    for u, z, we in zip(src, g._ll.target, w):
        if u == 0:
            if z in pos:
                alpha[pos[z]] += we
            continue
        S[pos[u], pos[u]] -= we
        if z in pos:
            S[pos[u], pos[z]] += we
    U = np.linalg.inv(-S)
    y, out = np.ones(tv.size), []
    for j in range(1, k + 1):
        y = U @ (r[tv] * y)
        out.append(np.prod(np.arange(1, j + 1)) * alpha @ y)
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("rewards", [None, "random"])
def test_moments_vjp_matches_dense_derivatives(seed, k, rewards):
    """ReplayPlan.moments_vjp (the core adjoint used by moments_from_graph): its moments are
    the plan's, its dw matches central differences of a dense formula, and it is bitwise the
    adjoint replayed with the plain tape."""
    from phasic.jax._ops import _tape_grad

    rng = np.random.default_rng(seed)
    g = random_param_graph(seed, n=12)
    g.update_weights(rng.uniform(0.5, 2.0, g.theta_dim))
    tr, plan = plan_of(g)
    r_plan, r = rewards_for(g, rng, rewards)
    cot = rng.normal(size=k)
    m, dw = plan.moments_vjp(g._ll.w, k, r_plan, cot, g._ll.indptr, g._ll.target)
    assert m.tolist() == plan.moments(g._ll.w, k, r_plan)
    np.testing.assert_allclose(m, dense_moments_of_weights(g, g._ll.w, k, r), rtol=1e-11)
    fd = np.empty_like(dw)
    for e in range(dw.size):
        h = max(1e-6, 1e-6 * g._ll.w[e])
        wp, wm = g._ll.w.copy(), g._ll.w.copy()
        wp[e] += h
        wm[e] -= h
        fd[e] = cot @ (dense_moments_of_weights(g, wp, k, r) - dense_moments_of_weights(g, wm, k, r)) / (2 * h)
    np.testing.assert_allclose(dw, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())
    th = g._ll.theta.copy()
    assert np.array_equal(dw @ g._ll.coef, _tape_grad(g._ll.copy(), th, k, r, cot))


def test_moments_vjp_rejects_mismatched_arrays():
    g = random_param_graph(1, n=8)
    g.update_weights([1.0, 1.0, 1.0])
    _, plan = plan_of(g)
    with pytest.raises(ValueError, match="lengths"):
        plan.moments_vjp(g._ll.w[:-1], 2, None, np.ones(2), g._ll.indptr, g._ll.target)
    with pytest.raises(ValueError, match="lengths"):
        plan.moments_vjp(g._ll.w, 2, None, np.ones(3), g._ll.indptr, g._ll.target)
    bad = g._ll.indptr.copy()
    bad[1] += 1
    with pytest.raises(ValueError, match="indptr"):
        plan.moments_vjp(g._ll.w, 2, None, np.ones(2), bad, g._ll.target)


def test_moments_vjp_theta_rows():
    """moments_vjp_theta (one core call for many thetas): per row the moments of moments()
    bitwise and the gradient dw . coef of moments_vjp; a negative row is flagged with NaN."""
    g = random_param_graph(4, n=15)
    g.update_weights([1.0, 1.0, 1.0])
    _, plan = plan_of(g)
    rng = np.random.default_rng(2)
    th = rng.uniform(0.3, 2.0, (5, 3))
    th[3, 1] = -40.0  # makes some rate negative
    cots = rng.normal(size=(5, 2))
    r = rng.uniform(0, 2, g.vertices_length())
    m, grads, neg = plan.moments_vjp_theta(th, g._ll.base, g._ll.coef, 2, r, cots, g._ll.indptr, g._ll.target)
    assert neg.tolist() == [False, False, False, True, False]
    assert np.isnan(m[3]).all() and np.isnan(grads[3]).all()
    for i in (0, 1, 2, 4):
        w, bad = _core.edge_weights(g._ll.base, g._ll.coef, th[i])
        assert bad == -1
        assert m[i].tolist() == plan.moments(w, 2, r)
        _, dw = plan.moments_vjp(w, 2, r, cots[i], g._ll.indptr, g._ll.target)
        np.testing.assert_allclose(grads[i], dw @ g._ll.coef, rtol=1e-13, atol=0)
    with pytest.raises(ValueError, match="cots has shape"):
        plan.moments_vjp_theta(th, g._ll.base, g._ll.coef, 2, r, cots[:4], g._ll.indptr, g._ll.target)
    with pytest.raises(ValueError, match="base/coef"):
        plan.moments_vjp_theta(
            np.ascontiguousarray(th[:, :2]), g._ll.base, g._ll.coef, 2, r, cots, g._ll.indptr, g._ll.target
        )
