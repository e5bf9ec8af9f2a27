"""Regressions from an adversarial probe of the API: each of these once crashed, hung,
raised an obscure error or returned a number for something that is no distribution."""

import numpy as np
import pytest

from phasic import Graph, GraphConstructionError, ParameterError, with_ipv
from phasic.traces import evaluate_batch
from tests.models import kingman, random_param_graph, two_island


@pytest.mark.parametrize(
    "field,index,value,match",
    [
        ("edges/target", 1, 999, "targets vertex 999"),  # once a segfault in pdf()
        ("edges/target", 0, 0, "targets vertex 0"),
        ("edges/weight", 1, -3.0, "weight -3.0"),
        ("edges/weight", 1, np.nan, "weight nan"),
    ],
)
def test_from_arrays_rejects_broken_edges(field, index, value, match):
    arrays, attrs = Graph(kingman).to_arrays()
    arrays = dict(arrays)
    a = arrays[field].copy()
    a[index] = value
    arrays[field] = a
    with pytest.raises(GraphConstructionError, match=match):
        Graph.from_arrays(arrays, attrs)


def test_from_arrays_rejects_a_short_indptr():
    arrays, attrs = Graph(kingman).to_arrays()
    arrays = dict(arrays, **{"edges/indptr": arrays["edges/indptr"][:-1]})
    with pytest.raises(GraphConstructionError, match="edges/indptr"):
        Graph.from_arrays(arrays, attrs)


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


def test_discrete_out_probabilities_over_one_in_every_moment_function():
    g = Graph(with_ipv([3])(lambda s: [] if s[0] <= 1 else [[[s[0] - 1], 1.5]]), discrete=True)
    for call in (lambda: g.moments(2), g.variance, lambda: g.covariance(None, None), g.expected_sojourn_time):
        with pytest.raises(ParameterError, match="sum to 1.5 > 1"):
            call()


@pytest.mark.parametrize("p", [0.5, 0.9, 0.99])
def test_discrete_high_moments_against_the_geometric(p):
    """tau ~ Geometric(p) on 1, 2, ...: E[tau^n] = sum_k k^n p (1-p)^(k-1), summed here. The
    alternating sum used before returned negative moments from power ~20."""
    g = Graph(with_ipv([2])(lambda s: [] if s[0] <= 1 else [[[1], p]]), discrete=True)
    m = g.moments(25)
    k = np.arange(1, 400_000, dtype=float)
    for n in (1, 5, 12, 20, 25):
        exact = np.sum(k**n * p * (1 - p) ** (k - 1))
        assert m[n - 1] == pytest.approx(exact, rel=1e-12)


def test_powers_that_overflow_are_refused():
    g = Graph(with_ipv([3])(lambda s: [] if s[0] <= 1 else [[[s[0] - 1], 0.5]]), discrete=True)
    with pytest.raises(ParameterError, match="power=1099511627776"):
        g.moments(2**40)  # used to loop for ever
    with pytest.raises(ParameterError, match="got True"):
        Graph(kingman).moments(True)
    with pytest.raises(ParameterError, match="more than 10000000 states"):
        g.reward_transform(np.ones(g.vertices_length()) * 1e12)


def test_add_edge_with_a_weight_and_coefficients_is_ambiguous():
    g = Graph(state_length=1, theta_dim=1)
    a, b = g.find_or_create_vertex([1]), g.find_or_create_vertex([2])
    with pytest.raises(GraphConstructionError, match="not both"):
        g.add_edge(a, b, 5.0, coefficients=[1.0])


def test_huge_times_and_jump_counts_are_refused_clearly():
    with pytest.raises(ParameterError, match="uniformisation would need more"):
        Graph(kingman).pdf([1e9])  # once std::bad_alloc
    gd = Graph(with_ipv([3])(lambda s: [] if s[0] <= 1 else [[[s[0] - 1], 0.5]]), discrete=True)
    with pytest.raises(ParameterError, match="jump count 1000000000000"):
        gd.pmf([10**12])


def test_evaluate_batch_edge_cases():
    g = random_param_graph(1)  # edges added by hand: pending until flushed
    assert evaluate_batch(g, np.ones((3, 3))).shape == (3, 2)
    g.update_weights([1.0, 1.0, 1.0])
    evaluate_batch(g, np.ones((16, 3)))  # compiles the replay plan
    assert evaluate_batch(g, np.zeros((0, 3))).shape == (0, 2)
    assert evaluate_batch(g, np.zeros((0, 3)), what="pdf", times=[1.0, 2.0]).shape == (0, 2)
    with pytest.raises(TypeError, match="phasic.Graph"):
        evaluate_batch(None, np.ones((2, 3)))


def test_jax_functions_raise_parameter_errors_eagerly():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from phasic import moments_from_graph, pmf_from_graph

    g = Graph(two_island)
    g.update_weights([1.0, 0.5])
    m = moments_from_graph(g, 2)
    with pytest.raises(ParameterError, match=r"theta \[-1.0, 0.5\] gives edge"):
        m(jnp.array([-1.0, 0.5]))  # was a JaxRuntimeError from the callback
    with pytest.raises(ParameterError, match="never left"):
        m(jnp.array([0.0, 0.0]))
    assert np.isfinite(np.asarray(jax.grad(lambda t: m(t).sum())(jnp.array([1.0, 0.5])))).all()
    f = pmf_from_graph(g)
    with pytest.raises(ParameterError, match="NaN or infinite"):
        f(jnp.array([1.0, 0.5]), jnp.array([np.nan, 1.0]))  # a NaN time gave 0.0
    with pytest.raises(ParameterError, match="weight inf"):
        f(np.array([1e308, 1e308]), np.array([1.0]))
    gd = Graph(with_ipv([3])(lambda s: [] if s[0] <= 1 else [[[s[0] - 1], 0.5]]), discrete=True)
    with pytest.raises(ParameterError, match="must be integers"):
        pmf_from_graph(gd)(jnp.zeros(0), jnp.array([2.5]))  # was truncated to 2


def test_flags_and_counts_are_not_bools_or_strings():
    g = Graph(kingman)
    with pytest.raises(ParameterError, match="got True"):
        g.sample(True)
    h = random_param_graph(2)
    with pytest.raises(ParameterError, match="got True"):
        evaluate_batch(h, np.ones((2, 3)), k=True)
    pytest.importorskip("jax")
    from phasic import pmf_from_graph

    with pytest.raises(ParameterError, match="discrete must be None, True or False, got 'no'"):
        pmf_from_graph(g, discrete="no")
