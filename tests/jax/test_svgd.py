"""Graph.svgd: posterior particles against a closed-form posterior (exponential data under a
log-uniform prior: Gamma(n, sum x)), fixed parameters, the log-likelihood, bad input."""

import numpy as np
import pytest

pytest.importorskip("jax")

from phasic import Graph
from phasic.exceptions import ParameterError


def two_stage():
    """Start -> a (rate theta[0]) -> b (rate theta[1]) -> absorbed: a hypoexponential."""
    g = Graph(state_length=1, theta_dim=2)
    a, b, done = (g.find_or_create_vertex([i]) for i in (1, 2, 3))
    g.add_edge(0, a, 1.0)
    g.add_edge(a, b, 0.0, coefficients=[1.0, 0.0])
    g.add_edge(b, done, 0.0, coefficients=[0.0, 1.0])
    g.update_weights([1.0, 1.0])
    return g


def one_stage():
    g = Graph(state_length=1, theta_dim=1)
    a, done = g.find_or_create_vertex([1]), g.find_or_create_vertex([2])
    g.add_edge(0, a, 1.0)
    g.add_edge(a, done, 0.0, coefficients=[1.0])
    g.update_weights([1.0])
    return g


def test_posterior_of_an_exponential_rate_is_the_gamma():
    x = np.random.default_rng(1).exponential(1 / 3.0, 400)
    post = one_stage().svgd(x, n_particles=32, n_iterations=400, seed=2)
    # log-uniform prior p(theta) ~ 1/theta: the posterior is Gamma(n, sum x)
    mean, sd = len(x) / x.sum(), np.sqrt(len(x)) / x.sum()
    assert post.particles.shape == (32, 1)
    assert post.mean[0] == pytest.approx(mean, rel=0.03)
    assert post.std[0] == pytest.approx(sd, rel=0.35)
    assert post.map_estimate_from_particles()[0] == pytest.approx(mean, rel=0.05)
    th = 2.5
    assert post.log_likelihood([th]) == pytest.approx(np.sum(np.log(th) - th * x), rel=1e-9)
    assert len(post.trace) == 400 and post.trace[-1] < post.trace[0]


def test_fixed_parameters_stay_and_the_other_is_fitted():
    rng = np.random.default_rng(3)
    x = rng.exponential(1 / 2.0, 300) + rng.exponential(1 / 5.0, 300)
    post = two_stage().svgd(x, n_particles=16, n_iterations=300, fixed=[(1, 5.0)], seed=4)
    assert np.all(post.particles[:, 1] == pytest.approx(5.0))
    assert post.mean[0] == pytest.approx(2.0, rel=0.15)


def test_bad_arguments_are_named():
    g = one_stage()
    with pytest.raises(ParameterError, match="fixed entry"):
        g.svgd([1.0, 2.0], fixed=[(3, 1.0)])
    with pytest.raises(ParameterError, match="n_particles must be a positive integer"):
        g.svgd([1.0, 2.0], n_particles=0)
    with pytest.raises(ParameterError, match="non-empty array of finite values"):
        g.svgd([np.nan])
