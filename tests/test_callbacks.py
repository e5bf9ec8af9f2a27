"""Callbacks (phasic/callbacks.py): the with_ipv protocol, the one IPV normaliser, the
callback's parameters (params=, model=, indexer=, read once per code object) and plain numbers
in the messages about states and edges."""

import re

import numpy as np
import pytest

from phasic import Graph, with_ipv
from phasic.exceptions import GraphConstructionError, ParameterError
from tests.models import assert_value_error, coalescent, coalescent_coef

pytestmark = pytest.mark.usefixtures("isolated_cache")


def norm_ipv(ipv):
    ipv = list(ipv)
    if ipv and all(isinstance(x, (int, np.integer)) for x in ipv):
        return [((tuple(int(x) for x in ipv)), 1.0)]
    return [(tuple(int(x) for x in st), float(p)) for st, p in ipv]


# ---------------------------------------------------- with_ipv and the IPV


def test_with_ipv_protocol():
    def raw(state, theta=1.0):
        return [] if state[0] <= 1 else [[[state[0] - 1], theta]]

    wrapped = with_ipv([[[4], 0.5], [[2], 0.5]])(raw)
    assert wrapped.__wrapped__ is raw
    assert wrapped.__name__ == "raw"
    assert norm_ipv(wrapped.ipv) == [((4,), 0.5), ((2,), 0.5)]
    assert norm_ipv(wrapped([])) == [((4,), 0.5), ((2,), 0.5)]
    assert wrapped([3], theta=2.0) == [[[2], 2.0]]
    assert norm_ipv(coalescent.ipv) == [((10,), 1.0)]
    assert norm_ipv(coalescent([])) == [((10,), 1.0)]


@pytest.mark.parametrize("ipv", [[10], [[[10], 1.0]]], ids=["state", "pairs"])
def test_ipv_keyword_for_plain_callback(ipv):
    g = Graph(coalescent.__wrapped__, ipv=ipv, theta=2.0)
    ref = Graph(coalescent, theta=2.0)
    for k, v in ref.to_arrays()[0].items():
        np.testing.assert_array_equal(g.to_arrays()[0][k], v)


def test_callback_without_ipv():
    def no_start_given(state):
        return []

    with pytest.raises(GraphConstructionError, match="no_start_given") as info:
        Graph(no_start_given)
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


def test_ipv_of_the_wrong_length_is_named_with_both_lengths():
    @with_ipv([3, 0])
    def one_slot(state):
        (n,) = state
        return [] if n <= 1 else [[[n - 1], 1.0]]

    with pytest.raises(GraphConstructionError) as info:
        Graph(one_slot)
    msg = str(info.value)
    assert "IPV [[[3, 0], 1.0]]" in msg and "length 2" in msg and "length 1" in msg, msg
    assert "state [3, 0]" in msg, msg

    with pytest.raises(
        GraphConstructionError,
        match=r"IPV \[\[\[3, 0\], 1\.0\]\] has states of length 2, "
        r"but state_length=3",
    ):
        Graph(one_slot, state_length=3)


def _chain(state):
    n = state[0]
    return [] if n <= 1 else [[[n - 1], 1.0]]


def test_ipv_takes_numpy_integers_and_refuses_bools_naming_them():
    assert Graph(_chain, ipv=np.array([5])).expectation() == pytest.approx(4.0)
    assert Graph(_chain, ipv=[[np.array([np.int64(5)]), 1.0]]).expectation() == pytest.approx(4.0)
    assert Graph(_chain, ipv=[np.int32(5)]).expectation() == pytest.approx(4.0)
    for ipv in ([True], [[[True], 1.0]], np.array([True])):
        with pytest.raises(GraphConstructionError, match="bool True"):
            Graph(_chain, ipv=ipv)

    def bool_state(state):
        return [] if state[0] <= 1 else [[[state[0] == 3], 1.0]]

    with pytest.raises(GraphConstructionError, match=r"state \[True\] holds the bool True"):
        Graph(bool_state, ipv=[3])


# -------------------------------------------- parameters, model=, indexer=


class Model:
    def __init__(self, rate):
        self.rate = rate


class Indexer:
    pass


def test_model_and_indexer_passed_when_accepted():
    seen = {}

    def accepts(state, model=None, indexer=None):
        seen["model"], seen["indexer"] = model, indexer
        return [] if state[0] <= 1 else [[[state[0] - 1], model.rate]]

    m, ix = Model(4.0), Indexer()
    g = Graph(accepts, ipv=[3], model=m, indexer=ix)
    assert seen["model"] is m and seen["indexer"] is ix
    assert g.expectation() == pytest.approx(0.5, rel=1e-13)

    def model_only(state, model):
        return [] if state[0] <= 1 else [[[state[0] - 1], model.rate]]

    assert Graph(model_only, ipv=[3], model=m).expectation() == pytest.approx(0.5, rel=1e-13)

    def neither(state):
        return [] if state[0] <= 1 else [[[state[0] - 1], 2.0]]

    assert Graph(neither, ipv=[3], model=m).expectation() == pytest.approx(1.0, rel=1e-13)


def test_theta_for_a_callback_without_theta_says_to_use_update_weights():
    with pytest.raises(ParameterError, match=r"theta=.*'coalescent_coef'.*update_weights\(theta\)"):
        Graph(coalescent_coef, theta=[2.0])
    with pytest.raises(ParameterError, match=r"rate=.*no parameter of that name"):
        Graph(coalescent_coef, rate=1.0)

    @with_ipv([3])
    def takes_theta(state, theta=1.0):
        return [] if state[0] <= 1 else [[[state[0] - 1], theta]]

    assert Graph(takes_theta, theta=2.0).expectation() == pytest.approx(1.0, rel=1e-12)


def test_callback_signature_is_read_once_per_code_object_and_an_edit_is_seen(monkeypatch):
    """Graph() checks params= against the callback's signature on every call (cache hits
    included): inspect.signature is paid once per code object, and a new code object (an
    edited callback) is read again."""
    import inspect

    from phasic import callbacks

    calls = []
    real = inspect.signature
    monkeypatch.setattr(inspect, "signature", lambda f, *a, **k: calls.append(f) or real(f, *a, **k))

    @with_ipv([3])
    def cb(state, rate=1.0):
        n = state[0]
        return [] if n <= 1 else [[[n - 1], rate]]

    assert Graph(cb, rate=2.0).expectation() == pytest.approx(1.0)
    n = len(calls)
    for _ in range(3):
        Graph(cb, rate=2.0)
    assert len(calls) == n  # memoised
    with pytest.raises(ParameterError, match="slope="):
        Graph(cb, slope=2.0)

    def edited(state, slope=1.0):
        n = state[0]
        return [] if n <= 1 else [[[n - 1], slope]]

    cb.__wrapped__.__code__ = edited.__code__  # the same function object, another signature
    assert Graph(cb, slope=4.0).expectation() == pytest.approx(0.5)
    with pytest.raises(ParameterError, match="rate="):
        Graph(cb, rate=2.0)
    assert callbacks.accepted_extras(cb, {"model": 1, "indexer": None}) == {}


# ----------------------------------------------- plain numbers in messages


def test_errors_print_states_as_plain_integers():
    @with_ipv([3, 0])
    def grows(state):  # next states built from the state's numpy entries
        return [] if state[0] == 0 else [[[state[0] - 1, state[1], state[1]], 1.0]]

    @with_ipv([3, 0])
    def negative(state):
        return [] if state[0] == 0 else [[[state[0] - 1, state[1]], np.float64(-1.0)]]

    @with_ipv([3, 0])
    def fractional(state):
        return [] if state[0] == 0 else [[[state[0] - 1, np.float64(1.5)], 1.0]]

    messages = []
    for cb in (grows, negative, fractional):
        with pytest.raises(GraphConstructionError) as info:
            Graph(cb)
        messages.append(str(info.value))
    g = Graph(state_length=1)
    v = g.find_or_create_vertex([1])
    with pytest.raises(GraphConstructionError) as info:
        g.add_edge(np.int64(v), np.int64(v), 1.0)
    messages.append(str(info.value))
    for msg in messages:
        assert "np." not in msg and "int32(" not in msg, msg
    assert "state [2, 0, 0] has length 3" in messages[0]
    assert "rate -1.0 for the edge [3, 0] -> [2, 0]" in messages[1]
    assert "state [2, 1.5] has non-integer entry 1.5" in messages[2]
    assert "self-loop on vertex 1:" in messages[3]


def test_messages_print_tuples_as_tuples_with_plain_numbers():
    """One plain() for the core's messages and Python's: a tuple stays a tuple."""

    def cb(state):
        return [] if state[0] <= 1 else [((np.int64(5), 0),)]

    with pytest.raises(GraphConstructionError, match=re.escape("malformed edge ((5, 0),)")):
        Graph(cb, ipv=[3])
