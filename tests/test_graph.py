"""Graph (phasic/graph.py): building from a callback or by hand, the array contracts (shapes,
dtypes, order, determinism), round trips through arrays and pickles, update_weights, and clear
errors for bad callbacks, rates, states and sizes."""

import math
import pickle
import re
from collections import deque

import numpy as np
import pytest

from phasic import Graph, GraphConstructionError, ParameterError, with_ipv
from phasic.batch import evaluate_batch
from phasic.exceptions import PhasicError, StateSpaceTooLarge
from phasic.state_indexing import Property, StateIndexer
from tests.models import (
    GRID_IPV,
    assert_value_error,
    coalescent,
    coalescent_coef,
    good_graph,
    grid_walk,
    kingman,
    random_param_graph,
    two_island,
)

pytestmark = pytest.mark.usefixtures("isolated_cache")


def two_param(state):
    k = int(state[0])
    if k >= 4:
        return []
    return [[[k + 1], [1.0, float(k)]], [[9], [0.5, 0.0]]]


def bfs_states(transitions, ipv):
    seen, order, q = set(), [], deque()
    for st, _ in ipv:
        t = tuple(st)
        if t not in seen:
            seen.add(t)
            q.append(t)
    while q:
        s = q.popleft()
        order.append(s)
        for ns, _ in transitions(list(s)):
            t = tuple(ns)
            if t not in seen:
                seen.add(t)
                q.append(t)
    return order


# ------------------------------------------------------- shapes and dtypes


def test_array_contracts():
    g = Graph(coalescent, theta=2.0)
    V, E = g.vertices_length(), g.edges_length()
    assert (V, E) == (11, 10)
    assert g.state_length == 1
    assert g.discrete is False or g.discrete == 0
    states = g.states()
    assert isinstance(states, np.ndarray) and states.dtype == np.int32 and states.shape == (V, 1)
    assert np.all(states[0] == 0)
    np.testing.assert_array_equal(states[1:, 0], np.arange(10, 0, -1))
    indptr, target, weight = g.edges()
    assert indptr.dtype == np.int64 and indptr.shape == (V + 1,)
    assert target.dtype == np.int32 and target.shape == (E,)
    assert weight.dtype == np.float64 and weight.shape == (E,)
    assert indptr[0] == 0 and indptr[-1] == E and np.all(np.diff(indptr) >= 0)
    assert np.all((target >= 0) & (target < V))
    # start vertex edges are the IPV
    np.testing.assert_array_equal(target[indptr[0] : indptr[1]], [1])
    np.testing.assert_array_equal(weight[indptr[0] : indptr[1]], [1.0])
    for v in range(1, V):
        k = int(states[v, 0])
        lo, hi = indptr[v], indptr[v + 1]
        if k <= 1:
            assert hi == lo
        else:
            assert states[target[lo], 0] == k - 1
            assert weight[lo] == k * (k - 1) / 2 * 2.0
    assert g.coefficients() is None


def test_edges_match_callback_and_bfs_order():
    g = Graph(grid_walk, ipv=GRID_IPV)
    states = [tuple(int(x) for x in row) for row in g.states()]
    assert states[0] == (0, 0)
    assert states[1:] == bfs_states(grid_walk, GRID_IPV)
    assert g.vertices_length() == 17 and g.state_length == 2
    indptr, target, weight = g.edges()
    got0 = sorted((states[t], w) for t, w in zip(target[indptr[0] : indptr[1]], weight[indptr[0] : indptr[1]]))
    assert got0 == sorted((tuple(s), p) for s, p in GRID_IPV)
    for v in range(1, len(states)):
        lo, hi = indptr[v], indptr[v + 1]
        got = sorted((states[t], float(w)) for t, w in zip(target[lo:hi], weight[lo:hi]))
        ref = sorted((tuple(ns), float(r)) for ns, r in grid_walk(list(states[v])))
        assert got == ref
    assert g.edges_length() == sum(len(grid_walk(list(s))) for s in states[1:]) + len(GRID_IPV)


def test_determinism():
    a, b = Graph(grid_walk, ipv=GRID_IPV).to_arrays(), Graph(grid_walk, ipv=GRID_IPV).to_arrays()
    assert a[1] == b[1]
    assert set(a[0]) == set(b[0])
    for k in a[0]:
        np.testing.assert_array_equal(a[0][k], b[0][k])
        assert a[0][k].dtype == b[0][k].dtype


def test_kwargs_reach_callback():
    assert Graph(coalescent, theta=2.0).expectation() == pytest.approx(0.9, rel=1e-12)
    assert Graph(coalescent).expectation() == pytest.approx(1.8, rel=1e-12)


# ----------------------------------------------------------- serialisation


def test_to_arrays_from_arrays_round_trip():
    g = Graph(grid_walk, ipv=GRID_IPV)
    arrays, attrs = g.to_arrays()
    assert {"states", "edges/indptr", "edges/target", "edges/weight"} <= set(arrays)
    assert "edges/coef" not in arrays
    assert bool(attrs["discrete"]) is False and int(attrs["state_length"]) == 2
    h = Graph.from_arrays(arrays, attrs)
    arrays2, attrs2 = h.to_arrays()
    assert attrs2 == attrs
    for k in arrays:
        np.testing.assert_array_equal(arrays[k], arrays2[k])
    assert h.expectation() == g.expectation()
    assert h.variance() == g.variance()


def test_round_trip_parameterised_and_discrete():
    g = Graph(two_param, ipv=[1], theta_dim=2)
    arrays, attrs = g.to_arrays()
    assert arrays["edges/coef"].shape == (g.edges_length(), 2)
    assert int(attrs["theta_dim"]) == 2
    h = Graph.from_arrays(arrays, attrs)
    np.testing.assert_array_equal(h.coefficients(), g.coefficients())
    g.update_weights([0.5, 2.0])
    h.update_weights([0.5, 2.0])
    assert h.expectation() == g.expectation()
    d = Graph(with_ipv([1])(lambda s: [[[2], 0.25]] if s[0] == 1 else []), discrete=True)
    da, dattrs = d.to_arrays()
    assert bool(dattrs["discrete"]) is True
    dd = Graph.from_arrays(da, dattrs)
    assert dd.discrete and dd.expectation() == pytest.approx(4.0, rel=1e-12)


def test_pickle_round_trip():
    for g in (Graph(coalescent, theta=2.0), Graph(grid_walk, ipv=GRID_IPV)):
        h = pickle.loads(pickle.dumps(g))
        assert isinstance(h, Graph)
        assert h.vertices_length() == g.vertices_length()
        for k, v in g.to_arrays()[0].items():
            np.testing.assert_array_equal(h.to_arrays()[0][k], v)
        assert h.expectation() == g.expectation()
    p = Graph(two_param, ipv=[1], theta_dim=2)
    p.update_weights([1.5, 0.5])
    q = pickle.loads(pickle.dumps(p))
    assert q.theta_dim == 2 and q.expectation() == p.expectation()


def test_repr_mentions_sizes():
    g = Graph(grid_walk, ipv=GRID_IPV)
    text = repr(g)
    assert str(g.vertices_length()) in text and str(g.edges_length()) in text


# ----------------------------------------------------- manual construction


def test_manual_construction():
    g = Graph(state_length=1)
    assert g.vertices_length() == 1 and g.starting_vertex() == 0
    v3 = g.find_or_create_vertex([3])
    assert v3 == 1 and g.find_or_create_vertex([3]) == 1
    v2, v1 = g.find_or_create_vertex([2]), g.find_or_create_vertex([1])
    assert (v2, v1) == (2, 3)
    assert g.find_vertex([2]) == 2 and g.find_vertex([7]) == -1
    g.add_edge(0, v3, 1.0)
    g.add_edge(v3, v2, 3.0)
    g.add_edge(v2, v1, 1.0)
    assert g.vertices_length() == 4 and g.edges_length() == 3
    assert g.expectation() == pytest.approx(1 / 3 + 1, rel=1e-13)
    # the manual graph equals the callback-built Kingman(3)
    h = Graph(with_ipv([3])(coalescent.__wrapped__))
    for k, v in h.to_arrays()[0].items():
        np.testing.assert_array_equal(g.to_arrays()[0][k], v)


def test_manual_edges_after_expectation_invalidate_cache():
    g = Graph(state_length=1)
    a, b = g.find_or_create_vertex([1]), g.find_or_create_vertex([2])
    g.add_edge(0, a, 1.0)
    g.add_edge(a, b, 2.0)
    assert g.expectation() == pytest.approx(0.5, rel=1e-13)
    c = g.find_or_create_vertex([3])
    g.add_edge(b, c, 4.0)
    assert g.expectation() == pytest.approx(0.75, rel=1e-13)


def test_add_edge_with_a_weight_and_coefficients_is_ambiguous():
    g = Graph(state_length=1, theta_dim=1)
    a, b = g.find_or_create_vertex([1]), g.find_or_create_vertex([2])
    with pytest.raises(GraphConstructionError, match="not both"):
        g.add_edge(a, b, 5.0, coefficients=[1.0])


# --------------------------------- weights before and after update_weights


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


def _exact_expectation(n, theta):
    return sum(2 / (k * (k - 1) * theta) for k in range(2, n + 1))


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


def test_update_weights_wrong_length():
    g = Graph(with_ipv([4])(lambda s: [] if s[0] <= 1 else [[[int(s[0]) - 1], [1.0, 0.5]]]), theta_dim=2)
    with pytest.raises(ParameterError, match=r"7\.75|\b3\b") as info:
        g.update_weights([1.25, 2.5, 7.75])
    assert_value_error(info.value)
    with pytest.raises(ParameterError, match=r"\b1\b"):
        g.update_weights([1.25])
    with pytest.raises(ParameterError, match="(?i)nan"):
        g.update_weights([1.0, float("nan")])
    # a good update still works afterwards
    g.update_weights([1.0, 2.0])
    assert g.expectation() == pytest.approx(3 * 0.5, rel=1e-12)  # three steps at rate 1*1 + 0.5*2


def test_update_weights_making_a_rate_negative():
    g = Graph(with_ipv([3])(lambda s: [] if s[0] <= 1 else [[[int(s[0]) - 1], [1.0, 0.0]]]), theta_dim=2)
    with pytest.raises(PhasicError, match=re.escape("-2.5")) as info:
        g.update_weights([-2.5, 1.0])
    assert isinstance(info.value, ValueError)


# ------------------------------------------------ callbacks that misbehave


def misbehaving(bad, at=3, start=6):
    """Death process start -> 1 that returns ``bad`` from state [at]."""

    @with_ipv([start])
    def cb(state):
        k = int(state[0])
        if k == at:
            return bad
        return [] if k <= 1 else [[[k - 1], float(k)]]

    return cb


@pytest.mark.parametrize(
    "bad,pattern",
    [
        ([[1]], re.escape("[1]")),
        ([[[1], "a"]], "'a'"),
        (5, r"\b5\b"),
        ([[[2]]], re.escape("[2]")),
        ([[[2], 1.0, 3.0]], re.escape("3.0")),
        ([[[2], None]], "None"),
    ],
    ids=["edge-no-rate", "string-rate", "not-a-list", "state-only", "three-items", "none-rate"],
)
def test_malformed_edge(bad, pattern):
    with pytest.raises(GraphConstructionError, match=pattern) as info:
        Graph(misbehaving(bad))
    assert_value_error(info.value)


def test_state_of_wrong_length():
    with pytest.raises(GraphConstructionError, match=r"1, ?2") as info:
        Graph(misbehaving([[[1, 2], 1.0]]))
    assert_value_error(info.value)


@pytest.mark.parametrize(
    "rate,pattern",
    [(-1.5, re.escape("-1.5")), (float("nan"), "(?i)nan"), (float("inf"), "(?i)inf"), (-math.inf, "(?i)-inf")],
    ids=["negative", "nan", "inf", "-inf"],
)
def test_bad_rate(rate, pattern):
    with pytest.raises(GraphConstructionError, match=pattern) as info:
        Graph(misbehaving([[[2], rate]]))
    assert_value_error(info.value)


def test_bad_rate_manual_add_edge():
    g = Graph(state_length=1)
    a, b = g.find_or_create_vertex([1]), g.find_or_create_vertex([2])
    with pytest.raises(GraphConstructionError, match=re.escape("-2.5")):
        g.add_edge(a, b, -2.5)
    with pytest.raises(GraphConstructionError, match="(?i)nan"):
        g.add_edge(a, b, float("nan"))


def test_non_integer_state():
    with pytest.raises(GraphConstructionError, match=re.escape("1.5")) as info:
        Graph(misbehaving([[[1.5], 1.0]]))
    assert_value_error(info.value)


def test_unbounded_state_space():
    def grow(state):
        return [[[int(state[0]) + 1], 1.0]]

    with pytest.raises(StateSpaceTooLarge, match=r"\b1000\b") as info:
        Graph(grow, ipv=[1], max_vertices=1000)
    assert_value_error(info.value)


class ModelBug(Exception):
    pass


@pytest.mark.parametrize("exc_type", [ModelBug, ZeroDivisionError, KeyError])
def test_callback_exception_propagates_with_state(exc_type):
    @with_ipv([20])
    def cb(state):
        k = int(state[0])
        if k == 17:
            raise exc_type("model failed here")
        return [[[k - 1], 1.0]]

    with pytest.raises(exc_type) as info:
        Graph(cb)
    text = str(info.value) + "\n".join(getattr(info.value, "__notes__", []))
    assert "17" in text and "model failed here" in text


def test_failed_build_leaves_no_broken_state():
    with pytest.raises(GraphConstructionError):
        Graph(misbehaving([[[2], -1.0]]))
    # the same process afterwards still builds and computes correctly
    assert good_graph(4).expectation() == pytest.approx(1 / 4 + 1 / 3 + 1 / 2, rel=1e-13)


def test_zero_state_collision_is_correct_or_rejected():
    # a pure death process 3 -> 2 -> 1 -> 0: state [0] coincides with the start vertex's
    # state; the result must be either right (E = 1/3 + 1/2 + 1) or a clear error
    cb = with_ipv([3])(lambda s: [] if s[0] <= 0 else [[[int(s[0]) - 1], float(s[0])]])
    try:
        g = Graph(cb)
    except GraphConstructionError as exc:
        assert "0" in str(exc)
    else:
        assert g.expectation() == pytest.approx(11 / 6, rel=1e-12)


def test_callback_returning_none_is_an_error_not_an_absorbing_state():
    @with_ipv([3])
    def forgot_return(state):
        if state[0] > 1:
            [[[state[0] - 1], 1.0]]  # the `return` is missing

    with pytest.raises(GraphConstructionError) as info:
        Graph(forgot_return)
    msg = str(info.value)
    assert "state [3]" in msg and "the callback returned None; return [] for an absorbing state" in msg


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


# ----------------------------------------- huge numbers, bools and strings


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


def test_flags_and_counts_are_not_bools_or_strings():
    g = Graph(kingman)
    with pytest.raises(ParameterError, match="got True"):
        g.sample(True)
    h = random_param_graph(2)
    with pytest.raises(ParameterError, match="got True"):
        evaluate_batch(h, np.ones((2, 3)), k=True)
    pytest.importorskip("jax")
    from phasic import pmf_from_graph

    with pytest.raises(ParameterError, match="discrete must be None, True or False, got 'no'"):
        pmf_from_graph(g, discrete="no")
