"""Contracts of the Graph API: shapes, dtypes, order, determinism, round trips."""

import pickle
from collections import deque

import numpy as np
import pytest

import phasic
from phasic import Graph, with_ipv
from tests.models import coalescent


@pytest.fixture(autouse=True, scope="module")
def _isolated_phasic_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PHASIC_CACHE_DIR", str(tmp_path_factory.mktemp("phasic_cache")))
        yield


# --------------------------------------------------------------------------- models (module level: picklable)


def grid_walk(state):
    """Random walk on {1..4}^2 with a fixed neighbour order, absorbed at (4, 4)."""
    x, y = int(state[0]), int(state[1])
    if (x, y) == (4, 4):
        return []
    out = []
    for dx, dy, rate in ((1, 0, 1.0), (0, 1, 2.0), (-1, 0, 0.5), (0, -1, 0.25)):
        nx, ny = x + dx, y + dy
        if 1 <= nx <= 4 and 1 <= ny <= 4:
            out.append([[nx, ny], rate * (nx + 2 * ny)])
    return out


GRID_IPV = [[[2, 1], 0.25], [[1, 3], 0.75]]


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


def norm_ipv(ipv):
    ipv = list(ipv)
    if ipv and all(isinstance(x, (int, np.integer)) for x in ipv):
        return [((tuple(int(x) for x in ipv)), 1.0)]
    return [(tuple(int(x) for x in st), float(p)) for st, p in ipv]


# --------------------------------------------------------------------------- shapes and dtypes


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


def test_transient_vertices_and_matrices_shape():
    g = Graph(grid_walk, ipv=GRID_IPV)
    tv = np.asarray(g.transient_vertices())
    states = g.states()
    absorbing = [v for v in range(1, g.vertices_length()) if tuple(states[v]) == (4, 4)]
    np.testing.assert_array_equal(tv, [v for v in range(1, g.vertices_length()) if v not in absorbing])
    alpha, S = g.as_matrices()
    assert alpha.shape == (len(tv),) and S.shape == (len(tv), len(tv))
    assert abs(alpha.sum() - 1.0) < 1e-15
    assert np.all(S.sum(axis=1) <= 1e-12)


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


# --------------------------------------------------------------------------- serialisation


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


# --------------------------------------------------------------------------- manual construction


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


# --------------------------------------------------------------------------- with_ipv protocol, ipv=, model=, indexer=


def test_with_ipv_protocol():
    def raw(state, theta=1.0):
        return [] if state[0] <= 1 else [[[state[0] - 1], theta]]

    wrapped = with_ipv([[[4], 0.5], [[2], 0.5]])(raw)
    assert wrapped.__wrapped__ is raw
    assert wrapped.__name__ == "raw"
    assert norm_ipv(wrapped.ipv) == [((4,), 0.5), ((2,), 0.5)]
    assert norm_ipv(wrapped([])) == [((4,), 0.5), ((2,), 0.5)]
    assert wrapped([3], theta=2.0) == [[[2], 2.0]]
    assert norm_ipv(coalescent.ipv) == [((10,), 1.0)]
    assert norm_ipv(coalescent([])) == [((10,), 1.0)]


@pytest.mark.parametrize("ipv", [[10], [[[10], 1.0]]], ids=["state", "pairs"])
def test_ipv_keyword_for_plain_callback(ipv):
    g = Graph(coalescent.__wrapped__, ipv=ipv, theta=2.0)
    ref = Graph(coalescent, theta=2.0)
    for k, v in ref.to_arrays()[0].items():
        np.testing.assert_array_equal(g.to_arrays()[0][k], v)


class Model:
    def __init__(self, rate):
        self.rate = rate


class Indexer:
    pass


def test_model_and_indexer_passed_when_accepted():
    seen = {}

    def accepts(state, model=None, indexer=None):
        seen["model"], seen["indexer"] = model, indexer
        return [] if state[0] <= 1 else [[[state[0] - 1], model.rate]]

    m, ix = Model(4.0), Indexer()
    g = Graph(accepts, ipv=[3], model=m, indexer=ix)
    assert seen["model"] is m and seen["indexer"] is ix
    assert g.expectation() == pytest.approx(0.5, rel=1e-13)

    def model_only(state, model):
        return [] if state[0] <= 1 else [[[state[0] - 1], model.rate]]

    assert Graph(model_only, ipv=[3], model=m).expectation() == pytest.approx(0.5, rel=1e-13)

    def neither(state):
        return [] if state[0] <= 1 else [[[state[0] - 1], 2.0]]

    assert Graph(neither, ipv=[3], model=m).expectation() == pytest.approx(1.0, rel=1e-13)


def test_public_names():
    assert phasic.Graph is Graph and phasic.with_ipv is with_ipv


def test_plot_small_graph_writes_png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import phasic as _ph

    @_ph.with_ipv([4])
    def kingman(state):
        n = state[0]
        return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2]]

    g = _ph.Graph(kingman)
    ax = g.plot()
    out = tmp_path / "g.png"
    ax.figure.savefig(out)
    assert out.stat().st_size > 1000
    assert len(ax.texts) >= g.vertices_length()
    big = _ph.Graph(_ph.with_ipv([100])(kingman.__wrapped__))
    with pytest.raises(_ph.ParameterError, match="max_vertices"):
        big.plot()
