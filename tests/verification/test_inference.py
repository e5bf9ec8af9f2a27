"""phasic.inference against moments' Demes inference on the same data and model.

(a) The maximum-likelihood estimate of ``inference.fit`` scores at least as well under
    phasic's exact model as the estimate of ``moments.Demes.Inference.optimize`` (same start,
    bounds, options and Poisson likelihood with uL = mutation rate x length).
(b) The forward-difference gradient of ``inference.loglik`` in log-parameter space (what the
    fit's L-BFGS-B uses) agrees with a central difference (sanity check until gradients are
    exact).
"""

import io
import math

import numpy as np
import pytest

demes = pytest.importorskip("demes")
msprime = pytest.importorskip("msprime")
moments = pytest.importorskip("moments")
yaml = pytest.importorskip("yaml")

import moments.Demes.Inference as MI  # noqa: E402

from phasic import inference  # noqa: E402

MU, L, N = 1e-8, 1e7, 10
TRUTH = {"N1": 20000.0, "T": 1000.0, "N0": 5000.0}
START = {"N1": 10000.0, "T": 3000.0, "N0": 10000.0}
# bounds whose exp(log(bound)) stays within [lower, upper] (phasic checks feasibility there)
OPTIONS = {
    "parameters": [
        {
            "name": "N1",
            "values": [{"demes": {"A": {"epochs": {1: "start_size"}}}}],
            "lower_bound": 100,
            "upper_bound": 1e6,
        },
        {
            "name": "T",
            "values": [{"demes": {"A": {"epochs": {0: "end_time"}}}}],
            "lower_bound": 10,
            "upper_bound": 5e5,
        },
        {
            "name": "N0",
            "values": [{"demes": {"A": {"epochs": {0: "start_size"}}}}],
            "lower_bound": 100,
            "upper_bound": 1e6,
        },
    ]
}


def model(N1, T, N0):
    b = demes.Builder(time_units="generations")
    b.add_deme("A", epochs=[dict(start_size=N0, end_time=T), dict(start_size=N1)])
    return b.resolve()


@pytest.fixture(scope="module")
def data():
    ts = msprime.sim_ancestry(
        samples=[msprime.SampleSet(N, population="A", ploidy=1)],
        demography=msprime.Demography.from_demes(model(**TRUTH)),
        ploidy=2,
        sequence_length=L,
        recombination_rate=1e-8,
        random_seed=11,
    )
    ts = msprime.sim_mutations(ts, rate=MU, random_seed=12, model=msprime.BinaryMutationModel(), discrete_genome=False)
    return np.asarray(ts.allele_frequency_spectrum(mode="site", polarised=True, span_normalise=False), float)


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("PHASIC_CACHE_DIR", str(tmp_path / "store"))
    return tmp_path


def ll(data, params):
    return inference.loglik(
        model(**START), OPTIONS, data, samples={"A": N}, params=params, mutation_rate=MU, sequence_length=L
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # moments passes iprint to scipy
def test_mle_not_below_moments_estimate(data, store):
    g_file, o_file = store / "graph.yaml", store / "options.yaml"
    demes.dump(model(**START), str(g_file))
    o_file.write_text(yaml.safe_dump(OPTIONS))
    names, x, _ = MI.optimize(
        str(g_file),
        str(o_file),
        moments.Spectrum(data, pop_ids=["A"]),
        uL=MU * L,
        method="lbfgsb",
        output_stream=io.StringIO(),
    )
    at_moments = ll(data, dict(zip(names, map(float, x))))
    r = inference.fit(model(**START), OPTIONS, data, samples={"A": N}, mutation_rate=MU, sequence_length=L)
    assert r.converged, r.message
    at_phasic = ll(data, r.params)
    assert at_phasic == pytest.approx(r.loglik, rel=1e-10)
    # the MLE is the maximum of phasic's likelihood: never below moments' estimate's value
    # (up to the optimiser's tolerance on the objective)
    assert at_phasic >= at_moments - 1e-6 * abs(at_moments), (r.params, dict(zip(names, x)))
    assert at_phasic >= ll(data, TRUTH)


def test_finite_difference_gradient_in_log_space(data, store):
    x0 = {k: v * 1.3 for k, v in TRUTH.items()}  # away from the optimum: a non-zero gradient
    f0 = ll(data, x0)

    def at(name, h):
        p = dict(x0)
        p[name] = x0[name] * math.exp(h)
        return ll(data, p)

    for name in x0:
        fwd = (at(name, 1e-6) - f0) / 1e-6  # forward difference, scipy's default-sized step
        cen = (at(name, 1e-4) - at(name, -1e-4)) / 2e-4  # finer (second-order) central difference
        assert np.isfinite(fwd) and np.isfinite(cen)
        assert abs(fwd - cen) <= 1e-3 * max(1.0, abs(cen)), (name, fwd, cen)
