"""The standard coalescent state spaces (phasic.demography._spaces), against counts and
formulas written here from their definitions."""

import itertools
from math import comb

import numpy as np
import pytest

from phasic import Graph
from phasic.demography import _spaces, block_counting, block_types, lineage_counting, lineage_sfs_weights
from phasic.exceptions import StateSpaceTooLarge


def test_lineage_counting_is_kingman():
    g = Graph(lineage_counting, ipv=[6])
    g.update_weights([0.5])  # pair rate 1/2: E[T_MRCA] = 2 * 2 (1 - 1/n)
    assert g.vertices_length() == 1 + 6  # start, 6..1 lineages
    assert g.expectation() == pytest.approx(4 * (1 - 1 / 6), rel=1e-12)


def test_lineage_counting_moves_and_state_count():
    g = Graph(lineage_counting, ipv=[3, 0], n_demes=2, moves=[[0, 1], [1, 0]])
    # every placement of k = 1..3 lineages in 2 demes, plus the start
    assert g.vertices_length() == _spaces.count_lineage_states(2, 3) == 1 + 2 + 3 + 4
    assert g.theta_dim == 4


def test_block_types_and_start():
    types, index = block_types([2, 1])
    assert types == [b for b in itertools.product(range(3), range(2)) if any(b)]
    assert index[(1, 0)] == types.index((1, 0))
    s = _spaces.block_counting_start(3, [0, 2], [2, 1])
    B = len(types)
    assert s[0 * B + index[(1, 0)]] == 2 and s[2 * B + index[(0, 1)]] == 1 and sum(s) == 3


def _partitions(n):
    if n == 0:
        yield ()
        return

    def rec(n, largest):
        if n == 0:
            yield ()
            return
        for k in range(min(n, largest), 0, -1):
            for rest in rec(n - k, k):
                yield (k, *rest)

    yield from rec(n, n)


@pytest.mark.parametrize("n", [2, 4, 6])
def test_block_counting_one_deme_has_the_partitions_of_n(n):
    g = Graph(block_counting, ipv=_spaces.block_counting_start(1, [0], [n]), n_demes=1, sample_sizes=[n])
    # states: the start plus the partitions of the n samples into blocks (by block sizes)
    assert g.vertices_length() == 1 + len(list(_partitions(n)))
    assert _spaces.count_block_states(1, [n]) == g.vertices_length()


def test_block_count_bound_is_an_upper_bound():
    start = _spaces.block_counting_start(3, [0, 1], [2, 2])
    g = Graph(block_counting, ipv=start, n_demes=3, sample_sizes=[2, 2], moves=[[0, 2], [1, 2], [0, 1], [1, 0]])
    assert g.vertices_length() <= _spaces.count_block_states(3, [2, 2])


def test_sfs_weights_give_four_n_over_i_for_constant_size():
    n = 12
    ET = np.zeros(n + 1)
    for k in range(2, n + 1):
        ET[k] = 2.0 / (k * (k - 1))  # E[T_k] at pair rate 1 (coalescent units)
    xi = lineage_sfs_weights(n) @ ET
    assert np.allclose(xi[1:n], [2.0 / i for i in range(1, n)], rtol=1e-12)  # theta/i with 2 per unit
    assert xi[0] == 0 and xi[n] == 0
    assert lineage_sfs_weights(n)[3, 2] == pytest.approx(2 * comb(n - 4, 0) / comb(n - 1, 1))


def test_refusal_names_the_count_and_memory():
    with pytest.raises(StateSpaceTooLarge, match=r"up to 1,001 states \(about .* GiB.*max_states=1,000"):
        _spaces.check_size(1001, 10, 1000, "a test space")


@pytest.mark.parametrize("D", [2, 3])
def test_islands_within_deme_pair_time_is_d_for_any_migration(D):
    from phasic.demography import islands

    g = Graph(islands, ipv=[2] + [0] * (D - 1), n_demes=D)
    for m in (0.05, 1.0, 7.0):
        g.update_weights([1.0] * D + [m] * (D * (D - 1)))
        # symmetric island model: E[T] of two lineages from one island is D / (pair rate),
        # whatever the migration rate (Strobeck 1987)
        assert g.expectation() == pytest.approx(D, rel=1e-12)


def _generic(callback, **kwargs):
    """The graph made by the generic build (the callback called per state)."""
    fast = callback._phasic_fast_build
    del callback._phasic_fast_build
    try:
        return Graph(callback, **kwargs)
    finally:
        callback._phasic_fast_build = fast


@pytest.mark.parametrize(
    "callback, kwargs",
    [
        ("lineage_counting", dict(ipv=[7])),
        ("lineage_counting", dict(ipv=[3, 2, 0], n_demes=3, moves=[[0, 1], [1, 0], [0, 2], [1, 2]])),
        ("islands", dict(ipv=[2, 1, 1], n_demes=3)),
        ("block_counting", dict(ipv="3:0,1:3,2", n_demes=3, sample_sizes=[3, 2], moves=[[1, 0], [0, 2], [1, 2]])),
        ("block_counting", dict(ipv="1:0:6", n_demes=1, sample_sizes=[6])),
    ],
)
def test_the_compiled_build_makes_the_callbacks_graph(callback, kwargs):
    from phasic import _csr, demography

    cb = getattr(demography, callback)
    if isinstance(kwargs["ipv"], str):  # "D:sampled:sizes"
        D, sampled, sizes = kwargs["ipv"].split(":")
        sampled = [int(x) for x in sampled.split(",")]
        sizes = [int(x) for x in sizes.split(",")]
        kwargs = {**kwargs, "ipv": _spaces.block_counting_start(int(D), sampled, sizes)}
    a, b = _csr.of(_generic(cb, **kwargs)), _csr.of(Graph(cb, **kwargs))
    assert np.array_equal(a.states(), b.states())
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.target, b.target)
    assert np.array_equal(a.coef, b.coef) and np.array_equal(a.w, b.w)


def test_the_compiled_build_refuses_past_max_vertices():
    with pytest.raises(StateSpaceTooLarge, match="max_vertices=10"):
        Graph(
            block_counting, ipv=_spaces.block_counting_start(1, [0], [8]), n_demes=1, sample_sizes=[8], max_vertices=10
        )
