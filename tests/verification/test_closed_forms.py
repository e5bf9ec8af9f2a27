"""Moments of classic phase-type models against closed forms written out here.

References: Kingman coalescent (Wakeley 2009, ch. 3), SFS E[xi_i] = 2/i (Fu 1995),
hypoexponential cumulants, Coxian mixtures, the worked example of Fig. 3 in
Røikjer, Hobolth & Munch (2022), geometric / negative-binomial DPH.
"""

import math
from fractions import Fraction

import numpy as np
import pytest

from phasic import Graph, with_ipv

from .models import (
    block_counting_transitions,
    dense_from_transitions,
    hypoexp_moments_exact,
    make_block_counting,
    make_chain,
    make_coalescent,
    ph_covariance,
    vertex_index,
)

RTOL = 1e-12


def C2(k):
    return k * (k - 1) // 2


def close(got, ref, rtol=RTOL):
    np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(ref, dtype=float), rtol=rtol, atol=0)


# --------------------------------------------------------------------------- Kingman


@pytest.mark.parametrize("n", [2, 3, 5, 10, 25])
@pytest.mark.parametrize("theta", [1.0, 2.5])
def test_tmrca_mean_and_variance(n, theta):
    g = Graph(make_coalescent(n), theta=theta)
    assert g.vertices_length() == n + 1
    close(g.expectation(), 2 * (1 - 1 / n) / theta)
    var = sum(1 / (C2(k) * theta) ** 2 for k in range(2, n + 1))
    close(g.variance(), var)
    # the second closed form of the same variance
    close(var * theta**2, 8 * sum(1 / k**2 for k in range(2, n + 1)) - 4 * (1 - 1 / n) ** 2, rtol=1e-13)


def test_tmrca_variance_small_n_values():
    close(Graph(make_coalescent(2)).variance(), 1.0)
    close(Graph(make_coalescent(3)).variance(), 10 / 9)


def test_issue_example_theta2_n10():
    g = Graph(make_coalescent(10), theta=2.0)
    rates = [Fraction(C2(k)) * 2 for k in range(2, 11)]
    exact = hypoexp_moments_exact(rates, 3)
    exact_var = exact[1] - exact[0] ** 2
    # the independent exact reference reproduces the numbers quoted in the issue
    assert exact[0] == Fraction(9, 10)
    assert abs(float(exact_var) - 0.28953546233308) < 1e-13
    assert abs(float(exact[1]) - 1.09953546233308) < 1e-13
    assert abs(float(exact[2]) - 1.77153297430083) < 1e-13
    assert g.vertices_length() == 11
    close(g.expectation(), 0.9)
    close(g.variance(), float(exact_var))
    m = np.asarray(g.moments(3), dtype=float)
    assert m.shape == (3,)
    close(m, [float(x) for x in exact])


@pytest.mark.parametrize("n", [2, 4, 10, 20])
def test_total_branch_length(n):
    g = Graph(make_coalescent(n))
    r = np.asarray(g.states())[:, 0].astype(float)  # k lineages in state k
    close(g.expectation(rewards=r), 2 * sum(1 / i for i in range(1, n)))
    close(g.variance(rewards=r), 4 * sum(1 / i**2 for i in range(1, n)))
    # E[L^2] = Var + E^2
    m = np.asarray(g.moments(2, rewards=r), dtype=float)
    ref2 = 4 * sum(1 / i**2 for i in range(1, n)) + (2 * sum(1 / i for i in range(1, n))) ** 2
    close(m, [2 * sum(1 / i for i in range(1, n)), ref2])


@pytest.mark.parametrize("n", [3, 8])
def test_covariance_tmrca_and_total_length(n):
    # T = sum tau_k, L = sum k tau_k with independent tau_k ~ Exp(C(k,2))
    g = Graph(make_coalescent(n))
    ones = np.ones(g.vertices_length())
    r = np.asarray(g.states())[:, 0].astype(float)
    ref = sum(k / C2(k) ** 2 for k in range(2, n + 1))
    close(g.covariance(ones, r), ref)
    close(g.covariance(r, ones), ref)
    close(g.covariance(ones, ones), g.variance())


def test_sojourn_times_coalescent():
    n, theta = 7, 1.5
    g = Graph(make_coalescent(n), theta=theta)
    soj = np.asarray(g.expected_sojourn_time(), dtype=float)
    assert soj.shape == (g.vertices_length(),)
    for v, row in enumerate(np.asarray(g.states())):
        k = int(row[0])
        if k >= 2:
            close(soj[v], 1 / (C2(k) * theta))


def test_kingman_two_is_exponential_one():
    g = Graph(make_coalescent(2))
    m = np.asarray(g.moments(6), dtype=float)
    close(m, [math.factorial(k) for k in range(1, 7)])


def test_parameterised_coalescent_matches_closed_form():
    g = Graph(
        with_ipv([9])(lambda state: [] if state[0] <= 1 else [[[int(state[0]) - 1], [C2(int(state[0]))]]]), theta_dim=1
    )
    for theta in (0.5, 3.0):
        g.update_weights([theta])
        close(g.expectation(), 2 * (1 - 1 / 9) / theta)
        close(g.variance(), sum(1 / (C2(k) * theta) ** 2 for k in range(2, 10)))


# --------------------------------------------------------------------------- block counting / SFS


@pytest.mark.parametrize("n", [2, 3, 4, 6, 8, 10])
def test_sfs_expectations(n):
    g = Graph(make_block_counting(n))
    states = np.asarray(g.states())
    assert states.shape[1] == n
    for i in range(1, n):
        close(g.expectation(rewards=states[:, i - 1].astype(float)), 2 / i)


def test_block_counting_state_count():
    # the transient states are the partitions of n with at least two parts, plus the MRCA
    p = {2: 2, 3: 3, 4: 5, 5: 7, 6: 11, 7: 15}
    for n, parts in p.items():
        g = Graph(make_block_counting(n))
        assert g.vertices_length() == parts + 1


@pytest.mark.parametrize("n", [4, 6])
def test_sfs_covariances_against_dense(n):
    g = Graph(make_block_counting(n))
    start = [n] + [0] * (n - 1)
    states, alpha, S = dense_from_transitions(block_counting_transitions, [[start, 1.0]])
    vi = vertex_index(g)
    gstates = np.asarray(g.states())
    for i in range(1, n):
        for j in range(i, n):
            ri = np.array([st[i - 1] for st in states], dtype=float)
            rj = np.array([st[j - 1] for st in states], dtype=float)
            ref = ph_covariance(alpha, S, ri, rj)
            got = g.covariance(gstates[:, i - 1].astype(float), gstates[:, j - 1].astype(float))
            close(got, ref)
    assert set(vi) >= {tuple(s) for s in states}


def test_sfs_n3_closed_form_variance():
    # n = 3: xi_1 = 3 tau_3 + tau_2, tau_3 ~ Exp(3), tau_2 ~ Exp(1)
    g = Graph(make_block_counting(3))
    r1 = np.asarray(g.states())[:, 0].astype(float)
    r2 = np.asarray(g.states())[:, 1].astype(float)
    close(g.variance(rewards=r1), 9 / 9 + 1)
    # xi_2 = tau_2, Cov(xi_1, xi_2) = Var(tau_2) = 1
    close(g.variance(rewards=r2), 1.0)
    close(g.covariance(r1, r2), 1.0)


# --------------------------------------------------------------------------- exponential family


@pytest.mark.parametrize("lam", [0.3, 1.0, 7.0])
def test_exponential_moments(lam):
    g = Graph(make_chain([lam]))
    close(g.moments(5), [math.factorial(k) / lam**k for k in range(1, 6)])
    close(g.variance(), 1 / lam**2)


@pytest.mark.parametrize("k,lam", [(2, 1.0), (5, 2.5), (12, 0.7)])
def test_erlang_moments(k, lam):
    g = Graph(make_chain([lam] * k))
    ref = [math.factorial(k + m - 1) / math.factorial(k - 1) / lam**m for m in range(1, 5)]
    close(g.moments(4), ref)
    close(g.variance(), k / lam**2)


def test_hypoexponential_moments():
    rates = [0.5, 1.25, 3.0, 8.0]
    g = Graph(make_chain(rates))
    exact = hypoexp_moments_exact(rates, 4)
    close(g.moments(4), [float(x) for x in exact])
    close(g.variance(), sum(1 / r**2 for r in rates))


def test_coxian_moments():
    rates, probs = [2.0, 0.75, 3.5, 1.0], [0.6, 0.3, 0.9]
    g = Graph(make_chain(rates, probs))
    # mixture: stop after phase i with probability prod_{j<i} p_j * (1 - p_i)
    ref = np.zeros(4, dtype=object)
    reach = Fraction(1)
    for i in range(len(rates)):
        stop = 1 - Fraction(probs[i]) if i < len(probs) else Fraction(1)
        w = reach * stop
        ref = ref + w * np.array(hypoexp_moments_exact(rates[: i + 1], 4), dtype=object)
        if i < len(probs):
            reach *= Fraction(probs[i])
    close(g.moments(4), [float(x) for x in ref])


# --------------------------------------------------------------------------- worked example (Fig. 3)


FIG3 = {1: [[[2], 0.6], [[4], 0.4]], 2: [[[3], 0.5], [[4], 0.5]], 3: [[[1], 1.0]], 4: []}
FIG3_REWARD = {1: 5.0, 2: 2.0, 3: 5.0}


@pytest.mark.parametrize("start,expected", [(1, 11.0), (2, 10.0), (3, 16.0)])
def test_fig3_cycle_with_rewards(start, expected):
    g = Graph(lambda state: FIG3[int(state[0])], ipv=[start])
    r = np.array([FIG3_REWARD.get(int(s[0]), 0.0) for s in np.asarray(g.states())])
    close(g.expectation(rewards=r), expected)


# --------------------------------------------------------------------------- discrete


@pytest.mark.parametrize("p", [0.05, 0.3, 0.9])
def test_geometric(p):
    g = Graph(with_ipv([1])(lambda s: [[[2], p]] if s[0] == 1 else []), discrete=True)
    assert g.discrete
    close(g.expectation(), 1 / p)
    close(g.variance(), (1 - p) / p**2)
    close(g.moments(3), [1 / p, (2 - p) / p**2, (p**2 - 6 * p + 6) / p**3])
    k = np.arange(1, 40)
    np.testing.assert_allclose(g.pmf(k), (1 - p) ** (k - 1) * p, rtol=0, atol=1e-13)
    np.testing.assert_allclose(g.cdf(k), 1 - (1 - p) ** k, rtol=0, atol=1e-13)


def test_negative_binomial():
    p, r = 0.4, 3
    g = Graph(make_chain([p] * r), discrete=True)
    k = np.arange(1, 60)
    ref = np.array([math.comb(int(m) - 1, r - 1) * p**r * (1 - p) ** (int(m) - r) if m >= r else 0.0 for m in k])
    np.testing.assert_allclose(g.pmf(k), ref, rtol=0, atol=1e-13)
    close(g.expectation(), r / p)
    close(g.variance(), r * (1 - p) / p**2)
