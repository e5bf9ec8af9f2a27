"""Distributions (phasic/distributions.py): transient_vertices and as_matrices; pdf, cdf, pmf
and sample refuse bad times, stuck states and initial probabilities over 1 clearly.

Checks of the values against theory are in tests/verification/test_distributions.py."""

import numpy as np
import pytest

from phasic import Graph, ParameterError, with_ipv
from phasic.batch import evaluate_batch
from phasic.exceptions import PhasicError
from tests.models import GRID_IPV, assert_value_error, good_graph, grid_walk, kingman, two_island

pytestmark = pytest.mark.usefixtures("isolated_cache")


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


def test_negative_times_consistent():
    g = good_graph(3)  # 3 -> 2 -> 1 with rates 3, 2

    def exact_pdf(t):
        return 6 * (np.exp(-2 * t) - np.exp(-3 * t))

    try:
        v = float(np.asarray(g.pdf(-1.0)))
    except PhasicError as exc:
        assert isinstance(exc, ValueError)
        assert "-1" in str(exc)
        for f in (g.pdf, g.cdf):
            with pytest.raises(ParameterError):
                f(np.array([-1.0, 0.5]))
            with pytest.raises(ParameterError):
                f(-0.25)
    else:
        assert v == 0.0
        out = np.asarray(g.pdf(np.array([-1.0, 0.5])), dtype=float)
        assert out[0] == 0.0 and out[1] == pytest.approx(exact_pdf(0.5), abs=1e-9)
        assert float(np.asarray(g.cdf(-0.25))) == 0.0
        assert np.asarray(g.cdf(np.array([-3.0, -1e-9])), dtype=float).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("fn", ["pdf", "cdf"])
def test_nan_times(fn):
    g = good_graph(3)
    for t in (float("nan"), np.array([0.5, np.nan])):
        with pytest.raises(ParameterError, match="(?i)nan") as info:
            getattr(g, fn)(t)
        assert_value_error(info.value)


@pytest.mark.timeout(60)
def test_sample_refuses_a_class_that_is_never_left():
    g = Graph(with_ipv([1])(lambda s: [[[3 - s[0]], 1.0]] if s[0] in (1, 2) else []))
    with pytest.raises(ParameterError, match="never left"):
        g.sample(2, seed=1)  # used to loop forever


def test_a_state_with_zero_out_weights_is_an_error_not_absorption():
    @with_ipv([4])
    def kingman_p(state):
        n = state[0]
        return [] if n <= 1 else [[[n - 1], [n * (n - 1) / 2]]]

    g = Graph(kingman_p)
    g.update_weights([0.0])  # the first state is never left
    for call in (lambda: g.cdf([1.0, 100.0]), lambda: g.pdf([1.0]), lambda: g.sample(3, seed=1), lambda: g.moments(1)):
        with pytest.raises(ParameterError, match="never left"):
            call()
    h = Graph(two_island)
    h.update_weights([0.0, 1.0])  # migration only: a class that is never left
    assert np.all(h.cdf([1.0, 100.0]) == 0.0)  # a defective distribution: cdf stays 0
    with pytest.raises(ParameterError, match="never left"):
        h.sample(3, seed=1)


def test_initial_probabilities_over_one():
    g = Graph(state_length=1)
    a, c = g.find_or_create_vertex([1]), g.find_or_create_vertex([3])
    g.add_edge(0, a, 5.0)
    g.add_edge(a, c, 1.0)
    for call in (g.expectation, lambda: g.pdf([1.0]), lambda: g.cdf([100.0]), lambda: g.moments(2)):
        with pytest.raises(ParameterError, match="initial probabilities .* sum to 5.0 > 1"):
            call()
    h = Graph(state_length=1, theta_dim=1)
    a, c = h.find_or_create_vertex([1]), h.find_or_create_vertex([3])
    h.add_edge(0, a, 0.0, coefficients=[1.0])
    h.add_edge(a, c, 1.0)
    with pytest.raises(ParameterError, match=r"theta \[3.0\] \(row 1\) makes the initial"):
        evaluate_batch(h, [[0.5], [3.0]])
    h.update_weights([3.0])
    with pytest.raises(ParameterError, match="sum to 3.0 > 1"):
        h.moments(2)


def test_huge_times_and_jump_counts_are_refused_clearly():
    # adaptive uniformisation: once the coalescent's mass is absorbed nothing moves, so a
    # huge time costs nothing (it once needed rate x time steps, and then std::bad_alloc)
    assert Graph(kingman).pdf([1e9])[0] == 0.0
    assert Graph(kingman).cdf([1e9])[0] == pytest.approx(1.0, abs=1e-13)
    # a class that keeps its mass cycling at rate 1 with a tiny exit: 1e9 time units would
    # take ~1e9 steps; refused after 1e8, with a message
    cyc = Graph(state_length=1)
    a, b, done = (cyc.find_or_create_vertex([i]) for i in (1, 2, 3))
    cyc.add_edge(0, a, 1.0)
    cyc.add_edge(a, b, 1.0)
    cyc.add_edge(b, a, 1.0)
    cyc.add_edge(b, done, 1e-12)
    with pytest.raises(ParameterError, match="needs more than 1e[+]08 uniformisation steps"):
        cyc.pdf([1e9])
    gd = Graph(with_ipv([3])(lambda s: [] if s[0] <= 1 else [[[s[0] - 1], 0.5]]), discrete=True)
    with pytest.raises(ParameterError, match="jump count 1000000000000"):
        gd.pmf([10**12])


def test_far_tail_density_keeps_its_relative_accuracy():
    # adaptive uniformisation drops a state's mass only relative to the mass still transient:
    # deep in the tail, where all of it is tiny, the density stays exact to rounding
    g = Graph(kingman)  # rates 6, 3, 1 (4 lineages)
    t = np.array([300.0, 600.0])
    # the hypoexponential density with rates 6, 3, 1
    rates = [6.0, 3.0, 1.0]
    exact = sum(np.exp(-r * t) * np.prod(rates) / np.prod([q - r for q in rates if q != r]) for r in rates)
    assert np.all(exact > 0) and exact[1] < 1e-250
    np.testing.assert_allclose(g.pdf(t), exact, rtol=1e-10)
