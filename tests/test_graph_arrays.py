"""The store's compact graph arrays: lossless, smaller, and read back by Graph.from_arrays."""
import numpy as np
import pytest

from phasic import Graph
from phasic.graph_arrays import narrow_int, pack, unpack
from tests.dask_models import two_island_param


def block_counting(state):
    s = list(state)
    out = []
    if sum(s) <= 1:
        return out
    for i in range(len(s)):
        for j in range(i, len(s)):
            rate = s[i] * (s[j] - (i == j)) / (1 + (i == j))
            if rate <= 0 or i + j + 1 >= len(s):
                continue
            t = s.copy()
            t[i] -= 1
            t[j] -= 1
            t[i + j + 1] += 1
            out.append([t, rate])
    return out


def _plain_equal(a, b):
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert a[name].tobytes() == b[name].tobytes(), name  # bit for bit


def test_round_trip_is_bit_exact_and_smaller():
    n = 12
    g = Graph(block_counting, ipv=[[[n] + [0] * (n - 1), 1.0]])
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
    arrays = {"states": np.zeros((501, 1), np.int32), "edges/indptr": np.arange(502, dtype=np.int64),
              "edges/target": np.zeros(500, np.int32), "edges/weight": few}
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
    g = Graph(block_counting, ipv=[[[12] + [0] * 11, 1.0]])
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
