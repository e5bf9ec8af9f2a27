"""Epoch schedules on parameterised graphs (phasic.demography.Epochs): exact references
written here with dense matrices (scipy.linalg.expm, Van Loan blocks), error messages."""

from math import comb, factorial

import numpy as np
import pytest
import scipy.linalg

from phasic import Graph, with_ipv
from phasic.demography import Epochs
from phasic.exceptions import ParameterError


@with_ipv([2, 1])
def two_island(state):
    """Lineages (a, b) in two islands; theta = [pair rate 1, pair rate 2, migration 1->2, 2->1]."""
    a, b = state
    if a + b <= 1:
        return []
    out = []
    if a >= 2:
        out.append([[a - 1, b], [a * (a - 1) / 2, 0, 0, 0]])
    if b >= 2:
        out.append([[a, b - 1], [0, b * (b - 1) / 2, 0, 0]])
    if a >= 1:
        out.append([[a - 1, b + 1], [0, 0, a, 0]])
    if b >= 1:
        out.append([[a + 1, b - 1], [0, 0, 0, b]])
    return out


def dense(graph, theta):
    g = graph.copy()
    g.update_weights(theta)
    alpha, S = g.as_matrices()
    return alpha, S, g.transient_vertices()


BREAKS = [0.3, 0.9]
THETAS = [[1.0, 0.2, 0.5, 0.1], [0.05, 3.0, 0.0, 2.0], [1.0, 1.0, 0.4, 0.4]]


def swap_islands(state):  # a map: every lineage in island 1 moves to island 2 w.p. 1/2 each
    a, b = (int(x) for x in state)
    if a == 0:
        return None
    return [([a - j, b + j], comb(a, j) * 0.5**a) for j in range(a + 1)]


def swap_matrix(graph, tv):
    """The map of swap_islands as a dense matrix over the transient vertices `tv`."""
    states = graph.states()
    index = {tuple(states[v]): i for i, v in enumerate(tv)}
    M = np.zeros((len(tv), len(tv)))
    for i, v in enumerate(tv):
        out = swap_islands(states[v])
        if out is None:
            M[i, i] = 1
        else:
            for s, p in out:
                if tuple(s) in index:
                    M[i, index[tuple(s)]] += p
    return M


def reference(graph, maps):
    """Survival function, E[T], E[T^2], E[T^3] and the sojourns, from dense matrices."""
    mats = [dense(graph, th) for th in THETAS]
    alpha, _, tv = mats[0]
    M = swap_matrix(graph, tv) if maps else np.eye(len(tv))
    edges = [0.0, *BREAKS, np.inf]
    starts = [alpha]
    for k in range(2):
        S = mats[k][1]
        starts.append(
            starts[-1] @ scipy.linalg.expm(S * (edges[k + 1] - edges[k])) @ (M if maps and k == 0 else np.eye(len(tv)))
        )

    def surv(t):
        k = int(np.searchsorted(BREAKS, t, side="right"))
        return float(starts[k] @ scipy.linalg.expm(mats[k][1] * (t - edges[k])) @ np.ones(len(tv)))

    def dens(t):
        k = int(np.searchsorted(BREAKS, t, side="right"))
        S = mats[k][1]
        return float(starts[k] @ scipy.linalg.expm(S * (t - edges[k])) @ (-S @ np.ones(len(tv))))

    def mom(m):
        """m int_0^a t^(m-1) S(t) dt by Gauss-Legendre on each finite epoch (smooth integrand),
        then E[T^m; T > a] - a^m S(a) with E[(a + T')^m] from i! (-S)^-i 1 in the last epoch."""
        x, wq = np.polynomial.legendre.leggauss(60)
        total = 0.0
        for lo, hi in zip(edges[:-2], edges[1:-1]):
            t = (hi - lo) / 2 * x + (hi + lo) / 2
            total += (hi - lo) / 2 * sum(w * m * u ** (m - 1) * surv(u) for u, w in zip(t, wq))
        a, S = edges[-2], mats[2][1]
        U = np.linalg.inv(-S)
        one = np.ones(len(tv))
        tail = sum(
            comb(m, i) * a ** (m - i) * factorial(i) * float(starts[2] @ np.linalg.matrix_power(U, i) @ one)
            for i in range(m + 1)
        )
        return total + tail - a**m * float(starts[2] @ one)

    # sojourns: Van Loan blocks within the first two epochs, (-S)^-1 in the last
    soj = np.zeros(len(tv))
    for k in range(2):
        S = mats[k][1]
        n = len(tv)
        big = np.zeros((2 * n, 2 * n))
        big[:n, :n] = S
        big[:n, n:] = np.eye(n)
        E = scipy.linalg.expm(big * (edges[k + 1] - edges[k]))
        soj += starts[k] @ E[:n, n:]
    soj += starts[2] @ np.linalg.inv(-mats[2][1])
    return surv, dens, mom, soj, tv


@pytest.mark.parametrize("maps", [False, True])
def test_epochs_against_dense_matrices(maps):
    g = Graph(two_island)
    e = Epochs(g, BREAKS, THETAS, maps=[swap_islands, None] if maps else None)
    surv, dens, mom, soj, tv = reference(g, maps)
    m = e.moments(3)
    for k in range(3):
        assert m[k] == pytest.approx(mom(k + 1), rel=1e-8)
    assert e.expectation() == pytest.approx(m[0], rel=1e-12)
    assert e.variance() == pytest.approx(m[1] - m[0] ** 2, rel=1e-10)
    t = np.array([0.0, 0.1, 0.3, 0.5, 0.95, 2.0, 7.0])
    assert np.allclose(e.cdf(t), [1 - surv(x) for x in t], atol=1e-12, rtol=0)
    assert np.allclose(e.pdf(t), [dens(x) for x in t], atol=1e-12, rtol=0)
    assert np.allclose(e.sojourn()[tv], soj, rtol=1e-10, atol=0)
    # rewards: the time with >= 2 lineages in island 2 (a reward per vertex)
    r = (g.states()[:, 1] >= 2).astype(float)
    assert e.expectation(r) == pytest.approx(float(soj @ r[tv]), rel=1e-10)
    R = np.stack([r, np.ones(g.vertices_length())], axis=1)
    assert np.allclose(e.expected_rewards(R), [soj @ r[tv], soj.sum()], rtol=1e-10)


def test_one_epoch_is_the_time_homogeneous_graph():
    g = Graph(two_island)
    e = Epochs(g, [], [THETAS[2]])
    h = g.copy()
    h.update_weights(THETAS[2])
    assert e.moments(2) == pytest.approx(h.moments(2), rel=1e-12)
    t = np.linspace(0, 5, 7)
    assert np.allclose(e.cdf(t), h.cdf(t), atol=1e-13)


def test_bad_schedules_are_refused_with_the_value():
    g = Graph(two_island)
    with pytest.raises(ParameterError, match="strictly increasing"):
        Epochs(g, [0.5, 0.2], THETAS)
    with pytest.raises(ParameterError, match=r"expected \(3, 4\)"):
        Epochs(g, BREAKS, THETAS[:2])
    with pytest.raises(ParameterError, match="rates must be >= 0"):
        Epochs(g, BREAKS, [THETAS[0], [-1.0, 0, 0, 0], THETAS[2]])
    with pytest.raises(ParameterError, match="2 maps for 2 breaks|1 maps for 2 breaks"):
        Epochs(g, BREAKS, THETAS, maps=[None])
    bad = Epochs(g, BREAKS, THETAS, maps=[lambda s: [([9, 9], 1.0)] if s[0] else None, None])
    with pytest.raises(ParameterError, match=r"sends state .* to \[9, 9\], which is not a state"):
        bad.expectation()
    half = Epochs(g, BREAKS, THETAS, maps=[lambda s: [([int(s[0]), int(s[1])], 0.5)], None])
    with pytest.raises(ParameterError, match="summing to 0.5, not 1"):
        half.cdf([1.0])
    with pytest.raises(ParameterError, match="parameterised graph"):
        Epochs(Graph(with_ipv([2])(lambda s: [] if s[0] <= 1 else [[[s[0] - 1], 1.0]])), [], [[1.0]])
