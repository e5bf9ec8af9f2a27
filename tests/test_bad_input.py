"""Bad input must raise a clear phasic error naming the offending value, never crash."""

import math
import re

import numpy as np
import pytest

from phasic import Graph, with_ipv
from phasic.exceptions import GraphConstructionError, ParameterError, PhasicError, StateSpaceTooLarge


@pytest.fixture(autouse=True, scope="module")
def _isolated_phasic_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PHASIC_CACHE_DIR", str(tmp_path_factory.mktemp("phasic_cache")))
        yield


def misbehaving(bad, at=3, start=6):
    """Death process start -> 1 that returns ``bad`` from state [at]."""

    @with_ipv([start])
    def cb(state):
        k = int(state[0])
        if k == at:
            return bad
        return [] if k <= 1 else [[[k - 1], float(k)]]

    return cb


def good_graph(n=6):
    return Graph(with_ipv([n])(lambda s: [] if s[0] <= 1 else [[[int(s[0]) - 1], float(s[0])]]))


def assert_value_error(exc):
    assert isinstance(exc, PhasicError)
    assert isinstance(exc, (ValueError, TypeError))


# --------------------------------------------------------------------------- malformed callbacks


@pytest.mark.parametrize(
    "bad,pattern",
    [
        ([[1]], re.escape("[1]")),
        ([[[1], "a"]], "'a'"),
        (5, r"\b5\b"),
        ([[[2]]], re.escape("[2]")),
        ([[[2], 1.0, 3.0]], re.escape("3.0")),
        ([[[2], None]], "None"),
    ],
    ids=["edge-no-rate", "string-rate", "not-a-list", "state-only", "three-items", "none-rate"],
)
def test_malformed_edge(bad, pattern):
    with pytest.raises(GraphConstructionError, match=pattern) as info:
        Graph(misbehaving(bad))
    assert_value_error(info.value)


def test_state_of_wrong_length():
    with pytest.raises(GraphConstructionError, match=r"1, ?2") as info:
        Graph(misbehaving([[[1, 2], 1.0]]))
    assert_value_error(info.value)


@pytest.mark.parametrize(
    "rate,pattern",
    [(-1.5, re.escape("-1.5")), (float("nan"), "(?i)nan"), (float("inf"), "(?i)inf"), (-math.inf, "(?i)-inf")],
    ids=["negative", "nan", "inf", "-inf"],
)
def test_bad_rate(rate, pattern):
    with pytest.raises(GraphConstructionError, match=pattern) as info:
        Graph(misbehaving([[[2], rate]]))
    assert_value_error(info.value)


def test_bad_rate_manual_add_edge():
    g = Graph(state_length=1)
    a, b = g.find_or_create_vertex([1]), g.find_or_create_vertex([2])
    with pytest.raises(GraphConstructionError, match=re.escape("-2.5")):
        g.add_edge(a, b, -2.5)
    with pytest.raises(GraphConstructionError, match="(?i)nan"):
        g.add_edge(a, b, float("nan"))


def test_non_integer_state():
    with pytest.raises(GraphConstructionError, match=re.escape("1.5")) as info:
        Graph(misbehaving([[[1.5], 1.0]]))
    assert_value_error(info.value)


def test_non_integer_start_state():
    with pytest.raises(GraphConstructionError, match=re.escape("2.5")):
        Graph(lambda s: [], ipv=[[[2.5], 1.0]])


def test_ipv_sum_above_one():
    with pytest.raises(GraphConstructionError, match=r"1\.25|0\.75") as info:
        Graph(with_ipv([[[3], 0.75], [[2], 0.5]])(lambda s: [] if s[0] <= 1 else [[[int(s[0]) - 1], 1.0]]))
    assert_value_error(info.value)


def test_negative_ipv_probability():
    with pytest.raises(GraphConstructionError, match=re.escape("-0.25")):
        Graph(lambda s: [] if s[0] <= 1 else [[[int(s[0]) - 1], 1.0]], ipv=[[[3], 1.25], [[2], -0.25]])


def test_unbounded_state_space():
    def grow(state):
        return [[[int(state[0]) + 1], 1.0]]

    with pytest.raises(StateSpaceTooLarge, match=r"\b1000\b") as info:
        Graph(grow, ipv=[1], max_vertices=1000)
    assert_value_error(info.value)


class ModelBug(Exception):
    pass


@pytest.mark.parametrize("exc_type", [ModelBug, ZeroDivisionError, KeyError])
def test_callback_exception_propagates_with_state(exc_type):
    @with_ipv([20])
    def cb(state):
        k = int(state[0])
        if k == 17:
            raise exc_type("model failed here")
        return [[[k - 1], 1.0]]

    with pytest.raises(exc_type) as info:
        Graph(cb)
    text = str(info.value) + "\n".join(getattr(info.value, "__notes__", []))
    assert "17" in text and "model failed here" in text


def test_failed_build_leaves_no_broken_state():
    with pytest.raises(GraphConstructionError):
        Graph(misbehaving([[[2], -1.0]]))
    # the same process afterwards still builds and computes correctly
    assert good_graph(4).expectation() == pytest.approx(1 / 4 + 1 / 3 + 1 / 2, rel=1e-13)


def test_zero_state_collision_is_correct_or_rejected():
    # a pure death process 3 -> 2 -> 1 -> 0: state [0] coincides with the start vertex's
    # state; the result must be either right (E = 1/3 + 1/2 + 1) or a clear error
    cb = with_ipv([3])(lambda s: [] if s[0] <= 0 else [[[int(s[0]) - 1], float(s[0])]])
    try:
        g = Graph(cb)
    except GraphConstructionError as exc:
        assert "0" in str(exc)
    else:
        assert g.expectation() == pytest.approx(11 / 6, rel=1e-12)


# --------------------------------------------------------------------------- parameters, rewards, times


def test_update_weights_wrong_length():
    g = Graph(with_ipv([4])(lambda s: [] if s[0] <= 1 else [[[int(s[0]) - 1], [1.0, 0.5]]]), theta_dim=2)
    with pytest.raises(ParameterError, match=r"7\.75|\b3\b") as info:
        g.update_weights([1.25, 2.5, 7.75])
    assert_value_error(info.value)
    with pytest.raises(ParameterError, match=r"\b1\b"):
        g.update_weights([1.25])
    with pytest.raises(ParameterError, match="(?i)nan"):
        g.update_weights([1.0, float("nan")])
    # a good update still works afterwards
    g.update_weights([1.0, 2.0])
    assert g.expectation() == pytest.approx(3 * 0.5, rel=1e-12)  # three steps at rate 1*1 + 0.5*2


def test_update_weights_making_a_rate_negative():
    g = Graph(with_ipv([3])(lambda s: [] if s[0] <= 1 else [[[int(s[0]) - 1], [1.0, 0.0]]]), theta_dim=2)
    with pytest.raises(PhasicError, match=re.escape("-2.5")) as info:
        g.update_weights([-2.5, 1.0])
    assert isinstance(info.value, ValueError)


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


def test_negative_reward_in_reward_transform():
    g = good_graph()
    r = np.ones(7)
    r[2] = -1.5
    with pytest.raises(ParameterError, match=re.escape("-1.5")):
        g.reward_transform(r)


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


def test_callback_without_ipv():
    def no_start_given(state):
        return []

    with pytest.raises(GraphConstructionError, match="no_start_given") as info:
        Graph(no_start_given)
    assert_value_error(info.value)
