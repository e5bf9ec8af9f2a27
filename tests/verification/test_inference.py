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
from tests.inference.test_fit import model, simulate  # noqa: E402

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


@pytest.fixture(scope="module")
def data():
    ts = simulate(model(**TRUTH), N, L, seed=11, mu=MU)
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


# --- SVGD against a closed-form posterior -------------------------------------------------
#
# One deme of constant diploid size N, n haploid samples, Poisson random field with known
# theta = mu L per generation: the expected SFS is E[xi_i] = 4 N / i (branch length in
# generations), so lambda_i = 4 mu L N / i and
#   log L(N) = sum_i D_i log(4 mu L N / i) - 4 mu L N a_n + const = S log N - b N + const,
# with S = sum_i D_i (the segregating sites), a_n = sum_{i=1}^{n-1} 1/i and b = 4 mu L a_n:
# the counts inform N only through S. A log-uniform prior (density 1/N) makes the posterior
# N^(S-1) e^(-b N): Gamma(shape S, rate b), mean S/b, sd sqrt(S)/b; a uniform prior adds one
# to the shape. The bounds [10, 1e7] cut off nothing of either (their tails there are below
# e^-100).

GAMMA_N, GAMMA_MU = 8, 1e-8
GAMMA_OPTIONS = {
    "parameters": [
        {
            "name": "N",
            "values": [{"demes": {"A": {"epochs": {0: "start_size"}}}}],
            "lower_bound": 10,
            "upper_bound": 1e7,
        }
    ]
}


def constant(N):
    b = demes.Builder(time_units="generations")
    b.add_deme("A", epochs=[dict(start_size=N)])
    return b.resolve()


def gamma_data(L, seed):
    from phasic import demography

    e = demography.from_demes(constant(10000.0), {"A": GAMMA_N}).expected_sfs()
    d = np.random.default_rng(seed).poisson(e * GAMMA_MU * L).astype(float)
    b = 4 * GAMMA_MU * L * sum(1.0 / i for i in range(1, GAMMA_N))
    return d, d[1:-1].sum(), b


def svgd_fit(data, L, prior, init):
    # init="start": the particles start around N = 20000, away from the posterior (near 10000)
    return inference.fit(
        constant(20000.0),
        GAMMA_OPTIONS,
        data,
        samples={"A": GAMMA_N},
        mutation_rate=GAMMA_MU,
        sequence_length=L,
        method="svgd",
        n_particles=16,
        n_iterations=60,
        prior=prior,
        init=init,
        seed=1,
    )


def test_svgd_posterior_of_a_constant_size_is_the_gamma(store):
    """Log-uniform prior: Gamma(S, b). Tolerances: the mean within 2 % (S near 400: the
    posterior sd is 5 % of the mean, so 0.4 sd; SVGD's particles are a deterministic
    quadrature of a near-Gaussian log-posterior and centre to far better than that when
    converged), the sd within 25 % (16 particles with a median-bandwidth kernel under-spread
    the posterior by some per cent; a sampler that is not converged, or that samples the
    likelihood in the wrong coordinates, misses by far more)."""
    L = 4e5
    data, S, b = gamma_data(L, 3)
    assert 300 < S < 500
    post = svgd_fit(data, L, "loguniform", "start")
    x = post.samples[:, 0]
    mean, sd = S / b, np.sqrt(S) / b
    assert x.mean() == pytest.approx(mean, rel=0.02), (x.mean(), mean)
    assert x.std(ddof=1) == pytest.approx(sd, rel=0.25), (x.std(ddof=1), sd)
    assert post.converged, post.message
    assert post.trace[-1] < 1e-2 * post.trace[0]
    # the particle with the highest log posterior is near the posterior mode (S - 1)/b
    assert post.map_params["N"] == pytest.approx((S - 1) / b, rel=0.02)
    # the reported log-likelihood is the one at map_params
    assert post.loglik == pytest.approx(
        inference.loglik(
            constant(1.0),
            GAMMA_OPTIONS,
            data,
            samples={"A": GAMMA_N},
            params=post.map_params,
            mutation_rate=GAMMA_MU,
            sequence_length=L,
        ),
        rel=1e-10,
    )


def test_svgd_uniform_prior_adds_one_to_the_shape(store):
    """Uniform prior: Gamma(S + 1, b). With S near 25 the two priors' means differ by 4 %,
    several times the tolerance of 1 % on the mean (0.2 posterior sd), so a sampler that
    forgets the prior's Jacobian in log space fails."""
    L = 2.5e4
    data, S, b = gamma_data(L, 5)
    assert 15 < S < 40
    post = svgd_fit(data, L, "uniform", "mle")
    x = post.samples[:, 0]
    assert x.mean() == pytest.approx((S + 1) / b, rel=0.01), (x.mean(), (S + 1) / b, S / b)
    assert x.std(ddof=1) == pytest.approx(np.sqrt(S + 1) / b, rel=0.25)
    assert abs(x.mean() - (S + 1) / b) < abs(x.mean() - S / b)
