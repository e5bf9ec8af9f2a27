"""The store's compact graph arrays: lossless, smaller, and read back by Graph.from_arrays."""

import numpy as np
import pytest

from phasic import Graph, GraphConstructionError, with_ipv
from phasic._csr import narrow_int, pack, unpack
from tests.models import block_counting_transitions, kingman, two_island_param


def _plain_equal(a, b):
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert a[name].tobytes() == b[name].tobytes(), name  # bit for bit


def test_round_trip_is_bit_exact_and_smaller():
    n = 12
    g = Graph(block_counting_transitions, ipv=[[[n] + [0] * (n - 1), 1.0]])
    plain, attrs = g.to_arrays()
    small, _ = g.to_arrays(compact=True)
    assert "edges/weight_code" in small and "edges/weight" not in small
    assert small["states"].dtype == np.uint8
    assert sum(a.nbytes for a in small.values()) * 3 < sum(a.nbytes for a in plain.values())
    _plain_equal(unpack(small), plain)
    h = Graph.from_arrays(small, attrs)
    np.testing.assert_array_equal(h.states(), g.states())
    np.testing.assert_allclose(h.moments(3), g.moments(3), rtol=1e-15)


def test_parameterised_rows_are_coded_and_replayed():
    g = Graph(two_island_param, ipv=[[[12, 0], 1.0]])
    plain, attrs = g.to_arrays()
    small, _ = g.to_arrays(compact=True)
    assert "edges/coef_code" in small and small["edges/coef_table"].shape[1] == plain["edges/coef"].shape[1]
    _plain_equal(unpack(small), plain)
    h = Graph.from_arrays(small, attrs)
    for theta in ([1.0, 0.5], [0.3, 2.0]):
        g.update_weights(theta)
        h.update_weights(theta)
        np.testing.assert_allclose(h.moments(2), g.moments(2), rtol=1e-14)


def test_special_floats_survive_and_distinct_values_stay_plain():
    rng = np.random.default_rng(1)
    few = np.array([0.0, -0.0, 1.5, np.nan, 1e-300])[rng.integers(0, 5, 500)]
    arrays = {
        "states": np.zeros((501, 1), np.int32),
        "edges/indptr": np.arange(502, dtype=np.int64),
        "edges/target": np.zeros(500, np.int32),
        "edges/weight": few,
    }
    packed = pack(arrays)
    assert "edges/weight_code" in packed
    back = unpack(packed)["edges/weight"]
    assert back.view(np.uint64).tolist() == few.view(np.uint64).tolist()  # -0.0 and NaN bits kept
    arrays["edges/weight"] = rng.random(500)  # all distinct: coding would not pay
    assert "edges/weight" in pack(arrays)


def test_narrow_int_picks_smallest_exact_type():
    assert narrow_int(np.array([0, 255])).dtype == np.uint8
    assert narrow_int(np.array([-1, 5])).dtype == np.int8
    assert narrow_int(np.array([0, 70000])).dtype == np.uint32
    assert narrow_int(np.array([-70000, 1])).dtype == np.int32
    assert narrow_int(np.array([0, 2**40])).dtype == np.int64


def test_broken_coding_is_refused():
    g = Graph(block_counting_transitions, ipv=[[[12] + [0] * 11, 1.0]])
    small, attrs = g.to_arrays(compact=True)
    broken = dict(small)
    del broken["edges/weight_table"]
    with pytest.raises(ValueError, match="edges/weight"):
        Graph.from_arrays(broken, attrs)
    broken = dict(small)
    broken["edges/weight_code"] = broken["edges/weight_code"].copy()
    broken["edges/weight_code"][0] = len(small["edges/weight_table"])
    with pytest.raises(ValueError, match="does not index"):
        Graph.from_arrays(broken, attrs)
    with pytest.raises(ValueError, match="states"):
        Graph.from_arrays({"edges/weight": np.ones(1)}, attrs)


# ---------------------------------------------------------------- one checker, checked=True
def _param_chain_arrays(n=200):
    @with_ipv([[[n, 0], 1.0]])
    def chain(state):
        k, j = int(state[0]), int(state[1])
        return [] if k <= 0 else [[[k - 1, (j + 1) % 3], [1.0, float(j)]], [[k - 1, (j + 2) % 3], 2.0]]

    return Graph(chain).to_arrays(compact=True)


def test_from_arrays_checks_with_the_one_checker_of_graph_arrays():
    from phasic._csr import check_graph_arrays
    from phasic.exceptions import GraphConstructionError

    arrays, attrs = _param_chain_arrays()
    bad = dict(arrays)
    bad["edges/target"] = arrays["edges/target"].copy()
    bad["edges/target"][5] = 0
    # the same words from the store's check and from Graph.from_arrays
    with pytest.raises(GraphConstructionError, match=r"edge 5 targets vertex 0.*start and has no in-edges") as a:
        check_graph_arrays(bad, attrs)
    with pytest.raises(GraphConstructionError) as b:
        Graph.from_arrays(bad, attrs)
    assert str(a.value) == str(b.value)
    # attributes are checked too (Graph.from_arrays used to ignore a wrong theta_dim)
    with pytest.raises(GraphConstructionError, match="theta_dim=5"):
        Graph.from_arrays(arrays, {**attrs, "theta_dim": 5})


def test_from_arrays_checked_true_skips_the_check_and_gives_the_same_graph():
    from phasic._csr import check_graph_arrays

    arrays, attrs = _param_chain_arrays()
    check_graph_arrays(arrays, attrs)
    a = Graph.from_arrays(arrays, attrs)
    b = Graph.from_arrays(arrays, attrs, checked=True)
    for x, y in zip(a.edges() + (a.coefficients(), a.states()), b.edges() + (b.coefficients(), b.states())):
        assert np.array_equal(x, y)
    a.update_weights([0.5, 2.0])
    b.update_weights([0.5, 2.0])
    assert a.moments(3) == b.moments(3)


def test_loaded_parameterised_graph_keeps_its_stored_weights_until_update_weights():
    """No ``weight + coef.sum()`` ("theta = ones") on a load: the constant part is kept, the
    computations refuse before update_weights, and round trips are exact."""
    import pickle

    from phasic.exceptions import ParameterError

    arrays, attrs = _param_chain_arrays()
    g = Graph.from_arrays(arrays, attrs)
    stored = unpack(arrays)["edges/weight"]
    assert np.array_equal(g.edges()[2], stored)
    with pytest.raises(ParameterError, match="update_weights"):
        g.expectation()
    again = Graph.from_arrays(*g.to_arrays(compact=True))
    _plain_equal(unpack(again.to_arrays(compact=True)[0]), unpack(arrays))
    g.update_weights([0.25, 3.0])
    for h in (pickle.loads(pickle.dumps(g)), g.copy()):
        assert np.array_equal(h.edges()[2], g.edges()[2])
        assert h.moments(2) == g.moments(2)


# -------------------------------- arrays a broken store or a user hands in


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
