"""StateIndexer / Property: slot arithmetic, round trips, errors, keying."""

import itertools

import numpy as np
import pytest

from phasic import Graph
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
    for d, p in itertools.product(range(1, 5), range(3)):  # last property fastest
        assert ix.index(descendants=d, population=p) == expected
        assert ix.props(expected) == {"descendants": d, "population": p}
        expected += 1
    state = ix.empty_state()
    assert state.dtype == np.int32 and state.shape == (12,) and not state.any()


def test_to_dict_round_trip_and_equality():
    ix = _indexer(5)
    d = ix.to_dict()
    assert d == {
        "properties": [
            {"name": "descendants", "max_value": 5, "min_value": 1},
            {"name": "population", "max_value": 2, "min_value": 0},
        ]
    }
    again = StateIndexer.from_dict(d)
    assert again == ix and hash(again) == hash(ix) and again is not ix
    assert again != _indexer(6)
    p = Property("x", max_value=3)
    assert Property.from_dict(p.to_dict()) == p and p.size == 4
    assert StateIndexer([p.to_dict()]) == StateIndexer([p])


def test_indexer_is_part_of_the_graph_key():
    k = [graph_key(kh.coalescent, {}, ipv=[3], indexer=_indexer(n))[0] for n in (4, 4, 5)]
    assert k[0] == k[1] != k[2]


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: Property("bad name", 3), "'bad name'"),
        (lambda: Property("x", 1, min_value=2), "max_value=1 is below min_value=2"),
        (lambda: Property("x", 2.5), r"max_value=2\.5 must be an int"),
        (lambda: StateIndexer([Property("a", 1), Property("a", 2)]), r"\['a'\] appear more than once"),
        (lambda: StateIndexer([]), "non-empty list"),
        (lambda: _indexer().index(descendants=1), r"needs exactly \['descendants', 'population'\]"),
        (lambda: _indexer().index(descendants=1, population=0, colour=2), r"unknown: \['colour'\]"),
        (lambda: _indexer().index(descendants=0, population=0), r"'descendants'=0 is outside 1\.\.4"),
        (lambda: _indexer().props(12), r"slot 12 is outside 0\.\.11"),
    ],
)
def test_bad_input_names_the_value(make, match):
    with pytest.raises(ParameterError, match=match):
        make()


# ------------------------------------------------------------------ named sets, slots, arrays
def _multi():
    return StateIndexer(
        "mutations",
        lineage=[Property("descendants", max_value=3, min_value=1), Property("population", max_value=1)],
        deme=[Property("deme", max_value=2)],
        slots=["migrations"],
    )


def test_reference_spelling_with_named_sets_and_slots():
    ix = StateIndexer(lineage=[Property("descendants", max_value=10)])
    assert ix.state_length == 11 == len(ix)
    assert ix.lineage.p2i(descendants=3) == ix.lineage.props_to_index(descendants=3) == 3
    assert ix.lineage.i2p(3) == ix.index_to_props(3) == {"descendants": 3}
    assert ix.props_to_index({"descendants": 10}) == 10  # a single set: the indexer's own methods

    ix = _multi()
    # layout: the named sets in order, then the slots (positional first, then slots=)
    assert (ix.lineage.offset, ix.lineage.state_length) == (0, 6)
    assert (ix.deme.offset, ix.deme.state_length) == (6, 3)
    assert (ix.mutations, ix.migrations, ix.state_length) == (9, 10, 11)
    assert ix.slots == {"mutations": 9, "migrations": 10} and list(ix.sets) == ["lineage", "deme"]
    assert ix.lineage.p2i(descendants=2, population=1) == 3 and ix.deme.p2i(deme=2) == 8
    assert ix.deme.i2p(7) == {"deme": 1}
    state = ix.empty_state()
    state[ix.lineage.slice] = 1
    state[ix.mutations] += 2
    assert state.tolist() == [1] * 6 + [0, 0, 0, 2, 0]
    assert {"lineage", "deme", "mutations", "migrations"} <= set(dir(ix))
    with pytest.raises(ParameterError, match=r"2 property sets \(\['lineage', 'deme'\]\).*indexer\.lineage"):
        ix.props_to_index(descendants=1, population=0)
    with pytest.raises(AttributeError, match="'nope'"):
        _ = ix.nope


def test_index_to_props_and_props_to_index_are_vectorised():
    ix = _multi()
    lin = ix.lineage
    slots = np.arange(6).reshape(2, 3)
    props = lin.index_to_props(slots)
    assert props["descendants"].tolist() == [[1, 1, 2], [2, 3, 3]]
    assert props["population"].tolist() == [[0, 1, 0], [1, 0, 1]]
    assert np.array_equal(lin.props_to_index(**props), slots)
    # scalars broadcast against arrays; results agree with the scalar form
    both = lin.p2i(descendants=np.array([1, 2, 3]), population=1)
    assert both.tolist() == [lin.p2i(descendants=d, population=1) for d in (1, 2, 3)]
    assert ix.deme.i2p(np.array([6, 8]))["deme"].tolist() == [0, 2]
    single = StateIndexer([Property("descendants", max_value=4, min_value=1)])
    assert single.i2p(np.array([0, 3]))["descendants"].tolist() == [1, 4]
    assert single.p2i(descendants=np.array([4, 1])).tolist() == [3, 0]
    with pytest.raises(ParameterError, match=r"'descendants' has the value 4 \(at position \[1\]\) outside 1\.\.3"):
        lin.p2i(descendants=np.array([1, 4]), population=0)
    with pytest.raises(ParameterError, match=r"slot 9 \(at position \[1\]\) is outside 6\.\.8 \(property set 'deme'\)"):
        ix.deme.i2p(np.array([6, 9]))
    with pytest.raises(ParameterError, match=r"must be an int or an array of ints, not float64"):
        lin.p2i(descendants=np.array([1.0]), population=0)


def test_to_dict_round_trips_every_form_and_the_single_list_form_is_unchanged():
    import json

    single = _indexer(3)
    assert single.to_dict() == {
        "properties": [
            {"name": "descendants", "max_value": 3, "min_value": 1},
            {"name": "population", "max_value": 2, "min_value": 0},
        ]
    }
    forms = [
        single,
        _multi(),
        StateIndexer("a", "b"),
        StateIndexer(slots=["c"], x=[Property("p", 2)]),
        StateIndexer([Property("q", 1)], "n", extra=[Property("q", 2)]),
    ]
    for ix in forms:
        d = json.loads(json.dumps(ix.to_dict()))  # plain JSON: it is part of cache keys
        again = StateIndexer.from_dict(d)
        assert again == ix and hash(again) == hash(ix) and again.to_dict() == ix.to_dict()
        assert again.state_length == ix.state_length
    # the order of the sets is the layout: it must show in the dict
    a = StateIndexer(x=[Property("p", 1)], y=[Property("p", 2)])
    b = StateIndexer(y=[Property("p", 2)], x=[Property("p", 1)])
    assert a != b and a.to_dict() != b.to_dict()


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: StateIndexer(), "needs a property list"),
        (lambda: StateIndexer(lineage=Property("d", 2)), r"property set 'lineage'=Property\('d'.* non-empty list"),
        (lambda: StateIndexer("a", a=[Property("d", 2)]), r"\['a'\] appear twice"),
        (lambda: StateIndexer(index=[Property("d", 2)]), r"\['index'\] appear twice or are StateIndexer attributes"),
        (lambda: StateIndexer("bad name"), "slot name 'bad name'"),
        (lambda: StateIndexer([Property("d", 2)], 3), r"slot names \(str\), got \[3\]"),
        (lambda: StateIndexer.from_dict({"sets": 1, "bogus": 2}), "not a StateIndexer.to_dict"),
    ],
)
def test_new_forms_bad_input_names_the_value(make, match):
    with pytest.raises(ParameterError, match=match):
        make()


def test_reference_docs_state_indexer_spelling_builds_a_graph():
    ix = StateIndexer(lineage=[Property("descendants", max_value=3, min_value=1)])

    def callback(state, indexer):
        lin = indexer.lineage
        n = int(state[lin.slice].sum())
        if n <= 1:
            return []
        nxt = state.copy()
        nxt[lin.p2i(descendants=1)] -= 1
        return [[nxt, n * (n - 1) / 2]]

    start = ix.empty_state()
    start[ix.lineage.p2i(descendants=1)] = 3
    g = Graph(callback, ipv=start.tolist(), indexer=ix)
    assert g.expectation() == pytest.approx(1 + 1 / 3, rel=1e-12)
