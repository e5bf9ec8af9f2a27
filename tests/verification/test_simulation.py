"""Simulated absorption times against exact moments and cdfs.

Statistical tolerance: a sample mean must lie within 5 standard errors
(sigma / sqrt(N)) of the exact mean, and a sample variance within 5 standard
errors sqrt((mu4 - sigma^4) / N) of the exact variance, with the central fourth
moment mu4 from exact raw moments.  Seeds are fixed, so each check is
deterministic; for a correct sampler a 5-SE miss has probability below 1e-6.
"""

from fractions import Fraction

import numpy as np
import pytest
import scipy.stats

from phasic import Graph, with_ipv

from .models import RandomModel, hypoexp_cdf, hypoexp_moments_exact, make_coalescent, ph_cdf, ph_reward_moments

N = 20000


def central4(m):
    m1, m2, m3, m4 = m
    return m4 - 4 * m3 * m1 + 6 * m2 * m1**2 - 3 * m1**4


def check_mean_var(x, raw):
    """raw = exact E[X], E[X^2], E[X^3], E[X^4]."""
    n = len(x)
    mean, var = raw[0], raw[1] - raw[0] ** 2
    se_mean = np.sqrt(var / n)
    assert abs(x.mean() - mean) <= 5 * se_mean, (x.mean(), mean, se_mean)
    se_var = np.sqrt((central4(raw) - var**2) / n)
    assert abs(x.var(ddof=1) - var) <= 5 * se_var, (x.var(ddof=1), var, se_var)


def test_coalescent_samples():
    n = 10
    g = Graph(make_coalescent(n))
    x = np.asarray(g.sample(N, seed=1))
    assert x.shape == (N,) and x.dtype == np.float64
    assert np.all(np.isfinite(x)) and np.all(x > 0)
    rates = [Fraction(k * (k - 1), 2) for k in range(2, n + 1)]
    raw = [float(v) for v in hypoexp_moments_exact(rates, 4)]
    check_mean_var(x, raw)
    ks = scipy.stats.kstest(x, lambda t: hypoexp_cdf([float(r) for r in rates], np.asarray(t)))
    assert ks.pvalue > 1e-4, ks


def test_random_cyclic_graph_samples():
    model = RandomModel(71, 30, extra=2, n_start=2, n_absorbing=2)
    g = Graph(model.callback())
    alpha, S = model.dense()
    x = np.asarray(g.sample(N, seed=7))
    check_mean_var(x, ph_reward_moments(alpha, S, 4))
    grid = np.quantile(x, [0.1, 0.3, 0.5, 0.7, 0.9])
    emp = np.array([(x <= q).mean() for q in grid])
    # empirical cdf at 5 points within 5 binomial standard errors of F(t)
    F = ph_cdf(alpha, S, grid)
    assert np.all(np.abs(emp - F) <= 5 * np.sqrt(F * (1 - F) / N)), (emp, F)


def test_parameterised_samples_follow_update():
    model = RandomModel(72, 15, extra=2, theta_dim=2)
    g = Graph(model.callback(), theta_dim=2)
    for theta in ([0.5, 1.0], [4.0, 2.0]):
        g.update_weights(theta)
        alpha, S = model.dense(theta)
        check_mean_var(np.asarray(g.sample(N, seed=3)), ph_reward_moments(alpha, S, 4))


def test_defect_atom_in_samples():
    d = 0.3
    g = Graph(with_ipv([[[1], 1 - d]])(lambda s: [[[2], 1.5]] if s[0] == 1 else []))
    x = np.asarray(g.sample(N, seed=5))
    zero = (x == 0).mean()
    assert abs(zero - d) <= 5 * np.sqrt(d * (1 - d) / N)
    pos = x[x > 0]
    check_mean_var(pos, [1 / 1.5, 2 / 1.5**2, 6 / 1.5**3, 24 / 1.5**4])


@pytest.mark.parametrize("p", [0.05, 0.4])
def test_geometric_samples(p):
    g = Graph(with_ipv([1])(lambda s: [[[2], p]] if s[0] == 1 else []), discrete=True)
    x = np.asarray(g.sample(N, seed=11))
    assert np.all(x == np.round(x)) and x.min() >= 1
    # raw moments of Geometric(p) on {1, 2, ...}
    q = 1 - p
    raw = [1 / p, (1 + q) / p**2, (1 + 4 * q + q**2) / p**3, (1 + 11 * q + 11 * q**2 + q**3) / p**4]
    check_mean_var(x, raw)
    # P(X = 1) = p
    assert abs((x == 1).mean() - p) <= 5 * np.sqrt(p * q / N)


def test_seeds():
    g = Graph(make_coalescent(5))
    a, b = np.asarray(g.sample(500, seed=123)), np.asarray(g.sample(500, seed=123))
    np.testing.assert_array_equal(a, b)
    c = np.asarray(g.sample(500, seed=124))
    assert not np.array_equal(a, c)
    assert len(np.unique(a)) == 500  # continuous draws do not repeat
    # a rebuilt graph with the same seed gives the same draws
    np.testing.assert_array_equal(a, np.asarray(Graph(make_coalescent(5)).sample(500, seed=123)))


def test_manual_graph_samples():
    # sample() as the first call on a manually built graph: Exp(2)
    g = Graph(state_length=1)
    a, b = g.find_or_create_vertex([1]), g.find_or_create_vertex([2])
    g.add_edge(g.starting_vertex(), a, 1.0)
    g.add_edge(a, b, 2.0)
    x = np.asarray(g.sample(N, seed=9))
    check_mean_var(x, [0.5, 2 / 4, 6 / 8, 24 / 16])
