"""from_demes and DemographicModel: routes, errors, caching (numbers against closed forms
written here; the msprime and moments comparisons are in tests/verification/)."""

import numpy as np
import pytest

demes = pytest.importorskip("demes")

from phasic import demography  # noqa: E402
from phasic.exceptions import ParameterError, StateSpaceTooLarge  # noqa: E402


def constant(N=1000):
    b = demes.Builder(time_units="generations")
    b.add_deme("A", epochs=[dict(start_size=N)])
    return b.resolve()


def split(migration=0.0, pulse=False):
    b = demes.Builder(time_units="generations")
    b.add_deme("anc", epochs=[dict(start_size=2000, end_time=1000)])
    b.add_deme("A", ancestors=["anc"], epochs=[dict(start_size=500, end_size=3000)])
    b.add_deme("B", ancestors=["anc"], epochs=[dict(start_size=1500)])
    if migration:
        b.add_migration(source="A", dest="B", rate=migration)
    if pulse:
        b.add_pulse(sources=["A"], dest="B", proportions=[0.2], time=300)
    return b.resolve()


def test_constant_size_closed_forms_on_both_routes():
    N, n = 1000, 5
    for space in ("lineages", "sfs"):
        m = demography.from_demes(constant(N), {"A": n}, state_space=space)
        assert m.state_space == space
        sfs = m.expected_sfs()
        assert sfs.shape == (n + 1,)
        assert np.allclose(sfs[1:n], [4 * N / i for i in range(1, n)], rtol=1e-10)
        assert sfs[0] == 0 and sfs[n] == 0
        assert m.expectation() == pytest.approx(4 * N * (1 - 1 / n), rel=1e-10)
        var = sum((4 * N / (k * (k - 1))) ** 2 for k in range(2, n + 1))
        assert m.variance() == pytest.approx(var, rel=1e-9)


def test_the_route_is_chosen_by_exactness():
    assert demography.from_demes(split(), {"A": 4}).state_space == "lineages"
    assert demography.from_demes(split(), {"A": 4}).plan.single_deme
    assert demography.from_demes(split(migration=1e-3), {"A": 3}).state_space == "sfs"
    assert demography.from_demes(split(), {"A": 2, "B": 2}).state_space == "sfs"
    # lineage counting of two demes: the T_MRCA only
    m = demography.from_demes(split(migration=1e-3), {"A": 2, "B": 2}, state_space="lineages")
    with pytest.raises(ParameterError, match="state_space='sfs'"):
        m.expected_sfs()
    s = demography.from_demes(split(migration=1e-3), {"A": 2, "B": 2}, state_space="sfs")
    assert m.expectation() == pytest.approx(s.expectation(), rel=1e-9)
    t = np.array([100.0, 1000.0, 5000.0])
    assert np.allclose(m.cdf(t), s.cdf(t), atol=1e-12)


def test_joint_sfs_shape_and_total_length():
    m = demography.from_demes(split(migration=1e-3, pulse=True), {"A": 3, "B": 2})
    sfs = m.expected_sfs()
    assert sfs.shape == (4, 3)
    assert sfs[0, 0] == 0 and sfs[3, 2] == 0
    assert np.all(sfs[(slice(None), slice(None))] >= 0)
    # the total branch length is the expected time-integral of the number of lineages
    r = m.graph.states().sum(axis=1).astype(float)
    assert sfs.sum() == pytest.approx(m.epochs.expectation(r), rel=1e-10)


def test_lineage_route_equals_block_counting_for_one_deme_with_size_changes():
    a = demography.from_demes(split(), {"A": 4}, state_space="lineages")
    b = demography.from_demes(split(), {"A": 4}, state_space="sfs")
    assert np.allclose(a.expected_sfs(), b.expected_sfs(), rtol=1e-9)


def test_bad_input_names_the_value():
    with pytest.raises(ParameterError, match="'C', which the Demes model does not have"):
        demography.from_demes(split(), {"C": 2})
    with pytest.raises(ParameterError, match="fewer than 2 genomes"):
        demography.from_demes(split(), {"A": 1})
    with pytest.raises(ParameterError, match=r"samples\['A'\] = 2.5"):
        demography.from_demes(split(), {"A": 2.5})
    with pytest.raises(ParameterError, match="deme 'anc' ends at time 1000"):
        demography.from_demes(split(), {"anc": 2})
    with pytest.raises(ParameterError, match="state_space must be one of"):
        demography.from_demes(split(), {"A": 2}, state_space="blocks")
    with pytest.raises(ParameterError, match="not found"):
        demography.from_demes("/nonexistent/model.yaml", {"A": 2})
    with pytest.raises(StateSpaceTooLarge, match="max_states=100"):
        demography.from_demes(split(), {"A": 5, "B": 5}, max_states=100)
    b = demes.Builder(time_units="generations")
    b.add_deme("X", epochs=[dict(start_size=100)])
    b.add_deme("Y", epochs=[dict(start_size=100)])
    with pytest.raises(ParameterError, match="'X' and 'Y' exist for all time and no migration connects"):
        demography.from_demes(b.resolve(), {"X": 1, "Y": 1})


def test_growth_pieces_converge():
    ref = demography.from_demes(split(), {"A": 6}, growth_tolerance=0.001).expected_sfs()
    coarse = demography.from_demes(split(), {"A": 6}, growth_tolerance=0.05).expected_sfs()
    default = demography.from_demes(split(), {"A": 6}).expected_sfs()
    err_coarse = np.abs(coarse[1:-1] / ref[1:-1] - 1).max()
    err_default = np.abs(default[1:-1] / ref[1:-1] - 1).max()
    assert err_default < 1e-5 and err_default < err_coarse


def test_one_stored_graph_serves_every_parameter_value(tmp_path, monkeypatch):
    monkeypatch.setenv("PHASIC_CACHE_DIR", str(tmp_path))
    a = demography.from_demes(split(migration=1e-3), {"A": 2, "B": 2}, cache=True)
    b = demography.from_demes(split(migration=5e-4), {"A": 2, "B": 2}, cache=True)
    entries = list((tmp_path / "graphs").rglob("*.h5"))
    assert len(entries) == 1  # same topology and samples: one graph entry
    assert a.expected_sfs()[1, 0] != b.expected_sfs()[1, 0]
    c = demography.from_demes(split(migration=5e-4), {"A": 2, "B": 2})
    assert np.allclose(b.expected_sfs(), c.expected_sfs(), rtol=1e-12)
