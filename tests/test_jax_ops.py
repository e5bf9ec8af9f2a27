"""JAX functions: values against the core and against scipy's expm, gradients against
finite differences, jit/vmap, and moments with adjoint gradients."""
import numpy as np
import pytest
import scipy.linalg

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import phasic  # noqa: E402
from phasic import Graph, ParameterError, moments_from_graph, pmf_from_graph  # noqa: E402
from tests.test_traces import dense_moments, two_island  # noqa: E402


@pytest.fixture(scope="module")
def graph():
    return Graph(two_island)


def dense_pdf(g, theta, times):
    h = g.copy()
    h.update_weights(theta)
    alpha, S = h.as_matrices()
    s = -S.sum(axis=1)
    return np.array([alpha @ scipy.linalg.expm(S * t) @ s for t in times])


def test_pmf_values_match_expm_and_core(graph):
    f = pmf_from_graph(graph)
    times = np.linspace(0.0, 4.0, 9)
    for theta in ([1.0, 0.5], [2.0, 0.1]):
        got = np.asarray(f(jnp.array(theta), jnp.asarray(times)))
        np.testing.assert_allclose(got, dense_pdf(graph, theta, times), atol=1e-12)
        h = graph.copy()
        h.update_weights(theta)
        np.testing.assert_allclose(got, h.pdf(times), atol=1e-10)
    assert float(f(jnp.array([1.0, 0.5]), jnp.array([-1.0]))[0]) == 0.0


def test_pmf_jit_vmap_grad(graph):
    f = pmf_from_graph(graph)
    times = jnp.linspace(0.2, 3.0, 6)
    thetas = jnp.array([[1.0, 0.5], [1.5, 0.2], [0.8, 1.0]])
    batched = jax.jit(jax.vmap(f, in_axes=(0, None)))(thetas, times)
    for row, th in zip(np.asarray(batched), np.asarray(thetas)):
        np.testing.assert_allclose(row, dense_pdf(graph, th, np.asarray(times)), atol=1e-12)

    def loglik(th):
        return jnp.log(f(th, times)).sum()

    th0 = jnp.array([1.2, 0.4])
    grad = np.asarray(jax.jit(jax.grad(loglik))(th0))
    eps = 1e-6
    fd = [(loglik(th0.at[i].add(eps)) - loglik(th0.at[i].add(-eps))) / (2 * eps) for i in range(2)]
    np.testing.assert_allclose(grad, np.asarray(fd), rtol=1e-6)


def test_discrete_pmf():
    g = Graph(state_length=1, discrete=True, theta_dim=1)
    a = g.find_or_create_vertex([1])
    b = g.find_or_create_vertex([2])
    g.add_edge(0, a, 1.0)
    g.add_edge(a, b, 0.0, coefficients=[1.0])  # leave with probability theta
    f = pmf_from_graph(g, max_jumps=20)
    p = 0.3
    k = jnp.arange(0, 8)
    got = np.asarray(f(jnp.array([p]), k))
    ref = np.array([0.0] + [p * (1 - p) ** (j - 1) for j in range(1, 8)])
    np.testing.assert_allclose(got, ref, atol=1e-14)
    assert np.isnan(float(f(jnp.array([p]), jnp.array([25]))[0]))


def test_moments_values_and_gradients(graph):
    m = moments_from_graph(graph, 3)
    th0 = np.array([1.3, 0.6])
    h = graph.copy()
    h.update_weights(th0)
    np.testing.assert_allclose(np.asarray(m(jnp.asarray(th0))), dense_moments(h, 3), rtol=1e-12)
    w = jnp.array([1.0, -0.2, 0.05])

    def obj(th):
        return (m(th) * w).sum()

    grad = np.asarray(jax.grad(obj)(jnp.asarray(th0)))

    def dense_obj(th):
        k = graph.copy()
        k.update_weights(th)
        return float(dense_moments(k, 3) @ np.asarray(w))

    eps = 1e-6
    fd = np.array([(dense_obj(th0 + eps * e) - dense_obj(th0 - eps * e)) / (2 * eps) for e in np.eye(2)])
    np.testing.assert_allclose(grad, fd, rtol=1e-6)
    batched = jax.jit(jax.vmap(m))(jnp.array([[1.0, 0.5], [2.0, 0.1]]))
    assert batched.shape == (2, 3)


def test_moments_with_rewards_gradient(graph):
    rewards = graph.states()[:, 0] + 0.5
    m = moments_from_graph(graph, 2, rewards=rewards)
    th0 = np.array([0.9, 0.7])
    grad = np.asarray(jax.grad(lambda th: m(th)[1])(jnp.asarray(th0)))

    def second(th):
        k = graph.copy()
        k.update_weights(th)
        return dense_moments(k, 2, rewards)[1]

    eps = 1e-6
    fd = np.array([(second(th0 + eps * e) - second(th0 - eps * e)) / (2 * eps) for e in np.eye(2)])
    np.testing.assert_allclose(grad, fd, rtol=1e-6)


def test_errors(graph):
    g = Graph(phasic.with_ipv([3])(lambda s: [] if s[0] <= 1 else [[[s[0] - 1], 1.0]]))
    with pytest.raises(ParameterError, match="parameterised"):
        moments_from_graph(g, 2)
    d = Graph(state_length=1, discrete=True)
    with pytest.raises(ParameterError, match="continuous"):
        moments_from_graph(d, 2)


def test_graph_method_spelling(graph):
    f = graph.pmf_from_graph()
    np.testing.assert_allclose(np.asarray(f(jnp.array([1.0, 0.5]), jnp.array([1.0]))),
                               dense_pdf(graph, [1.0, 0.5], [1.0]), atol=1e-12)
