"""Frictions a new user hit (issue 14, "Trust"): each gets a clear error, not a raw
traceback, a crash or a silently wrong number."""

import os
import pickle
import re
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from phasic import Graph, with_ipv
from phasic.exceptions import GraphConstructionError, ParameterError, PhasicError
from phasic.state_indexing import Property, StateIndexer
from tests.models import coalescent_coef

REPO = Path(__file__).resolve().parents[1]


def _exact_expectation(n, theta):
    return sum(2 / (k * (k - 1) * theta) for k in range(2, n + 1))


def _subprocess(code, timeout, limit_bytes=None, env=None):
    def limit():
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(code, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, preexec_fn=limit)


# ------------------------------------------------------------------ weights before update_weights
CALLS = {
    "moments": lambda g: g.moments(2),
    "expectation": lambda g: g.expectation(),
    "variance": lambda g: g.variance(),
    "covariance": lambda g: g.covariance(np.ones(g.vertices_length()), np.ones(g.vertices_length())),
    "expected_sojourn_time": lambda g: g.expected_sojourn_time(),
    "pdf": lambda g: g.pdf([0.5]),
    "cdf": lambda g: g.cdf([0.5]),
    "sample": lambda g: g.sample(3, seed=1),
    "as_matrices": lambda g: g.as_matrices(),
    "transient_vertices": lambda g: g.transient_vertices(),
    "reward_transform": lambda g: g.reward_transform(np.ones(g.vertices_length())),
}


def _unweighted_graphs():
    """A parameterised graph before update_weights, reached every way a user gets one."""
    g = Graph(coalescent_coef)
    weighted = Graph(coalescent_coef)
    weighted.update_weights([1.0])
    manual = Graph(state_length=1)
    a, b = manual.find_or_create_vertex([2]), manual.find_or_create_vertex([1])
    manual.add_edge(0, a, 1.0)
    manual.add_edge(a, b, 0.0, coefficients=[1.0])
    discrete = Graph(coalescent_coef, discrete=True)
    return {
        "built": g,
        "hierarchical": Graph(coalescent_coef, hierarchical=True),
        "pickled": pickle.loads(pickle.dumps(g)),
        "copy": g.copy(),
        "store arrays": Graph.from_arrays(*g.to_arrays(compact=True)),
        "plain arrays": Graph.from_arrays(*g.to_arrays()),
        "manual": manual,
        "discrete": discrete,
        # a weighted graph's arrays carry no theta: what the store holds
        "from a weighted graph's arrays": Graph.from_arrays(*weighted.to_arrays(compact=True)),
    }


@pytest.mark.parametrize("how", list(_unweighted_graphs()))
def test_parameterised_graph_refuses_every_computation_before_update_weights(how):
    g = _unweighted_graphs()[how]
    for name, call in CALLS.items():
        if g.discrete and name == "pdf":
            continue
        with pytest.raises(ParameterError, match=r"update_weights\(theta\)") as info:
            call(g)
        assert f"{name}()" in str(info.value), (name, str(info.value))


def test_graphs_from_the_store_refuse_too_then_work_after_update_weights(cache_dir):
    for _ in range(2):  # built and stored, then loaded from the store
        g = Graph(coalescent_coef, cache=True, hierarchical=True)
        with pytest.raises(ParameterError, match=r"moments\(\) .*update_weights\(theta\)"):
            g.moments(2)
        g.update_weights([2.0])
        assert g.expectation() == pytest.approx(_exact_expectation(4, 2.0), rel=1e-12)
    assert any(cache_dir.rglob("*.h5"))


def test_update_weights_then_computations_and_pickles_keep_working():
    g = Graph(coalescent_coef)
    g.update_weights([2.0])
    assert g.expectation() == pytest.approx(_exact_expectation(4, 2.0), rel=1e-12)
    again = pickle.loads(pickle.dumps(g))
    assert again.expectation() == pytest.approx(_exact_expectation(4, 2.0), rel=1e-12)
    # a graph whose callback gives only numeric rates needs no theta, with or without theta_dim
    num = Graph(with_ipv([4])(lambda s: [] if s[0] <= 1 else [[[s[0] - 1], 1.0]]), theta_dim=2)
    assert num.expectation() == pytest.approx(3.0, rel=1e-12)


def test_theta_for_a_callback_without_theta_says_to_use_update_weights():
    with pytest.raises(ParameterError, match=r"theta=.*'coalescent_coef'.*update_weights\(theta\)"):
        Graph(coalescent_coef, theta=[2.0])
    with pytest.raises(ParameterError, match=r"rate=.*no parameter of that name"):
        Graph(coalescent_coef, rate=1.0)

    @with_ipv([3])
    def takes_theta(state, theta=1.0):
        return [] if state[0] <= 1 else [[[state[0] - 1], theta]]

    assert Graph(takes_theta, theta=2.0).expectation() == pytest.approx(1.0, rel=1e-12)


def test_ipv_of_the_wrong_length_is_named_with_both_lengths():
    @with_ipv([3, 0])
    def one_slot(state):
        (n,) = state
        return [] if n <= 1 else [[[n - 1], 1.0]]

    with pytest.raises(GraphConstructionError) as info:
        Graph(one_slot)
    msg = str(info.value)
    assert "IPV [[[3, 0], 1.0]]" in msg and "length 2" in msg and "length 1" in msg, msg
    assert "state [3, 0]" in msg, msg

    with pytest.raises(
        GraphConstructionError,
        match=r"IPV \[\[\[3, 0\], 1\.0\]\] has states of length 2, "
        r"but state_length=3",
    ):
        Graph(one_slot, state_length=3)


def test_errors_print_states_as_plain_integers():
    @with_ipv([3, 0])
    def grows(state):  # next states built from the state's numpy entries
        return [] if state[0] == 0 else [[[state[0] - 1, state[1], state[1]], 1.0]]

    @with_ipv([3, 0])
    def negative(state):
        return [] if state[0] == 0 else [[[state[0] - 1, state[1]], np.float64(-1.0)]]

    @with_ipv([3, 0])
    def fractional(state):
        return [] if state[0] == 0 else [[[state[0] - 1, np.float64(1.5)], 1.0]]

    messages = []
    for cb in (grows, negative, fractional):
        with pytest.raises(GraphConstructionError) as info:
            Graph(cb)
        messages.append(str(info.value))
    g = Graph(state_length=1)
    v = g.find_or_create_vertex([1])
    with pytest.raises(GraphConstructionError) as info:
        g.add_edge(np.int64(v), np.int64(v), 1.0)
    messages.append(str(info.value))
    for msg in messages:
        assert "np." not in msg and "int32(" not in msg, msg
    assert "state [2, 0, 0] has length 3" in messages[0]
    assert "rate -1.0 for the edge [3, 0] -> [2, 0]" in messages[1]
    assert "state [2, 1.5] has non-integer entry 1.5" in messages[2]
    assert "self-loop on vertex 1:" in messages[3]


def test_reference_docs_state_indexer_spelling_builds_a_graph():
    ix = StateIndexer(lineage=[Property("descendants", max_value=3, min_value=1)])

    def callback(state, indexer):
        lin = indexer.lineage
        n = int(state[lin.slice].sum())
        if n <= 1:
            return []
        nxt = state.copy()
        nxt[lin.p2i(descendants=1)] -= 1
        return [[nxt, n * (n - 1) / 2]]

    start = ix.empty_state()
    start[ix.lineage.p2i(descendants=1)] = 3
    g = Graph(callback, ipv=start.tolist(), indexer=ix)
    assert g.expectation() == pytest.approx(1 + 1 / 3, rel=1e-12)


# ------------------------------------------------------------------ a callback that returns None
def test_callback_returning_none_is_an_error_not_an_absorbing_state():
    @with_ipv([3])
    def forgot_return(state):
        if state[0] > 1:
            [[[state[0] - 1], 1.0]]  # the `return` is missing

    with pytest.raises(GraphConstructionError) as info:
        Graph(forgot_return)
    msg = str(info.value)
    assert "state [3]" in msg and "the callback returned None; return [] for an absorbing state" in msg


# ------------------------------------------------------------------ phasic.<submodule> after import
def test_public_submodules_work_after_a_bare_import_without_importing_jax():
    code = textwrap.dedent("""
        import sys
        import phasic
        assert "jax" not in sys.modules and "dask" not in sys.modules, "import phasic pulled in jax/dask"
        assert {"traces", "distributed", "jax"} <= set(dir(phasic))
        assert callable(phasic.traces.evaluate_batch)
        assert callable(phasic.traces.ensure_trace)
        assert callable(phasic.distributed.build) and callable(phasic.distributed.sweep)
        assert phasic.jax.CompilationConfig is phasic.CompilationConfig
        try:
            phasic.no_such_module
        except AttributeError as exc:
            assert "no_such_module" in str(exc)
        else:
            raise AssertionError("phasic.no_such_module did not raise")
        print("ok")
    """)
    run = _subprocess([sys.executable, "-c", code], timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]


# ------------------------------------------------------------------ huge numbers
@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: Graph(coalescent_coef, max_vertices=10**30), r"max_vertices=10{30} is beyond 2147483647"),
        (lambda: Graph(coalescent_coef, max_vertices=2**40, cache=True), r"max_vertices=1099511627776"),
        (lambda: Graph(state_length=10**10), r"state_length=10000000000 is beyond 1000000"),
        (lambda: Graph(10**10), r"state_length=10000000000"),
        (lambda: Graph(state_length=10**5000), r"state_length=an integer of 16610 bits"),
        (lambda: Graph(coalescent_coef, theta_dim=10**10), r"theta_dim=10000000000 is beyond"),
        (lambda: Graph(state_length=1).find_vertex([10**30]), r"state entry 10{30} does not fit in int32"),
        (lambda: Graph(coalescent_coef, ipv=[10**30]), r"state entry 10{30} does not fit in int32"),
        (
            lambda: Graph(with_ipv([3])(lambda s: [] if s[0] <= 1 else [[[s[0] - 1], 10**400]])),
            r"rate <an integer of 1329 bits>",
        ),
        (lambda: Graph(lambda s: [], ipv=[[[1], 10**400]]), r"IPV probability <an integer of 1329 bits>"),
        (
            lambda: Graph(with_ipv([3])(lambda s: [] if s[0] <= 1 else [[[s[0] - 1], 1.0]])).sample(10**30),
            r"n=10{30} is more than",
        ),
        (lambda: StateIndexer([Property("descendants", max_value=10**10)]), r"10000000001 slots"),
    ],
)
def test_huge_numbers_give_clear_errors(make, match):
    with pytest.raises(PhasicError, match=match):
        make()


# ------------------------------------------------------------------ YAML alias bomb
BOMB = "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
BOMB = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + BOMB


def test_yaml_alias_bomb_is_refused_in_bounded_memory_and_time(tmp_path):
    assert len(BOMB) < 450  # 9**9 strings once expanded
    path = tmp_path / "models.yaml"
    path.write_text(BOMB)
    # 1.5 GB of address space: enough for the interpreter and the CLI, far from the expansion
    run = _subprocess([sys.executable, "-m", "phasic.cli", "build", str(path)], timeout=180, limit_bytes=1536 * 2**20)
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    assert "alias" in run.stderr and len(run.stderr) < 1000, run.stderr[-2000:]
    assert "Traceback" not in run.stderr


def test_yaml_specs_refuse_recursive_aliases_and_keep_messages_short(tmp_path):
    from phasic.cli._build import read_models
    from phasic.models import read_spec

    path = tmp_path / "rec.yaml"
    path.write_text("a: &a [1, *a]\n")
    with pytest.raises(ParameterError, match="alias inside its own anchor"):
        read_models(path)
    # a document within the bound but large: the message is short
    big = tmp_path / "big.yaml"
    big.write_text("x: &x [" + ", ".join(["12345"] * 1000) + "]\ny: [*x, *x, *x, *x, *x]\n")
    with pytest.raises(ParameterError) as info:
        read_models(big)
    assert len(str(info.value)) < 400, len(str(info.value))
    with pytest.raises(ParameterError, match="alias"):
        read_spec(BOMB)
    # anchors and aliases within the bound keep working
    ok = tmp_path / "ok.yaml"
    ok.write_text(
        "p: &p {theta: 2.0}\nmodels:\n  - {name: k, module: tests.models, callback: coalescent, params: *p}\n"
    )
    assert read_spec(f"@{ok}")["params"] == {"theta": 2.0}


def test_callback_signature_is_read_once_per_code_object_and_an_edit_is_seen(monkeypatch):
    """Graph() checks params= against the callback's signature on every call (cache hits
    included): inspect.signature is paid once per code object, and a new code object (an
    edited callback) is read again."""
    import inspect

    from phasic import callbacks

    calls = []
    real = inspect.signature
    monkeypatch.setattr(inspect, "signature", lambda f, *a, **k: calls.append(f) or real(f, *a, **k))

    @with_ipv([3])
    def cb(state, rate=1.0):
        n = state[0]
        return [] if n <= 1 else [[[n - 1], rate]]

    assert Graph(cb, rate=2.0).expectation() == pytest.approx(1.0)
    n = len(calls)
    for _ in range(3):
        Graph(cb, rate=2.0)
    assert len(calls) == n  # memoised
    with pytest.raises(ParameterError, match="slope="):
        Graph(cb, slope=2.0)

    def edited(state, slope=1.0):
        n = state[0]
        return [] if n <= 1 else [[[n - 1], slope]]

    cb.__wrapped__.__code__ = edited.__code__  # the same function object, another signature
    assert Graph(cb, slope=4.0).expectation() == pytest.approx(0.5)
    with pytest.raises(ParameterError, match="rate="):
        Graph(cb, rate=2.0)
    assert callbacks.accepted_extras(cb, {"model": 1, "indexer": None}) == {}


def _chain(state):
    n = state[0]
    return [] if n <= 1 else [[[n - 1], 1.0]]


def test_ipv_takes_numpy_integers_and_refuses_bools_naming_them():
    assert Graph(_chain, ipv=np.array([5])).expectation() == pytest.approx(4.0)
    assert Graph(_chain, ipv=[[np.array([np.int64(5)]), 1.0]]).expectation() == pytest.approx(4.0)
    assert Graph(_chain, ipv=[np.int32(5)]).expectation() == pytest.approx(4.0)
    for ipv in ([True], [[[True], 1.0]], np.array([True])):
        with pytest.raises(GraphConstructionError, match="bool True"):
            Graph(_chain, ipv=ipv)

    def bool_state(state):
        return [] if state[0] <= 1 else [[[state[0] == 3], 1.0]]

    with pytest.raises(GraphConstructionError, match=r"state \[True\] holds the bool True"):
        Graph(bool_state, ipv=[3])


def test_messages_print_tuples_as_tuples_with_plain_numbers():
    """One plain() for the core's messages and Python's: a tuple stays a tuple."""

    def cb(state):
        return [] if state[0] <= 1 else [((np.int64(5), 0),)]

    with pytest.raises(GraphConstructionError, match=re.escape("malformed edge ((5, 0),)")):
        Graph(cb, ipv=[3])


def test_a_state_whose_only_out_edges_are_self_loops_is_never_left():
    def only_loop(state):
        n = state[0]
        return [] if n <= 1 else [[[n], 2.0]] if n == 3 else [[[n - 1], 1.0]]

    for discrete in (False, True):
        with pytest.raises(PhasicError, match=r"state \[3\].*only out-edges are self-loops: it is never left"):
            Graph(only_loop, ipv=[4], discrete=discrete)

    def loop_and_exit(state):
        n = state[0]
        return [] if n <= 1 else [[[n], 5.0], [[n - 1], 2.0]]

    # continuous: a self-loop beside an exit changes nothing
    assert Graph(loop_and_exit, ipv=[4]).moments(2) == pytest.approx([1.5, 3.0])


def _dense_dph(T, alpha, kmax):
    """pmf[1..kmax] and the mean of a DPH with sub-stochastic T (transient states)."""
    t = 1 - T.sum(axis=1)
    pmf, v = [], alpha.copy()
    for _ in range(kmax):
        pmf.append(float(v @ t))
        v = v @ T
    mean = float(alpha @ np.linalg.solve(np.eye(len(T)) - T, np.ones(len(T))))
    return np.array(pmf), mean


def test_discrete_self_loops_are_geometric_holding_checked_against_a_dense_matrix():
    def dph(state):  # 3 -> 2 -> 1 -> 0 (absorbing); an explicit self-loop 0.3, missing 0.2
        n = state[0]
        return [] if n == 0 else [[[n], 0.3], [[n - 1], 0.5]]

    g = Graph(dph, ipv=[3], discrete=True)
    T = np.array([[0.5, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.5, 0.5]])  # rows/cols: states 1, 2, 3
    pmf, mean = _dense_dph(T, np.array([0.0, 0.0, 1.0]), 12)
    assert g.expectation() == pytest.approx(mean) == pytest.approx(6.0)
    assert np.allclose([g.pmf(k) for k in range(1, 13)], pmf, atol=1e-14)

    def over(state):  # 0.8 + 0.5 > 1: the self-loop used to be dropped silently
        n = state[0]
        return [] if n == 0 else [[[n], 0.8], [[n - 1], 0.5]]

    with pytest.raises(GraphConstructionError, match=r"state \[3\] sum to 1.3 > 1 \(its self-loops included\)"):
        Graph(over, ipv=[3], discrete=True)

    def coef_loop(state):
        n = state[0]
        return [] if n == 0 else [[[n], [0.5]], [[n - 1], 0.5]]

    with pytest.raises(GraphConstructionError, match="self-loop with coefficients"):
        Graph(coef_loop, ipv=[3], discrete=True)
