"""Trust in stored traces (issue 14, items 1 and 5).

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
"""

import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import phasic
from phasic import Graph, _core
from phasic.exceptions import CacheWarning, TraceError
from phasic.traces import evaluate_batch, graph_trace
from tests.models import dense_moments, two_island

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
    from phasic import Graph, traces
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
            return traces.evaluate_batch(graph(), THETAS[:int(call[5:])], k=2).tolist()
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
    E = int(g._target.size)
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


# ------------------------------------------------------------------- the core refuses
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
    V, E = g.vertices_length(), int(g._target.size)
    hi = int(g._indptr[1])
    n = tr["code"].size
    w = g._w
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
    a_t, a_e = g._target[:hi].astype(np.int64), np.arange(hi, dtype=np.int64)
    for bad in (bad_copy(tr, "xj", 2, 10**6), bad_copy(tr, "xinit", 3, n), bad_copy(tr, "a", i, i)):
        with pytest.raises(TraceError):
            _core.cph_moments_batch(bad, w.reshape(1, -1), a_t, a_e, r, 2)
        with pytest.raises(TraceError):
            _core.cph_moments_theta(bad, np.array([THETA]), g._base, g._coef, a_t, a_e, r, 2)
    with pytest.raises(TraceError, match="start edge"):
        _core.cph_moments_batch(tr, w.reshape(1, -1), a_t, a_e + E, r, 2)
    with pytest.raises(TraceError, match="rewards"):
        _core.cph_moments_batch(tr, w.reshape(1, -1), a_t, a_e, r[:2], 2)
    bad_ip = g._indptr.copy()
    bad_ip[2] = -5
    with pytest.raises(TraceError, match="indptr"):
        _core.record_trace(bad_ip, g._target)
    with pytest.raises(TraceError, match="target"):
        _core.record_trace(g._indptr, np.full_like(g._target, V))
    with pytest.raises(TraceError, match="indptr"):
        _core.scc(bad_ip, g._target)
    plan = _core.ReplayPlan(tr, E, hi, g._target[:hi])
    with pytest.raises(TraceError, match="target"):
        plan.moments_vjp(w, 2, None, np.ones(2), g._indptr, np.full_like(g._target, V))
    # the good arrays still work, and give the graph's moments
    np.testing.assert_allclose(
        _core.cph_moments_batch(tr, w.reshape(1, -1), a_t, a_e, r, 2)[0], dense_moments(g, 2), rtol=1e-12
    )


@in_child
def test_core_refuses_a_bad_component_trace_in_the_splice(trace_and_graph):
    """record_trace(provided=...) checks each provided component trace against the
    component it replaces (the splice indexes the component's edges and vertices)."""
    tr, g = trace_and_graph
    order, ptr = _core.scc(g._indptr, g._target)
    k = int(np.argmax(np.diff(ptr)))
    lp, lt = phasic.traces.local_structure(g._indptr, g._target, order[ptr[k] : ptr[k + 1]])
    local = _core.record_trace(lp, lt, None, True)
    good = _core.record_trace(g._indptr, g._target, {k: local})
    phasic.traces.check_trace(good, g.vertices_length(), int(g._target.size))
    hi = int(g._indptr[1])
    got = _core.cph_moments_batch(
        good,
        g._w.reshape(1, -1),
        g._target[:hi].astype(np.int64),
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
            _core.record_trace(g._indptr, g._target, {k: bad})


def test_check_trace_accepts_recorded_traces_and_names_the_bad_entry(trace_and_graph):
    tr, g = trace_and_graph
    V, E = g.vertices_length(), int(g._target.size)
    phasic.traces.check_trace(tr, V, E)
    with pytest.raises(TraceError, match=r"order"):
        phasic.traces.check_trace(bad_copy(tr, "order", 0, 0), V, E)
    with pytest.raises(TraceError, match=r"seg_ptr"):
        phasic.traces.check_trace(bad_copy(tr, "seg_ptr", -1, tr["code"].size + 1), V, E)
    with pytest.raises(TraceError, match=r"edge"):
        phasic.traces.check_trace(tr, V, 4)


# ------------------------------------------------------------------- failed writes
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
        assert g._trace is not None
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


# ------------------------------------------------------------- checked once per trace object
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
    V, E, hi = g.vertices_length(), int(g._target.size), int(g._indptr[1])
    assert _core.is_checked(tr, V, E) and not _core.is_checked(tr, V, E + 1)
    with pytest.raises(ValueError, match="read-only"):
        tr["b"][0] = 10**6
    for other in (dict(tr), pickle.loads(pickle.dumps(tr))):
        assert not _core.is_checked(other, V, E)
    st = Store(tmp_path / "store")
    ensure_trace(g, st)
    stored = load_trace(trace_key(g), st, graph=g)
    assert _core.is_checked(stored, V, E) and _core.is_checked(check_trace(dict(tr), V, E), V, E)

    n, w, r = tr["code"].size, g._w, np.ones(V)
    a_t, a_e = g._target[:hi].astype(np.int64), np.arange(hi, dtype=np.int64)
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
        _core.cph_moments_theta(reopened, np.array([THETA]), g._base, g._coef, a_t, a_e, r, 2)
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
    assert g._hierarchy_stats["write_failed"]
    g._hierarchical = False  # the same graph, now computed in memory (its stats stay)
    g._trace = None
    st = Store(tmp_path / "rw")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        key = ensure_trace(g, st)
    assert key == trace_key(g) and st.contains("traces", key)
