"""Moments (phasic/moments.py): rewards and powers that make no sense are refused naming the
value; discrete out-probabilities over 1 are refused by every moment function; high discrete
moments against the geometric distribution."""

import numpy as np
import pytest

from phasic import Graph, ParameterError, with_ipv
from tests.models import assert_value_error, good_graph, kingman

pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.mark.parametrize("method", ["expectation", "variance", "moments", "reward_transform"])
def test_rewards_of_wrong_length(method):
    g = good_graph()  # 7 vertices
    assert g.vertices_length() == 7
    with pytest.raises(ParameterError, match=r"\b10\b") as info:
        if method == "moments":
            g.moments(2, rewards=np.ones(10))
        elif method == "reward_transform":
            g.reward_transform(np.ones(10))
        else:
            getattr(g, method)(rewards=np.ones(10))
    assert_value_error(info.value)


def test_covariance_rewards_of_wrong_length():
    g = good_graph()
    with pytest.raises(ParameterError, match=r"\b5\b"):
        g.covariance(np.ones(7), np.ones(5))


def test_nan_reward():
    g = good_graph()
    r = np.ones(7)
    r[3] = np.nan
    with pytest.raises(ParameterError, match="(?i)nan"):
        g.expectation(rewards=r)


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
