"""Standard errors of inference.fit: the observed information from gradient differences, and
the Godambe information from bootstrap replicates (linked sites), on msprime data and on
independent Poisson data where the two must agree; the block bootstrap of a tree sequence;
input errors."""

import numpy as np
import pytest

demes = pytest.importorskip("demes")
msprime = pytest.importorskip("msprime")

from phasic import demography, inference  # noqa: E402
from phasic.exceptions import ParameterError  # noqa: E402
from tests.inference.test_fit import OPTIONS, model, simulate  # noqa: E402

TRUTH = {"N1": 20000.0, "T": 1000.0, "N0": 5000.0}
MU, N = 1e-8, 10


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("PHASIC_CACHE_DIR", str(tmp_path / "store"))
    return tmp_path


@pytest.fixture(scope="module")
def linked():
    """20 Mb with recombination 1e-8: sites within ~100 kb share their genealogy."""
    L = 2e7
    ts = simulate(model(**TRUTH), N, L, seed=5, mu=MU)
    return ts, L


def fit(data, L, **kw):
    return inference.fit(
        model(10000, 3000, 10000), OPTIONS, data, samples={"A": N}, mutation_rate=MU, sequence_length=L, **kw
    )


def test_godambe_standard_errors_exceed_the_hessian_ones_on_linked_sites(linked, store):
    ts, L = linked
    h = fit(ts, L)
    g = fit(ts, L, uncertainty="godambe", bootstrap=40, blocks=40, seed=1)
    assert h.uncertainty == "hessian" and g.uncertainty == "godambe"
    assert g.params == h.params and g.loglik == h.loglik  # the same estimate, other errors
    ratio = np.array([g.stderr[k] / h.stderr[k] for k in h.names])
    assert np.all(np.isfinite(ratio)), (h.stderr, g.stderr)
    # linkage makes the score vary more between blocks than independent sites would:
    # every SE at least about the Hessian one, and clearly larger on average
    assert np.all(ratio > 0.9) and ratio.mean() > 1.2, ratio
    # the truth is within 3 Godambe SEs (the Hessian ones are too small to promise that)
    for k, v in TRUTH.items():
        assert abs(g.params[k] - v) <= 3 * g.stderr[k], (k, g.params[k], g.stderr[k])
    # seeded: the same replicates, the same errors
    again = fit(ts, L, uncertainty="godambe", bootstrap=40, blocks=40, seed=1)
    assert again.stderr == g.stderr
    # the covariance is of the log-parameters: stderr = estimate x sqrt(diagonal)
    for i, k in enumerate(g.names):
        assert g.stderr[k] == pytest.approx(g.params[k] * np.sqrt(g.covariance[i, i]), rel=1e-12)


def test_godambe_equals_the_hessian_for_independent_sites(store):
    """With independent sites the variance of the score is the Fisher information, which the
    observed information estimates: replicates drawn as independent Poisson counts (the
    unlinked model itself) must give the Hessian's SEs, up to the sampling error of a variance
    from 300 replicates (about 4 % on an SE; the tolerance is 15 %)."""
    L = 2e8
    e = demography.from_demes(model(**TRUTH), {"A": N}).expected_sfs() * MU * L
    rng = np.random.default_rng(2)
    data = rng.poisson(e).astype(float)
    reps = [rng.poisson(e).astype(float) for _ in range(300)]
    h = fit(data, L)
    g = fit(data, L, uncertainty="godambe", bootstrap=reps)
    for k in h.names:
        assert g.stderr[k] == pytest.approx(h.stderr[k], rel=0.15), (k, h.stderr, g.stderr)


def test_block_bootstrap_resamples_the_windows(linked, tmp_path):
    ts, _ = linked
    full = ts.allele_frequency_spectrum(mode="site", polarised=True, span_normalise=False)
    reps = inference.block_bootstrap(ts, {"A": N}, 20, blocks=10, seed=3)
    assert len(reps) == 20 and all(r.shape == (N + 1,) for r in reps)
    # each replicate is a sum of 10 of the windows, so the windows' mean is the data's
    assert np.mean(reps, axis=0) == pytest.approx(full, rel=0.2)
    assert not all(np.array_equal(reps[0], r) for r in reps[1:])
    path = tmp_path / "x.trees"
    ts.dump(path)
    same = inference.block_bootstrap(str(path), {"A": N}, 20, blocks=10, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(reps, same))
    # one block each: the windows themselves, which sum to the whole sequence's SFS
    from phasic.inference._uncertainty import block_sfs

    per = block_sfs(ts, {"A": N}, 10)
    assert per.sum(axis=0) == pytest.approx(full)


def test_bad_input_names_the_value(linked, store, tmp_path):
    ts, L = linked
    d = np.zeros(N + 1)
    d[1:-1] = 5
    with pytest.raises(
        ParameterError, match=r"bootstrap \(a list of 2 replicates\) is given but uncertainty='hessian'"
    ):
        fit(d, L, bootstrap=[d, d])
    with pytest.raises(ParameterError, match="uncertainty='godambe' needs bootstrap="):
        fit(d, L, uncertainty="godambe")
    with pytest.raises(ParameterError, match="uncertainty must be one of .* got 'sandwich'"):
        fit(d, L, uncertainty="sandwich")
    with pytest.raises(ParameterError, match=r"bootstrap replicate 1: the observed SFS has shape \(5,\)"):
        fit(d, L, uncertainty="godambe", bootstrap=[d, np.zeros(5)])
    with pytest.raises(ParameterError, match="bootstrap=10 .* needs a tree sequence"):
        fit(d, L, uncertainty="godambe", bootstrap=10)
    with pytest.raises(ParameterError, match="at least 2 replicates, got 1"):
        fit(d, L, uncertainty="godambe", bootstrap=[d])
    with pytest.raises(ParameterError, match="blocks must be an integer of at least 2, got 1"):
        fit(ts, L, uncertainty="godambe", bootstrap=10, blocks=1)
    with pytest.raises(ParameterError, match="bootstrap replicate 0: SFS file .*missing.fs' not found"):
        fit(d, L, uncertainty="godambe", bootstrap=[str(tmp_path / "missing.fs"), d])
    with pytest.raises(ParameterError, match="population 'A' has 10 sample genomes .* samples says 4"):
        inference.block_bootstrap(ts, {"A": 4}, 5)
    with pytest.raises(ParameterError, match="needs a tree sequence or a .trees file"):
        inference.block_bootstrap(d, {"A": N}, 5)


def test_fs_files_as_replicates(store, tmp_path):
    """Replicates written as .fs files (with a mask) are read like the data."""
    L = 2e7
    e = demography.from_demes(model(**TRUTH), {"A": N}).expected_sfs() * MU * L
    rng = np.random.default_rng(4)
    data = rng.poisson(e).astype(float)
    files = []
    for i in range(30):
        f = tmp_path / f"rep{i}.fs"
        f.write_text(f"{N + 1} unfolded\n" + " ".join(str(int(x)) for x in rng.poisson(e)) + "\n")
        files.append(str(f))
    g = fit(data, L, uncertainty="godambe", bootstrap=files)
    assert all(np.isfinite(v) and v > 0 for v in g.stderr.values())
