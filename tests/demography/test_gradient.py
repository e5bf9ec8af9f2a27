"""Exact derivatives of expected rewards under an epoch schedule (``Epochs.reward_gradient``,
the reverse uniformisation kernel ``_core.transient_reverse``) and of the SFS log-likelihood of a
Demes model (``inference._problem.Problem.loglik_grad``), against central differences of a
dense reference written here (scipy.linalg.expm, Van Loan blocks) and of the library's own
values."""

import numpy as np
import pytest
import scipy.linalg

from phasic import Graph, _core, _csr
from phasic.demography import Epochs
from phasic.exceptions import ParameterError
from tests.demography.test_epochs import dense, swap_islands, swap_matrix, two_island

BREAKS = [0.3, 0.9]
THETAS = np.array([[1.0, 0.2, 0.5, 0.1], [0.05, 3.0, 0.3, 2.0], [1.0, 1.0, 0.4, 0.4]])


def dense_expected(graph, breaks, thetas, r, maps):
    """``E[int r(X_t) dt]`` from dense matrices: Van Loan blocks for the sojourn of each finite
    epoch, (-S)^-1 in the last; the map of swap_islands at the first break when `maps`."""
    mats = [dense(graph, th) for th in thetas]
    alpha, _, tv = mats[0]
    n = len(tv)
    M = swap_matrix(graph, tv) if maps else np.eye(n)
    edges = [0.0, *breaks]
    p = alpha
    total = 0.0
    for k in range(len(breaks)):
        S = mats[k][1]
        big = np.zeros((2 * n, 2 * n))
        big[:n, :n] = S
        big[:n, n:] = np.eye(n)
        E = scipy.linalg.expm(big * (edges[k + 1] - edges[k]))
        total += float(p @ E[:n, n:] @ r[tv])
        p = p @ E[:n, :n]
        if maps and k == 0:
            p = p @ M
    return total + float(p @ np.linalg.solve(-mats[-1][1], r[tv]))


@pytest.mark.parametrize("maps", [False, True])
def test_epoch_gradient_against_dense_differences(maps):
    g = Graph(two_island)
    states = g.states()
    r = states[:, 1].astype(float) + 0.5 * (states[:, 0] >= 2)  # some reward per vertex
    e = Epochs(g, BREAKS, THETAS, maps=[swap_islands, None] if maps else None)
    value, dth, db = e.reward_gradient(r, [1.0])
    assert value == pytest.approx(dense_expected(g, BREAKS, THETAS, r, maps), rel=1e-10)
    h = 1e-5
    for k in range(THETAS.shape[0]):
        for i in range(THETAS.shape[1]):
            up, dn = THETAS.copy(), THETAS.copy()
            up[k, i] += h
            dn[k, i] -= h
            fd = (dense_expected(g, BREAKS, up, r, maps) - dense_expected(g, BREAKS, dn, r, maps)) / (2 * h)
            assert dth[k, i] == pytest.approx(fd, rel=1e-6, abs=1e-8), (k, i)
    for b in range(len(BREAKS)):
        up, dn = list(BREAKS), list(BREAKS)
        up[b] += h
        dn[b] -= h
        fd = (dense_expected(g, up, THETAS, r, maps) - dense_expected(g, dn, THETAS, r, maps)) / (2 * h)
        assert db[b] == pytest.approx(fd, rel=1e-6, abs=1e-8), b


def test_epoch_gradient_with_several_reward_columns_and_a_callable():
    g = Graph(two_island)
    states = g.states()
    R = np.stack([states[:, 0].astype(float), states[:, 1].astype(float), np.ones(len(states))], axis=1)
    e = Epochs(g, BREAKS, THETAS)
    w = np.array([0.3, -1.2, 2.0])
    v1, d1, b1 = e.reward_gradient(R, w)
    assert v1 == pytest.approx(float(e.expected_rewards(R) @ w), rel=1e-12)
    seen = []

    def weights(expected):
        seen.append(expected.copy())
        return w

    v2, d2, b2 = e.reward_gradient(R, weights)
    assert np.allclose(seen[0], e.expected_rewards(R), rtol=1e-12)
    assert v2 == v1 and np.array_equal(d1, d2) and np.array_equal(b1, b2)
    with pytest.raises(ParameterError, match="weights have shape"):
        e.reward_gradient(R, [1.0, 2.0])


def test_reverse_kernel_against_differences_over_many_intervals():
    """Long epoch at high rates (many uniformisation intervals): dF/dw and dF/dp0 of
    F = lam . p(T) + g . int p."""
    g = Graph(two_island)
    ll = _csr.of(g)
    ll.flush()
    w = ll.weights_for(np.array([40.0, 0.5, 0.7, 0.3]))
    V, E = ll.vertices_length(), w.size
    src = np.repeat(np.arange(V), np.diff(ll.indptr))
    rng = np.random.default_rng(3)
    p0 = np.r_[0.0, rng.random(V - 1)]
    gv, lt = rng.random(V), rng.random(V)

    def lam_of(w):
        return np.bincount(src, weights=w, minlength=V)

    def F(w, p0):
        p, soj = p0.copy(), np.zeros(V)
        _core.transient(ll.indptr, ll.target, w, lam_of(w), p, 30.0, np.zeros(0), soj, 0, 1e-20, 200.0, 10**8)
        return lt @ p + gv @ soj

    lam_io, gw = lt.copy(), np.zeros(E)
    p_end, st = _core.transient_reverse(ll.indptr, ll.target, w, lam_of(w), p0, 30.0, gv, lam_io, gw)
    assert st["intervals"] > 3
    p = p0.copy()
    _core.transient(ll.indptr, ll.target, w, lam_of(w), p, 30.0, np.zeros(0), None, 0, 1e-20, 200.0, 10**8)
    assert np.allclose(p_end, p, rtol=1e-13, atol=1e-300)
    h = 1e-4  # F is ~30: smaller steps drown in rounding
    for e_ in np.flatnonzero(w > 0):
        d = np.zeros(E)
        d[e_] = h * max(w[e_], 1.0)
        fd = (F(w + d, p0) - F(w - d, p0)) / (2 * d[e_])
        assert gw[e_] == pytest.approx(fd, rel=1e-6, abs=1e-7)
    for v in range(1, V):
        d = np.zeros(V)
        d[v] = h
        assert lam_io[v] == pytest.approx((F(w, p0 + d) - F(w, p0 - d)) / (2 * h), rel=1e-6, abs=1e-7)
