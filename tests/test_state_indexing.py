"""StateIndexer / Property: slot arithmetic, round trips, errors, keying."""

import itertools

import numpy as np
import pytest

from phasic.exceptions import ParameterError
from phasic.keys import graph_key
from phasic.state_indexing import Property, StateIndexer
from tests import _keys_helpers as kh


def _indexer(n=4):
    return StateIndexer([Property("descendants", max_value=n, min_value=1), Property("population", max_value=2)])


def test_slots_are_row_major_and_invertible():
    ix = _indexer(4)
    assert ix.state_length == 4 * 3 == len(ix)
    expected = 0
    for d, p in itertools.product(range(1, 5), range(0, 3)):  # last property fastest
        assert ix.index(descendants=d, population=p) == expected
        assert ix.props(expected) == {"descendants": d, "population": p}
        expected += 1
    state = ix.empty_state()
    assert state.dtype == np.int32 and state.shape == (12,) and not state.any()


def test_to_dict_round_trip_and_equality():
    ix = _indexer(5)
    d = ix.to_dict()
    assert d == {"properties": [{"name": "descendants", "max_value": 5, "min_value": 1},
                                {"name": "population", "max_value": 2, "min_value": 0}]}
    again = StateIndexer.from_dict(d)
    assert again == ix and hash(again) == hash(ix) and again is not ix
    assert again != _indexer(6)
    p = Property("x", max_value=3)
    assert Property.from_dict(p.to_dict()) == p and p.size == 4
    assert StateIndexer([p.to_dict()]) == StateIndexer([p])


def test_indexer_is_part_of_the_graph_key():
    k = [graph_key(kh.coalescent, {}, ipv=[3], indexer=_indexer(n))[0] for n in (4, 4, 5)]
    assert k[0] == k[1] != k[2]


@pytest.mark.parametrize("make,match", [
    (lambda: Property("bad name", 3), "'bad name'"),
    (lambda: Property("x", 1, min_value=2), "max_value=1 is below min_value=2"),
    (lambda: Property("x", 2.5), r"max_value=2\.5 must be an int"),
    (lambda: StateIndexer([Property("a", 1), Property("a", 2)]), r"\['a'\] appear more than once"),
    (lambda: StateIndexer([]), "non-empty list"),
    (lambda: _indexer().index(descendants=1), r"needs exactly \['descendants', 'population'\]"),
    (lambda: _indexer().index(descendants=1, population=0, colour=2), r"unknown: \['colour'\]"),
    (lambda: _indexer().index(descendants=0, population=0), r"'descendants'=0 is outside 1\.\.4"),
    (lambda: _indexer().props(12), r"slot 12 is outside 0\.\.11"),
])
def test_bad_input_names_the_value(make, match):
    with pytest.raises(ParameterError, match=match):
        make()
