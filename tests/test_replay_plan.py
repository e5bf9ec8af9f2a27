"""Compiled replay plans (phasic._core.ReplayPlan, csrc/replay*.hpp): bitwise the results of
the plain tape replay, for single weight vectors and blocks of parameter vectors, with
rewards, degenerate and negative weights; graphs switch to them on their second
evaluation; malformed traces are rejected."""

import threading

import numpy as np
import pytest

from phasic import Graph, ParameterError, _core
from phasic.traces import evaluate_batch, graph_trace
from tests.models import random_param_graph, two_island


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
    hi = int(g._indptr[1])
    return _core.cph_moments_batch(
        tr, np.atleast_2d(W), g._target[:hi].astype(np.int64), np.arange(hi, dtype=np.int64), r, k
    )


def plan_of(g):
    tr = graph_trace(g)
    hi = int(g._indptr[1])
    return tr, _core.ReplayPlan(tr, int(g._target.size), hi, g._target[:hi])


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
            got = plan.moments(g._w, k, r_plan)
            want = plain(g, tr, g._w, k, r_plain)[0]
            assert got == want.tolist()


@pytest.mark.parametrize("name,g", list(graphs()))
@pytest.mark.parametrize("block", [4, 8, 16])
def test_batch_is_bitwise_plain_replay(name, g, block):
    rng = np.random.default_rng(2)
    tr, plan = plan_of(g)
    th = rng.uniform(0.3, 2.5, (block * 2 + 3, g.theta_dim))  # last block partial
    r_plan, r_plain = rewards_for(g, rng, "random")
    hi = int(g._indptr[1])
    want, wneg = _core.cph_moments_theta(
        tr, th, g._base, g._coef, g._target[:hi].astype(np.int64), np.arange(hi, dtype=np.int64), r_plain, 3
    )
    got, neg = plan.moments_theta(th, g._base, g._coef, 3, r_plan, block)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(neg, wneg)


def test_negative_and_degenerate_weights_match_plain_replay():
    g = random_param_graph(3)
    tr, plan = plan_of(g)
    hi = int(g._indptr[1])
    th = np.array([[1.0, 1.0, 1.0], [-5.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.5, 0.2]])
    r = np.r_[0.0, np.ones(g.vertices_length() - 1)]
    want, wneg = _core.cph_moments_theta(
        tr, th, g._base, g._coef, g._target[:hi].astype(np.int64), np.arange(hi, dtype=np.int64), r, 2
    )
    got, neg = plan.moments_theta(th, g._base, g._coef, 2, None, 8)
    assert neg.tolist() == [False, True, False, False]
    np.testing.assert_array_equal(neg, wneg)
    np.testing.assert_array_equal(got, want)  # NaN where the plain replay has NaN
    assert not np.all(np.isfinite(got[2]))


def test_graph_switches_to_the_plan_on_its_second_evaluation():
    g = random_param_graph(4)
    g.update_weights([0.7, 1.1, 0.4])
    first = g.moments(3)
    assert g._plan[1] is None  # one evaluation: no compilation
    second = g.moments(3)
    assert g._plan[1] is not None  # compiled on the second
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
        weights.append(g._w.copy())
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
    hi = int(g._indptr[1])
    bad = dict(tr, a=tr["a"].copy())
    i = int(np.flatnonzero(tr["code"] != 0)[0])
    bad["a"][i] = i + 5  # an operand after the op
    with pytest.raises(ValueError, match="malformed"):
        _core.ReplayPlan(bad, int(g._target.size), hi, g._target[:hi])
    bad = dict(tr, xs=tr["xs"].copy())
    bad["xs"][0] = tr["code"].size
    with pytest.raises(ValueError, match="malformed"):
        _core.ReplayPlan(bad, int(g._target.size), hi, g._target[:hi])


def test_edge_weights():
    g = random_param_graph(8)
    g._flush()
    th = np.array([0.3, 1.7, 0.9])
    w, bad = _core.edge_weights(g._base, g._coef, th)
    np.testing.assert_allclose(w, g._base + g._coef @ th, rtol=1e-15, atol=0)
    assert bad == -1
    w, bad = _core.edge_weights(g._base, g._coef, np.array([0.3, -50.0, 0.9]))
    assert bad == int(np.flatnonzero(~(g._base + g._coef @ [0.3, -50.0, 0.9] >= 0))[0])
    with pytest.raises(ParameterError, match="rates must be >= 0"):
        g.update_weights([0.3, -50.0, 0.9])


def dense_moments_of_weights(g, w, k, r):
    """First k reward moments from edge weights w (CSR order of g), by dense algebra written
    here: alpha and S assembled from (indptr, target, w), m_j = j! alpha (U diag r)^j 1."""
    V = g.vertices_length()
    src = np.repeat(np.arange(V), np.diff(g._indptr))
    tv = np.array([v for v in range(1, V) if g._indptr[v + 1] > g._indptr[v]])
    pos = {v: i for i, v in enumerate(tv)}
    alpha, S = np.zeros(tv.size), np.zeros((tv.size, tv.size))
    for u, z, we in zip(src, g._target, w):
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
    m, dw = plan.moments_vjp(g._w, k, r_plan, cot, g._indptr, g._target)
    assert m.tolist() == plan.moments(g._w, k, r_plan)
    np.testing.assert_allclose(m, dense_moments_of_weights(g, g._w, k, r), rtol=1e-11)
    fd = np.empty_like(dw)
    for e in range(dw.size):
        h = max(1e-6, 1e-6 * g._w[e])
        wp, wm = g._w.copy(), g._w.copy()
        wp[e] += h
        wm[e] -= h
        fd[e] = cot @ (dense_moments_of_weights(g, wp, k, r) - dense_moments_of_weights(g, wm, k, r)) / (2 * h)
    np.testing.assert_allclose(dw, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())
    th = g._theta.copy()
    assert np.array_equal(dw @ g._coef, _tape_grad(g.copy(), th, k, r, cot))


def test_moments_vjp_rejects_mismatched_arrays():
    g = random_param_graph(1, n=8)
    g.update_weights([1.0, 1.0, 1.0])
    _, plan = plan_of(g)
    with pytest.raises(ValueError, match="lengths"):
        plan.moments_vjp(g._w[:-1], 2, None, np.ones(2), g._indptr, g._target)
    with pytest.raises(ValueError, match="lengths"):
        plan.moments_vjp(g._w, 2, None, np.ones(3), g._indptr, g._target)
    bad = g._indptr.copy()
    bad[1] += 1
    with pytest.raises(ValueError, match="indptr"):
        plan.moments_vjp(g._w, 2, None, np.ones(2), bad, g._target)


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
    m, grads, neg = plan.moments_vjp_theta(th, g._base, g._coef, 2, r, cots, g._indptr, g._target)
    assert neg.tolist() == [False, False, False, True, False]
    assert np.isnan(m[3]).all() and np.isnan(grads[3]).all()
    for i in (0, 1, 2, 4):
        w, bad = _core.edge_weights(g._base, g._coef, th[i])
        assert bad == -1
        assert m[i].tolist() == plan.moments(w, 2, r)
        _, dw = plan.moments_vjp(w, 2, r, cots[i], g._indptr, g._target)
        np.testing.assert_allclose(grads[i], dw @ g._coef, rtol=1e-13, atol=0)
    with pytest.raises(ValueError, match="cots has shape"):
        plan.moments_vjp_theta(th, g._base, g._coef, 2, r, cots[:4], g._indptr, g._target)
    with pytest.raises(ValueError, match="base/coef"):
        plan.moments_vjp_theta(np.ascontiguousarray(th[:, :2]), g._base, g._coef, 2, r, cots, g._indptr, g._target)
