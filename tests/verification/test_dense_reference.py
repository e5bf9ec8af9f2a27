"""Graph results against dense-matrix formulas on random sparse graphs with cycles.

The reference (alpha, S) is built from the random model's own edge list (and,
separately, from ``g.edges()``), never only from ``g.as_matrices()``.  Formulas:
U = (-S)^-1, E[Y^k] = k! alpha (U diag r)^k 1, the cross-moment covariance formula,
expected sojourn = alpha U, and Bladt & Nielsen's Thm 8.1.1 for reward transforms.

Tolerance: 1e-12 relative throughout, including the 300-vertex graphs (their
-S is well conditioned, cond ~ 1e2, and the reference solve is refined in
extended precision, so the reference itself is accurate to a few ulps).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phasic import Graph

from .models import (
    RandomModel,
    matrices_from_csr,
    ph_covariance,
    ph_pdf,
    ph_reward_moments,
    ph_reward_transform,
    ph_sojourn,
)


def close(got, ref, rtol=1e-12, atol=0.0):
    np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(ref, dtype=float), rtol=rtol, atol=atol)


def dense_positions(g, vertices):
    """Dense (model) index of each given vertex, read from its state (s, s % 5)."""
    states = np.asarray(g.states())
    return np.array([int(states[v, 0]) - 1 for v in vertices], dtype=int)


def graph_rewards(g, model, r_dense, rng):
    """Per-vertex reward vector: model rewards on transient states, junk elsewhere.

    The start vertex and absorbing vertices get arbitrary positive values, which
    must not change anything (no time is spent there).
    """
    states = np.asarray(g.states())
    r = rng.uniform(1.0, 50.0, len(states))
    for v, row in enumerate(states):
        if v and 1 <= row[0] <= model.n:
            r[v] = r_dense[row[0] - 1]
    return r


def dense_rewards(model, rng, zero_frac):
    r = rng.uniform(0.5, 2.0, model.n)
    r[rng.random(model.n) < zero_frac] = 0.0
    for st_, _ in model.ipv:  # keep the reward process non-trivial
        r[st_[0] - 1] = rng.uniform(0.5, 2.0)
    return r


def build(model, manual, theta=None):
    if manual:
        return model.build_manual(theta=theta)
    kw = {"discrete": True} if model.discrete else {}
    if model.theta_dim and theta is None:
        kw["theta_dim"] = model.theta_dim
    return Graph(model.callback(theta), **kw)


CASES = [  # (seed, n, extra, n_start, defect, n_absorbing)
    (1, 5, 1, 1, 0.0, 1),
    (2, 30, 2, 3, 0.0, 2),
    (3, 60, 3, 2, 0.25, 1),
]
BIG = (4, 300, 2, 4, 0.0, 3)


@pytest.mark.parametrize("manual", [False, True], ids=["callback", "manual"])
@pytest.mark.parametrize("case", CASES + [BIG], ids=lambda c: f"n{c[1]}")
def test_matrices_match_model_edge_list(case, manual):
    seed, n, extra, n_start, defect, n_abs = case
    model = RandomModel(seed, n, extra=extra, n_start=n_start, defect=defect, n_absorbing=n_abs)
    g = build(model, manual)
    alpha_ref, S_ref = model.dense()
    # every transient state plus the reachable absorbing ones (a defect may add one more)
    assert n + 2 <= g.vertices_length() <= 1 + n + n_abs + (defect > 0)
    # from as_matrices
    alpha, S = g.as_matrices()
    tv = np.asarray(g.transient_vertices())
    assert np.all(np.diff(tv) > 0)
    p = dense_positions(g, tv)
    assert sorted(p) == list(range(n))
    close(alpha, alpha_ref[p], rtol=1e-15)
    close(S, S_ref[np.ix_(p, p)], rtol=1e-14, atol=1e-14)
    # from the CSR arrays alone
    tv2, alpha2, S2 = matrices_from_csr(g)
    np.testing.assert_array_equal(tv2, tv)
    close(alpha2, alpha_ref[p], rtol=1e-15)
    close(S2, S_ref[np.ix_(p, p)], rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("case", CASES + [BIG], ids=lambda c: f"n{c[1]}")
def test_moments_and_reward_moments(case):
    seed, n, extra, n_start, defect, n_abs = case
    rtol = 1e-12
    model = RandomModel(seed, n, extra=extra, n_start=n_start, defect=defect, n_absorbing=n_abs)
    g = build(model, manual=False)
    alpha, S = model.dense()
    close(g.moments(4), ph_reward_moments(alpha, S, 4), rtol=rtol)
    ref = ph_reward_moments(alpha, S, 2)
    close(g.expectation(), ref[0], rtol=rtol)
    close(g.variance(), ref[1] - ref[0] ** 2, rtol=rtol)
    rng = np.random.default_rng(seed + 100)
    r_dense = dense_rewards(model, rng, zero_frac=0.3)
    r = graph_rewards(g, model, r_dense, rng)
    ref_r = ph_reward_moments(alpha, S, 3, r_dense)
    close(g.moments(3, rewards=r), ref_r, rtol=rtol)
    close(g.expectation(rewards=r), ref_r[0], rtol=rtol)
    close(g.variance(rewards=r), ref_r[1] - ref_r[0] ** 2, rtol=rtol)


@pytest.mark.parametrize("case", CASES + [BIG], ids=lambda c: f"n{c[1]}")
def test_covariance_and_sojourn(case):
    seed, n, extra, n_start, defect, n_abs = case
    rtol = 1e-12
    model = RandomModel(seed, n, extra=extra, n_start=n_start, defect=defect, n_absorbing=n_abs)
    g = build(model, manual=True)
    alpha, S = model.dense()
    rng = np.random.default_rng(seed + 200)
    r1d, r2d = dense_rewards(model, rng, 0.3), dense_rewards(model, rng, 0.0)
    r1, r2 = graph_rewards(g, model, r1d, rng), graph_rewards(g, model, r2d, rng)
    ref = ph_covariance(alpha, S, r1d, r2d)
    close(g.covariance(r1, r2), ref, rtol=rtol)
    close(g.covariance(r2, r1), ref, rtol=rtol)
    soj = np.asarray(g.expected_sojourn_time(), dtype=float)
    assert soj.shape == (g.vertices_length(),)
    tv = np.asarray(g.transient_vertices())
    close(soj[tv], ph_sojourn(alpha, S)[dense_positions(g, tv)], rtol=rtol)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"n{c[1]}")
def test_reward_transform(case):
    seed, n, extra, n_start, defect, n_abs = case
    model = RandomModel(seed, n, extra=extra, n_start=n_start, defect=defect, n_absorbing=n_abs)
    g = build(model, manual=False)
    alpha, S = model.dense()
    rng = np.random.default_rng(seed + 300)
    r_dense = dense_rewards(model, rng, zero_frac=0.35)
    r = graph_rewards(g, model, r_dense, rng)
    before = g.to_arrays()[0]
    g2 = g.reward_transform(r)
    # the original graph is untouched
    after = g.to_arrays()[0]
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])
    ref = ph_reward_moments(alpha, S, 3, r_dense)
    close(g2.expectation(), ref[0])
    close(g2.moments(3), ref)
    # Bladt & Nielsen Thm 8.1.1 matrix transform
    P, a_new, S_new = ph_reward_transform(alpha, S, r_dense)
    close(ph_reward_moments(a_new, S_new, 3), ref, rtol=1e-11)  # sanity of the reference itself
    t = np.array([0.05, 0.4, 1.3, 3.0])
    np.testing.assert_allclose(np.asarray(g2.pdf(t), dtype=float), ph_pdf(a_new, S_new, t), rtol=0, atol=1e-9)
    # the transformed graph keeps exactly the positive-reward transient states
    alpha2, S2 = g2.as_matrices()
    tv2 = np.asarray(g2.transient_vertices())
    p2 = dense_positions(g2, tv2)
    assert sorted(p2) == sorted(P)
    where = {int(x): i for i, x in enumerate(P)}
    q = np.array([where[int(x)] for x in p2])
    scale = np.abs(S_new).max()
    close(alpha2, a_new[q], rtol=1e-12, atol=1e-15)
    close(S2, S_new[np.ix_(q, q)], rtol=1e-12, atol=1e-14 * scale)


def test_manual_and_callback_builds_agree():
    model = RandomModel(7, 40, extra=2, n_start=2, n_absorbing=2)
    g1, g2 = build(model, False), build(model, True)
    close(g1.moments(3), g2.moments(3), rtol=1e-12)
    alpha, S = model.dense()
    close(g2.moments(3), ph_reward_moments(alpha, S, 3))


@settings(max_examples=25, deadline=None, database=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 40),
    extra=st.integers(0, 3),
    n_start=st.integers(1, 3),
    defect=st.sampled_from([0.0, 0.3]),
    manual=st.booleans(),
    zero_frac=st.sampled_from([0.0, 0.4]),
)
def test_random_graphs_hypothesis(seed, n, extra, n_start, defect, manual, zero_frac):
    model = RandomModel(seed, n, extra=extra, n_start=n_start, defect=defect, n_absorbing=1 + seed % 2)
    g = build(model, manual)
    alpha, S = model.dense()
    tv, alpha2, S2 = matrices_from_csr(g)
    p = dense_positions(g, tv)
    close(alpha2, alpha[p], rtol=1e-15)
    close(S2, S[np.ix_(p, p)], rtol=1e-14, atol=1e-14)
    close(g.moments(3), ph_reward_moments(alpha, S, 3))
    rng = np.random.default_rng(seed)
    r_dense = dense_rewards(model, rng, zero_frac)
    r = graph_rewards(g, model, r_dense, rng)
    ref = ph_reward_moments(alpha, S, 2, r_dense)
    close(g.expectation(rewards=r), ref[0])
    close(g.moments(2, rewards=r), ref)
    close(g.variance(rewards=r), ref[1] - ref[0] ** 2)


# --------------------------------------------------------------------------- parameterised edges


@pytest.mark.parametrize("mixed", [False, True], ids=["all-param", "mixed"])
@pytest.mark.parametrize("manual", [False, True], ids=["callback", "manual"])
def test_parameterised_edges(mixed, manual):
    model = RandomModel(11, 35, extra=2, n_start=2, n_absorbing=2, theta_dim=2, mixed=mixed)
    g = build(model, manual)
    assert g.theta_dim == 2
    coef = np.asarray(g.coefficients())
    assert coef.shape == (g.edges_length(), 2) and coef.dtype == np.float64
    for theta in ([0.7, 2.0], [3.0, 0.25], [1.0, 1.0]):
        g.update_weights(theta)
        direct = Graph(model.callback(theta))  # rates c.theta computed here
        alpha, S = model.dense(theta)
        ref = ph_reward_moments(alpha, S, 3)
        close(g.moments(3), ref)
        close(direct.moments(3), ref)
        close(g.expectation(), direct.expectation())
        # weights after the update equal c.theta edge by edge
        tvs, a2, S2 = matrices_from_csr(g)
        p = dense_positions(g, tvs)
        close(S2, S[np.ix_(p, p)], rtol=1e-14, atol=1e-14)


def test_parameterised_two_rate_model_closed_form():
    # 1 -> 2 at rate th1, 2 -> 1 at rate 2*th2, 1 -> 3 at constant 0.5, 2 -> 3 at constant 1.0
    table = {1: [[[2], [1.0, 0.0]], [[3], 0.5]], 2: [[[1], [0.0, 2.0]], [[3], 1.0]], 3: []}
    g = Graph(lambda s: table[int(s[0])], ipv=[1], theta_dim=2)
    for th1, th2 in ((1.0, 1.0), (0.2, 4.0)):
        g.update_weights([th1, th2])
        # E1 = (1 + th1 E2) / (th1 + 0.5), E2 = (1 + 2 th2 E1) / (2 th2 + 1)
        a, b = th1 + 0.5, 2 * th2 + 1
        E1 = (1 + th1 / b) / (a - th1 * 2 * th2 / b)
        close(g.expectation(), E1)
