"""pdf/cdf (continuous) and pmf/cdf/moments (discrete) against independent references.

Continuous: f(t) = alpha e^{St} s, F(t) = 1 - alpha e^{St} 1 with scipy.linalg.expm,
plus closed forms (exponential, Erlang, hypoexponential, Coxian, Kingman).
A defective IPV (sum < 1) puts an atom 1 - sum(alpha) at 0, so F(0) = 1 - sum(alpha).
Discrete: P(tau = k) = pi T^(k-1) t, F(k) = 1 - pi T^k 1, moments from (I - T)^-1.
Tolerance 1e-9 absolute for distribution functions, 1e-12 relative for moments.
"""

import math

import numpy as np
import pytest

from phasic import Graph, with_ipv

from .models import (
    RandomModel,
    Solver,
    dph_moments,
    dph_pmf,
    dph_raw_moments3,
    hypoexp_cdf,
    hypoexp_pdf,
    make_chain,
    make_coalescent,
    matrices_from_csr,
    ph_cdf,
    ph_pdf,
)

ATOL = 1e-9


def arr(x):
    return np.asarray(x, dtype=float)


def close(got, ref, rtol=1e-12):
    np.testing.assert_allclose(arr(got), arr(ref), rtol=rtol, atol=0)


T_GRID = np.array([0.0, 0.01, 0.1, 0.35, 0.8, 1.5, 2.7, 5.0, 9.0, 20.0])


# --------------------------------------------------------------------------- continuous closed forms


@pytest.mark.parametrize("lam", [0.4, 1.0, 6.0])
def test_exponential_pdf_cdf(lam):
    g = Graph(make_chain([lam]))
    np.testing.assert_allclose(arr(g.pdf(T_GRID)), lam * np.exp(-lam * T_GRID), rtol=0, atol=ATOL)
    np.testing.assert_allclose(arr(g.cdf(T_GRID)), 1 - np.exp(-lam * T_GRID), rtol=0, atol=ATOL)


def test_kingman_two_is_exp_one():
    g = Graph(make_coalescent(2))
    np.testing.assert_allclose(arr(g.pdf(T_GRID)), np.exp(-T_GRID), rtol=0, atol=ATOL)
    np.testing.assert_allclose(arr(g.cdf(T_GRID)), 1 - np.exp(-T_GRID), rtol=0, atol=ATOL)


@pytest.mark.parametrize("k,lam", [(2, 1.0), (4, 3.0), (9, 0.8)])
def test_erlang_pdf_cdf(k, lam):
    g = Graph(make_chain([lam] * k))
    t = T_GRID
    pdf = lam**k * t ** (k - 1) * np.exp(-lam * t) / math.factorial(k - 1)
    cdf = 1 - sum(np.exp(-lam * t) * (lam * t) ** j / math.factorial(j) for j in range(k))
    np.testing.assert_allclose(arr(g.pdf(t)), pdf, rtol=0, atol=ATOL)
    np.testing.assert_allclose(arr(g.cdf(t)), cdf, rtol=0, atol=ATOL)


def test_hypoexponential_and_kingman_cdf():
    rates = [0.5, 1.25, 3.0, 8.0]
    g = Graph(make_chain(rates))
    np.testing.assert_allclose(arr(g.pdf(T_GRID)), hypoexp_pdf(rates, T_GRID), rtol=0, atol=ATOL)
    np.testing.assert_allclose(arr(g.cdf(T_GRID)), hypoexp_cdf(rates, T_GRID), rtol=0, atol=ATOL)
    n, theta = 6, 2.0
    g = Graph(make_coalescent(n), theta=theta)
    krates = [k * (k - 1) / 2 * theta for k in range(2, n + 1)]
    np.testing.assert_allclose(arr(g.cdf(T_GRID)), hypoexp_cdf(krates, T_GRID), rtol=0, atol=ATOL)
    np.testing.assert_allclose(arr(g.pdf(T_GRID)), hypoexp_pdf(krates, T_GRID), rtol=0, atol=ATOL)


def test_coxian_pdf():
    rates, probs = [2.0, 0.75, 3.5], [0.6, 0.3]
    g = Graph(make_chain(rates, probs))
    weights = [1 - probs[0], probs[0] * (1 - probs[1]), probs[0] * probs[1]]
    pdf = sum(w * hypoexp_pdf(rates[: i + 1], T_GRID) for i, w in enumerate(weights))
    cdf = sum(w * hypoexp_cdf(rates[: i + 1], T_GRID) for i, w in enumerate(weights))
    np.testing.assert_allclose(arr(g.pdf(T_GRID)), pdf, rtol=0, atol=ATOL)
    np.testing.assert_allclose(arr(g.cdf(T_GRID)), cdf, rtol=0, atol=ATOL)


def test_scalar_and_vector_calls_agree():
    g = Graph(make_chain([1.0, 2.0]))
    vec = arr(g.pdf(np.array([0.5, 1.5])))
    assert vec.shape == (2,)
    assert float(g.pdf(0.5)) == pytest.approx(vec[0], abs=1e-15)
    assert float(g.cdf(1.5)) == pytest.approx(float(arr(g.cdf([1.5]))[0]), abs=1e-15)


def test_defect_gives_atom_at_zero():
    # IPV mass 0.6 on an Exp(2) phase: F(t) = 0.4 + 0.6 (1 - e^{-2t}), f(t) = 1.2 e^{-2t}
    g = Graph(with_ipv([[[1], 0.6]])(lambda s: [[[2], 2.0]] if s[0] == 1 else []))
    t = T_GRID
    np.testing.assert_allclose(arr(g.cdf(t)), 0.4 + 0.6 * (1 - np.exp(-2 * t)), rtol=0, atol=ATOL)
    np.testing.assert_allclose(arr(g.pdf(t[1:])), 1.2 * np.exp(-2 * t[1:]), rtol=0, atol=ATOL)
    close(g.moments(2), [0.6 * 0.5, 0.6 * 2 / 4])


def test_manual_geometric_pmf_first_call():
    # pmf as the very first call on a manually built discrete graph
    g = Graph(state_length=1, discrete=True)
    a, b = g.find_or_create_vertex([1]), g.find_or_create_vertex([2])
    g.add_edge(g.starting_vertex(), a, 1.0)
    g.add_edge(a, b, 0.25)
    k = np.arange(1, 20)
    np.testing.assert_allclose(arr(g.pmf(k)), 0.75 ** (k - 1) * 0.25, rtol=0, atol=ATOL)


# --------------------------------------------------------------------------- continuous, random graphs


@pytest.mark.parametrize("manual", [False, True], ids=["callback", "manual"])
@pytest.mark.parametrize("seed,n,n_start,defect", [(21, 6, 1, 0.0), (22, 40, 3, 0.0), (23, 80, 2, 0.2)])
def test_random_graph_pdf_cdf_vs_expm(seed, n, n_start, defect, manual):
    model = RandomModel(seed, n, extra=2, n_start=n_start, defect=defect, n_absorbing=2)
    alpha, S = model.dense()
    g = model.build_manual() if manual else Graph(model.callback())
    np.testing.assert_allclose(arr(g.pdf(T_GRID)), ph_pdf(alpha, S, T_GRID), rtol=0, atol=ATOL)
    cdf = arr(g.cdf(T_GRID))
    np.testing.assert_allclose(cdf, ph_cdf(alpha, S, T_GRID), rtol=0, atol=ATOL)
    assert abs(cdf[0] - defect) <= ATOL


def test_manual_exponential_pdf_cdf():
    # start -> [1] -> [2] at rate 2: Exp(2)
    g = Graph(state_length=1)
    a, b = g.find_or_create_vertex([1]), g.find_or_create_vertex([2])
    g.add_edge(g.starting_vertex(), a, 1.0)
    g.add_edge(a, b, 2.0)
    np.testing.assert_allclose(arr(g.pdf(T_GRID)), 2 * np.exp(-2 * T_GRID), rtol=0, atol=ATOL)
    np.testing.assert_allclose(arr(g.cdf(T_GRID)), 1 - np.exp(-2 * T_GRID), rtol=0, atol=ATOL)


def test_pdf_with_rates_spanning_orders_of_magnitude():
    model = RandomModel(31, 25, extra=2, n_start=2, rate_range=(0.01, 100.0))
    alpha, S = model.dense()
    g = Graph(model.callback())
    t = np.array([0.0, 0.001, 0.02, 0.5, 4.0, 40.0])
    np.testing.assert_allclose(arr(g.pdf(t)), ph_pdf(alpha, S, t), rtol=0, atol=ATOL)
    np.testing.assert_allclose(arr(g.cdf(t)), ph_cdf(alpha, S, t), rtol=0, atol=ATOL)


def test_parameterised_pdf_after_update():
    model = RandomModel(41, 20, extra=2, theta_dim=2, mixed=True)
    g = Graph(model.callback(), theta_dim=2)
    for theta in ([0.5, 1.5], [2.0, 0.3]):
        g.update_weights(theta)
        alpha, S = model.dense(theta)
        np.testing.assert_allclose(arr(g.pdf(T_GRID)), ph_pdf(alpha, S, T_GRID), rtol=0, atol=ATOL)
        np.testing.assert_allclose(arr(g.cdf(T_GRID)), ph_cdf(alpha, S, T_GRID), rtol=0, atol=ATOL)


# --------------------------------------------------------------------------- discrete


DCASES = [(51, 5, 1, 0.0), (52, 30, 2, 0.0), (53, 60, 3, 0.15)]


@pytest.mark.parametrize("manual", [False, True], ids=["callback", "manual"])
@pytest.mark.parametrize("seed,n,n_start,defect", DCASES)
def test_dph_pmf_cdf(seed, n, n_start, defect, manual):
    model = RandomModel(seed, n, extra=2, n_start=n_start, defect=defect, discrete=True)
    pi, T = model.dense()
    g = model.build_manual() if manual else Graph(model.callback(), discrete=True)
    assert g.discrete
    # as_matrices returns the sub-transition matrix of the same chain
    a2, T2 = g.as_matrices()
    tv = np.asarray(g.transient_vertices())
    p = np.array([int(np.asarray(g.states())[v, 0]) - 1 for v in tv])
    np.testing.assert_allclose(a2, pi[p], rtol=1e-15, atol=0)
    np.testing.assert_allclose(T2, T[np.ix_(p, p)], rtol=1e-13, atol=1e-15)
    k = np.arange(1, 61)
    ref = dph_pmf(pi, T, 60)
    np.testing.assert_allclose(arr(g.pmf(k)), ref, rtol=0, atol=ATOL)
    cdf_ref = (1 - pi.sum()) + np.cumsum(ref)
    np.testing.assert_allclose(arr(g.cdf(k)), cdf_ref, rtol=0, atol=ATOL)
    assert abs(float(arr(g.cdf([0]))[0]) - (1 - pi.sum())) <= ATOL


@pytest.mark.parametrize("seed,n,n_start,defect", DCASES)
def test_dph_moments(seed, n, n_start, defect):
    model = RandomModel(seed, n, extra=2, n_start=n_start, defect=defect, discrete=True)
    pi, T = model.dense()
    g = Graph(model.callback(), discrete=True)
    m3 = dph_raw_moments3(pi, T)
    m1, m2 = dph_moments(pi, T)
    close([m1, m2], m3[:2], rtol=1e-12)  # the two references agree
    close(g.expectation(), m1)
    close(g.variance(), m2 - m1**2)
    close(g.moments(3), m3)


@pytest.mark.parametrize("seed,n", [(61, 8), (62, 45)])
def test_dph_reward_moments_and_visits(seed, n):
    model = RandomModel(seed, n, extra=2, n_start=2, discrete=True)
    pi, T = model.dense()
    g = Graph(model.callback(), discrete=True)
    rng = np.random.default_rng(seed)
    r_dense = rng.uniform(0.5, 3.0, n)
    r_dense[rng.random(n) < 0.3] = 0.0
    states = np.asarray(g.states())
    r = np.array([r_dense[s[0] - 1] if v and s[0] <= n else 7.0 for v, s in enumerate(states)])
    m1, m2 = dph_moments(pi, T, r_dense)
    close(g.expectation(rewards=r), m1)
    close(g.variance(rewards=r), m2 - m1**2)
    # expected number of time steps spent in each transient vertex: pi (I - T)^-1
    visits = Solver(np.eye(n) - T).solve(pi, trans=True)
    tv, _, _ = matrices_from_csr(g)
    soj = arr(g.expected_sojourn_time())
    close(soj[tv], visits[[int(states[v, 0]) - 1 for v in tv]])
