"""inference.fit(method="svgd") in this process: the posterior of a well-identified 3-parameter
model against its Laplace approximation, the PosteriorResult contract, constraints, bad input.
(The closed-form Gamma posterior of one constant size is in tests/verification/test_inference.py.)"""

import copy

import numpy as np
import pytest

demes = pytest.importorskip("demes")

from phasic import demography, inference  # noqa: E402
from phasic.exceptions import ParameterError  # noqa: E402
from tests.inference.test_fit import OPTIONS, model  # noqa: E402

MU, N = 1e-8, 10


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("PHASIC_CACHE_DIR", str(tmp_path / "store"))
    return tmp_path


def poisson_data(truth, L, seed=2):
    e = demography.from_demes(model(**truth), {"A": N}).expected_sfs() * MU * L
    return np.random.default_rng(seed).poisson(e).astype(float)


def fit(data, L, options=OPTIONS, start=(10000, 3000, 10000), **kw):
    return inference.fit(model(*start), options, data, samples={"A": N}, mutation_rate=MU, sequence_length=L, **kw)


def test_posterior_is_near_the_laplace_approximation(store):
    """200 Mb of unlinked sites: the posterior is close to normal around the MLE with the
    inverse observed information as covariance (Bernstein-von Mises). Tolerances: the posterior
    means within half an SE of the MLE (the log-uniform prior and the posterior's skew move
    them by a fraction of an SE), the posterior sds within 30 % of the SEs (16 particles in 3
    dimensions spread a little less than the posterior, and the Laplace SE is itself an
    approximation)."""
    L = 2e8
    data = poisson_data({"N1": 20000.0, "T": 1000.0, "N0": 5000.0}, L)
    mle = fit(data, L)
    post = fit(data, L, method="svgd", n_particles=16, n_iterations=60, seed=1)
    assert isinstance(post, inference.PosteriorResult)
    assert post.names == ["N1", "T", "N0"] and post.samples.shape == (16, 3)
    assert post.converged, post.message
    for name, mean, sd, q05, median, q95 in post.summary():
        assert abs(mean - mle.params[name]) < 0.5 * mle.stderr[name], (name, mean, mle.params[name])
        assert sd == pytest.approx(mle.stderr[name], rel=0.3), (name, sd, mle.stderr[name])
        assert q05 < median < q95
        i = post.names.index(name)
        assert mean == pytest.approx(post.samples[:, i].mean()) and median == pytest.approx(
            np.median(post.samples[:, i])
        )
    # the particles are inside the bounds; evaluations: the MLE's, then 16 per iteration + 1
    for i, p in enumerate(OPTIONS["parameters"]):
        assert np.all((post.samples[:, i] >= p["lower_bound"]) & (post.samples[:, i] <= p["upper_bound"]))
    assert post.evaluations >= 16 * 61
    assert len(post.trace) == 60 and post.trace[-1] < 0.05 * post.trace[0]
    # map_params is the particle with the highest log posterior, loglik its log-likelihood
    best = int(np.argmax(post.log_posterior))
    assert post.map_params == dict(zip(post.names, post.samples[best].tolist()))
    assert post.loglik == pytest.approx(
        inference.loglik(
            model(1, 1, 1), OPTIONS, data, samples={"A": N}, params=post.map_params, mutation_rate=MU, sequence_length=L
        ),
        rel=1e-10,
    )
    g = post.to_demes()  # at the posterior median
    assert g["A"].epochs[0].end_time == pytest.approx(post.median["T"])
    assert post.to_demes(at="map")["A"].epochs[0].start_size == pytest.approx(post.map_params["N0"])
    with pytest.raises(ParameterError, match="at must be 'median' or 'map', got 'mode'"):
        post.to_demes(at="mode")


def test_constraints_hold_for_every_particle(store):
    """T < N0 with the truth just inside (T = 4900, N0 = 5000): the posterior is cut by the
    constraint; particles start inside it and moves that would cross it are shortened."""
    L = 2e8
    data = poisson_data({"N1": 20000.0, "T": 4900.0, "N0": 5000.0}, L)
    opts = copy.deepcopy(OPTIONS)
    opts["constraints"] = [{"params": ["T", "N0"], "constraint": "less_than"}]
    post = fit(data, L, options=opts, start=(20000, 3000, 6000), method="svgd", n_particles=16, n_iterations=40, seed=1)
    s = post.samples
    assert np.all(s[:, 1] < s[:, 2])
    assert np.all(np.isfinite(post.log_posterior))
    # the particles press against the constraint: several close to T = N0
    assert np.sum(s[:, 2] - s[:, 1] < 1.0) >= 3


def test_bad_input_names_the_value(store):
    d = poisson_data({"N1": 20000.0, "T": 1000.0, "N0": 5000.0}, 1e7)
    with pytest.raises(ParameterError, match="prior must be one of .* got 'flat'"):
        fit(d, 1e7, method="svgd", prior="flat")
    opts = copy.deepcopy(OPTIONS)
    del opts["parameters"][1]["upper_bound"]
    with pytest.raises(ParameterError, match="prior 'uniform' needs finite bounds: parameter 'T' has upper bound inf"):
        fit(d, 1e7, options=opts, method="svgd", prior="uniform")
    with pytest.raises(ParameterError, match="n_particles must be at least 2"):
        fit(d, 1e7, method="svgd", n_particles=1)
    with pytest.raises(ParameterError, match="n_iterations must be a positive integer, got 0"):
        fit(d, 1e7, method="svgd", n_iterations=0)
    with pytest.raises(ParameterError, match="step_size must be a positive number, got -0.1"):
        fit(d, 1e7, method="svgd", step_size=-0.1)
    with pytest.raises(ParameterError, match="init must be 'mle' or 'start', got 'prior'"):
        fit(d, 1e7, method="svgd", init="prior")
    with pytest.raises(ParameterError, match="method='svgd' takes neither starts=3"):
        fit(d, 1e7, method="svgd", starts=3)
    with pytest.raises(ParameterError, match="uncertainty='godambe'"):
        fit(d, 1e7, method="svgd", uncertainty="godambe", bootstrap=[d, d])
