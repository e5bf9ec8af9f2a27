"""phasic.demography against references nobody here wrote.

1. Closed forms: the Kingman coalescent of a constant-size deme (E[xi_i] = 4N/i, the T_MRCA
   as a sum of independent exponentials) by both state spaces, and a pair of genomes in a
   deme whose size changes once (an exponential with one rate, then another).
2. msprime: seeded simulations of single trees (no recombination), the branch-mode joint SFS
   and the T_MRCA per replicate; the mean of each SFS entry, the T_MRCA mean and variance
   within 5 standard errors of phasic's values (standard errors from the simulated sample
   alone), and a KS test of the simulated T_MRCA against phasic's cdf. msprime's time scale
   is first checked against the closed forms.
3. moments: its expected SFS (``u=1``: branch lengths in generations) on models without
   migration, where its only error is its ODE time step (Crank-Nicolson, second order: the
   tests show the difference to phasic shrinking ~16x when the step shrinks 4x, to 1e-6 and
   below), and with migration, where its jackknife closure errs at small sample sizes (the
   test shows the difference shrinking when moments integrates a larger sample and projects
   it down). Numbers: docs/demography.md, "Verification".
4. :class:`phasic.demography.Epochs` on a user's callback (two islands, a bottleneck, pulse
   maps) against a dense reference written here with scipy.linalg.expm and Van Loan's block
   matrix.

Statistical checks use fixed seeds, so each run is deterministic; for a correct model a
5-standard-error miss has probability below 1e-6 per check.
"""

from __future__ import annotations

import math
from math import comb

import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from phasic import Graph, with_ipv

demes = pytest.importorskip("demes")

from phasic import demography  # noqa: E402
from phasic.demography import Epochs  # noqa: E402

from . import demography_models as dm  # noqa: E402

# ---------------------------------------------------------------------------
# 1. closed forms
# ---------------------------------------------------------------------------


def kingman_rates(N, n):
    """Rates of the T_MRCA's exponential stages: k lineages coalesce at C(k, 2) / (2N)."""
    return np.array([k * (k - 1) / 2 / (2 * N) for k in range(2, n + 1)])


def hypoexp(rates, t):
    """Density and cdf of a sum of independent exponentials with distinct rates."""
    t = np.asarray(t, dtype=float)
    surv = np.zeros_like(t)
    dens = np.zeros_like(t)
    for k, lk in enumerate(rates):
        c = np.prod([lj / (lj - lk) for j, lj in enumerate(rates) if j != k])
        surv += c * np.exp(-lk * t)
        dens += c * lk * np.exp(-lk * t)
    return dens, 1.0 - surv


def hypoexp_raw_moments(rates, power):
    """E[T^m], m = 1..power, from the cumulants kappa_r = sum (r-1)! / rate^r."""
    kappa = [sum(math.factorial(r - 1) / lk**r for lk in rates) for r in range(1, power + 1)]
    raw = [1.0]
    for m in range(1, power + 1):  # raw moments from cumulants (the standard recursion)
        raw.append(sum(comb(m - 1, r - 1) * kappa[r - 1] * raw[m - r] for r in range(1, m + 1)))
    return raw[1:]


def partitions(n):
    """The number of integer partitions of n."""
    p = [1] + [0] * n
    for k in range(1, n + 1):
        for m in range(k, n + 1):
            p[m] += p[m - k]
    return p[n]


@pytest.mark.parametrize("route", ["lineages", "sfs"])
@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_constant_size_closed_forms(n, route):
    N = 1000.0
    g, samples = dm.constant(N=N, n=n)
    m = demography.from_demes(g, samples=samples, state_space=route)
    # the state spaces themselves: lineage counts n..1, or partitions of n (block counting)
    V = m.graph.vertices_length()
    assert V == (n + 1 if route == "lineages" else partitions(n) + 1), V
    xi = m.expected_sfs()
    assert xi.shape == (n + 1,)
    ref = np.array([0.0, *(4 * N / i for i in range(1, n)), 0.0])
    np.testing.assert_allclose(xi, ref, rtol=1e-12, atol=1e-9)
    rates = kingman_rates(N, n)
    raw = hypoexp_raw_moments(rates, 3)
    assert m.expectation() == pytest.approx(4 * N * (1 - 1 / n), rel=1e-12)
    assert m.variance() == pytest.approx(sum((4 * N / (k * (k - 1))) ** 2 for k in range(2, n + 1)), rel=1e-11)
    np.testing.assert_allclose(m.moments(3), raw, rtol=1e-11)
    if n <= 5:  # the alternating sum of the hypoexponential is well conditioned here
        t = np.array([10.0, 300.0, 1000.0, 2500.0, 9000.0])
        dens, cdf = hypoexp(rates, t)
        np.testing.assert_allclose(m.cdf(t), cdf, rtol=0, atol=1e-10)
        np.testing.assert_allclose(m.pdf(t), dens, rtol=0, atol=1e-10 / N)


@pytest.mark.parametrize("route", ["lineages", "sfs"])
def test_two_epoch_pair_closed_form(route):
    """n = 2: coalescence at a = 1/(2 N_recent) per generation until T, then b = 1/(2 N_ancient)."""
    N1, N2, T = 1000.0, 300.0, 500.0
    g, samples = dm.two_epoch(N_recent=N1, N_ancient=N2, T=T, n=2)
    m = demography.from_demes(g, samples=samples, state_space=route)
    a, b = 1 / (2 * N1), 1 / (2 * N2)
    q = math.exp(-a * T)  # P(no coalescence before T)
    E1 = (1 - q) / a + q / b
    E2 = 2 / a**2 - q * (T**2 + 2 * T / a + 2 / a**2) + q * (T**2 + 2 * T / b + 2 / b**2)
    assert m.expectation() == pytest.approx(E1, rel=1e-12)
    np.testing.assert_allclose(m.moments(2), [E1, E2], rtol=1e-11)
    assert m.variance() == pytest.approx(E2 - E1**2, rel=1e-10)
    # two genomes: the singleton class is both branches, 2 T_MRCA
    np.testing.assert_allclose(m.expected_sfs(), [0.0, 2 * E1, 0.0], rtol=1e-12)
    t = np.array([1.0, 250.0, T, 700.0, 3000.0])  # T itself: the density is right-continuous
    after = t >= T
    cdf = np.where(after, 1 - q * np.exp(-b * (t - T)), 1 - np.exp(-a * t))
    pdf = np.where(after, b * q * np.exp(-b * (t - T)), a * np.exp(-a * t))
    np.testing.assert_allclose(m.cdf(t), cdf, rtol=0, atol=1e-11)
    np.testing.assert_allclose(m.pdf(t), pdf, rtol=0, atol=1e-13)


# ---------------------------------------------------------------------------
# 2. msprime
# ---------------------------------------------------------------------------

REPLICATES = 10_000


def simulate(g, samples, seed, reps=REPLICATES):
    """msprime: per replicate, the T_MRCA and the joint SFS (branch lengths, polarised) of
    `samples` (haploid genomes per deme). ``ploidy=2`` sets the coalescent time scale of
    diploid Demes sizes (a pair coalesces at 1 / (2N)); the SampleSets of ploidy 1 take
    single genomes."""
    msprime = pytest.importorskip("msprime")
    demography_ = msprime.Demography.from_demes(g)
    sets = [msprime.SampleSet(k, population=name, ploidy=1) for name, k in samples.items()]
    runs = msprime.sim_ancestry(
        samples=sets,
        demography=demography_,
        ploidy=2,
        sequence_length=1,
        random_seed=seed,
        num_replicates=reps,
    )
    shape = tuple(k + 1 for k in samples.values())
    T = np.empty(reps)
    S = np.empty((reps, *shape))
    groups = None
    for i, ts in enumerate(runs):
        if groups is None:
            assert ts.num_trees == 1
            ids = {pop.metadata["name"]: pop.id for pop in ts.populations()}
            groups = [ts.samples(population=ids[name]) for name in samples]
            assert [len(x) for x in groups] == list(samples.values())
        T[i] = ts.nodes_time.max()  # one tree: its root is the oldest node
        S[i] = ts.allele_frequency_spectrum(sample_sets=groups, mode="branch", polarised=True, span_normalise=True)
    return T, S


def z_scores(x, expected):
    """(sample mean - expected) / standard error, per entry of axis 0's replicates; 0 where
    both the expectation and the sample are identically 0 (the SFS corners)."""
    se = x.std(axis=0, ddof=1) / np.sqrt(len(x))
    diff = x.mean(axis=0) - expected
    zero = se == 0
    assert np.all(np.abs(diff[zero]) < 1e-9 * max(1.0, float(np.max(np.abs(expected))))), "a constant entry differs"
    return np.where(zero, 0.0, diff / np.where(zero, 1.0, se))


def variance_z(x, var):
    """z-score of the sample variance: SE sqrt((mu4 - s^4) / n) from the sample's moments."""
    c = x - x.mean()
    s2 = np.mean(c**2)
    mu4 = np.mean(c**4)
    return (x.var(ddof=1) - var) / np.sqrt((mu4 - s2**2) / len(x))


def test_msprime_time_scale_matches_kingman():
    """Before msprime judges phasic: its constant-size simulation against the closed forms
    (E[xi_i] = 4N/i, E[T_MRCA] = 4N(1 - 1/n), the variance, the hypoexponential cdf)."""
    N, n = 1000.0, 5
    g, samples = dm.constant(N=N, n=n)
    T, S = simulate(g, samples, seed=11)
    rates = kingman_rates(N, n)
    xi = np.array([0.0, *(4 * N / i for i in range(1, n)), 0.0])
    z = z_scores(S, xi)
    assert np.max(np.abs(z)) < 5, z
    assert abs(z_scores(T, 4 * N * (1 - 1 / n))) < 5
    assert abs(variance_z(T, sum(1 / r**2 for r in rates))) < 5
    ks = scipy.stats.kstest(T, lambda t: hypoexp(rates, t)[1])
    assert ks.pvalue > 1e-3, ks


MSPRIME_MODELS = {
    "three_epoch": (dm.three_epoch, 21),
    "growth": (dm.growth, 22),
    "decline": (dm.decline, 23),
    "split": (dm.split, 24),
    "split_growth": (dm.split_growth, 28),
    "isolation_migration": (dm.isolation_migration, 25),
    "pulse": (dm.pulse, 26),
    "admixture": (dm.admixture, 27),
}


@pytest.mark.parametrize("name", list(MSPRIME_MODELS))
def test_against_msprime(name):
    make, seed = MSPRIME_MODELS[name]
    g, samples = make()
    m = demography.from_demes(g, samples=samples)
    assert m.graph.vertices_length() < 2000  # the test sizes its samples to keep this small
    xi = m.expected_sfs()
    T, S = simulate(g, samples, seed=seed)
    assert S.shape[1:] == xi.shape
    z = z_scores(S, xi)
    assert np.max(np.abs(z)) < 5, f"{name}: SFS z-scores {np.round(z, 2)}"
    z_mean = z_scores(T, m.expectation())
    z_var = variance_z(T, m.variance())
    assert abs(z_mean) < 5 and abs(z_var) < 5, (z_mean, z_var)
    ks = scipy.stats.kstest(T, m.cdf)
    assert ks.pvalue > 1e-3, ks


def test_msprime_detects_swapped_migration():
    """The msprime comparison has power: the IM model with its two migration rates swapped
    (the direction convention reversed) is rejected by the same simulations."""
    g, samples = dm.isolation_migration()
    T, S = simulate(g, samples, seed=MSPRIME_MODELS["isolation_migration"][1])
    swapped, _ = dm.isolation_migration(m_AB=3e-4, m_BA=1e-3)
    wrong = demography.from_demes(swapped, samples=samples).expected_sfs()
    assert np.max(np.abs(z_scores(S, wrong))) > 5


# ---------------------------------------------------------------------------
# 3. moments
# ---------------------------------------------------------------------------


def moments_sfs(g, samples, dt_fac=None, project_from=None):
    """moments' expected SFS with u = 1 per generation (branch lengths in generations).

    `dt_fac`: moments' time-step factor (``Spectrum.integrate``'s ``dt_fac``, default 0.02,
    which ``moments.Demes.SFS`` does not expose; set here by wrapping ``integrate``).
    `project_from`: integrate these (larger) sample sizes and project down to `samples`."""
    moments = pytest.importorskip("moments")
    sizes = list(samples.values()) if project_from is None else list(project_from)
    with pytest.MonkeyPatch.context() as mp:
        if dt_fac is not None:
            integrate = moments.Spectrum.integrate

            def integrate_with_step(self, *args, **kwargs):
                kwargs.setdefault("dt_fac", dt_fac)
                return integrate(self, *args, **kwargs)

            mp.setattr(moments.Spectrum, "integrate", integrate_with_step)
        fs = moments.Demes.SFS(g, sampled_demes=list(samples), sample_sizes=sizes, u=1.0)
    if project_from is not None:
        fs = fs.project(list(samples.values()))
    return np.asarray(fs)


def max_rel(ref, ours):
    """Largest relative difference over the SFS entries phasic gives as non-zero (moments
    masks the corners)."""
    cells = ours > 0
    return float(np.max(np.abs(ref[cells] / ours[cells] - 1)))


def test_moments_constant_size_exact():
    """moments' equilibrium SFS is solved exactly (no time stepping): machine precision."""
    g, samples = dm.constant(N=1000, n=10)
    ours = demography.from_demes(g, samples=samples).expected_sfs()
    assert max_rel(moments_sfs(g, samples), ours) < 1e-12


@pytest.mark.parametrize("name", ["three_epoch", "split", "pulse", "admixture"])
def test_moments_without_migration(name):
    """Piecewise-constant sizes, splits, a pulse, two-ancestor admixture: moments' only error
    is its time step. At its default step the difference is ~1e-5; it falls by the square of
    the step (Crank-Nicolson): below 1e-6 at dt_fac = 0.001."""
    g, samples = getattr(dm, name)()
    ours = demography.from_demes(g, samples=samples).expected_sfs()
    coarse = max_rel(moments_sfs(g, samples, dt_fac=0.02), ours)
    fine = max_rel(moments_sfs(g, samples, dt_fac=0.001), ours)
    assert fine < 1e-6, (coarse, fine)
    # moments converges to phasic: a 20x smaller step, a >= 50x smaller difference (400x
    # for a pure second-order error) until both meet at ~1e-8
    assert fine < max(coarse / 50, 5e-8), (coarse, fine)


def test_moments_time_units_years():
    """The split model with its times in years (generation time 25): phasic's branch lengths
    are in years, moments' SFS in generations (its u is per generation)."""
    g, samples = dm.split(time_units="years", scale=25.0)
    ours = demography.from_demes(g, samples=samples).expected_sfs() / 25.0
    assert max_rel(moments_sfs(g, samples, dt_fac=0.001), ours) < 1e-6


@pytest.mark.parametrize("name", ["growth", "decline", "split_growth"])
def test_moments_exponential_sizes(name):
    """Exponential size change: phasic uses constant pieces of at most exp(growth_tolerance)
    size change each (phasic.demography._demes); moments integrates the exponential itself.
    phasic's piece error is second order in the tolerance: 6e-7 (growth), 6e-6 (decline),
    5e-7 (split_growth) at the default 0.01, ~100x less at 0.001, where phasic and moments
    (step 0.0005) agree to below 1e-7 (measured 8e-10, 6e-8, 2e-8)."""
    g, samples = getattr(dm, name)()
    ref = moments_sfs(g, samples, dt_fac=0.0005)
    default = demography.from_demes(g, samples=samples).expected_sfs()
    fine = demography.from_demes(g, samples=samples, growth_tolerance=1e-3).expected_sfs()
    err_default, err_fine = max_rel(ref, default), max_rel(ref, fine)
    assert err_fine < 1e-7, (err_default, err_fine)
    assert err_default < 2e-5, (err_default, err_fine)
    assert err_default > 10 * err_fine, (err_default, err_fine)  # the default's error is phasic's pieces


def test_moments_with_migration():
    """Migration: moments closes its moment equations with a jackknife, whose error is
    large at small sample sizes. The direct 3+3 SFS differs from phasic by ~2%; integrating
    48+48 and projecting down to 3+3 (exact hypergeometric sampling) brings moments within
    ~1e-4 of phasic. msprime sides with phasic (test_against_msprime)."""
    g, samples = dm.isolation_migration()
    ours = demography.from_demes(g, samples=samples).expected_sfs()
    direct = max_rel(moments_sfs(g, samples), ours)
    projected = max_rel(moments_sfs(g, samples, project_from=(48, 48)), ours)
    assert direct < 0.05, direct
    assert projected < 5e-4, projected
    assert projected < direct / 10, (direct, projected)


# ---------------------------------------------------------------------------
# 4. Epochs on a user's callback against a dense reference
# ---------------------------------------------------------------------------

#: theta = [pair rate in island 1, pair rate in island 2, move 1 -> 2 per lineage, move 2 -> 1]
ISLAND_IPV = [[[3, 2], 0.6], [[1, 4], 0.4]]


def island_transitions(state):
    """Two islands, lineage counts (a, b): coalescence within islands, moves between them;
    rates as coefficient lists over theta (one graph serves every epoch)."""
    a, b = int(state[0]), int(state[1])
    if a + b <= 1:
        return []
    out = []
    if a >= 2:
        out.append([[a - 1, b], [a * (a - 1) / 2, 0.0, 0.0, 0.0]])
    if b >= 2:
        out.append([[a, b - 1], [0.0, b * (b - 1) / 2, 0.0, 0.0]])
    if a >= 1:
        out.append([[a - 1, b + 1], [0.0, 0.0, float(a), 0.0]])
    if b >= 1:
        out.append([[a + 1, b - 1], [0.0, 0.0, 0.0, float(b)]])
    return out


island = with_ipv(ISLAND_IPV)(island_transitions)


def pulse_map(src, prob):
    """Each lineage in island `src` moves to the other with probability `prob` (binomial)."""

    def spec(state):
        s = [int(x) for x in state]
        c = s[src]
        out = []
        for k in range(c + 1):
            t = list(s)
            t[src] -= k
            t[1 - src] += k
            out.append((t, comb(c, k) * prob**k * (1 - prob) ** (c - k)))
        return out

    return spec


BREAKS = [0.3, 0.8, 1.5]
THETAS = [
    [1.0, 1.0, 0.5, 0.2],
    [20.0, 2.0, 0.5, 0.2],  # a bottleneck in island 1
    [1.0, 1.0, 0.0, 0.0],  # isolated islands (the move edges at rate 0)
    [0.7, 1.3, 0.3, 0.6],
]
MAPS = [pulse_map(1, 0.35), None, pulse_map(0, 0.5)]


class DenseIslands:
    """The schedule's reference: transient states by breadth-first search over
    island_transitions, sub-generators S_k, p_{k+1} = p_k expm(S_k dt_k) M_k, and the
    integrals int_0^h u^j expm(S u) du (j = 0, 1, 2) from one expm of a Van Loan block
    matrix; the last epoch by (-S)^-1."""

    def __init__(self):
        states, seen, queue = [], set(), [tuple(s) for s, _ in ISLAND_IPV]
        while queue:
            s = queue.pop(0)
            if s in seen or sum(s) <= 1:
                continue
            seen.add(s)
            states.append(s)
            queue.extend(tuple(t) for t, _ in island_transitions(s))
        self.states = states
        self.index = {s: i for i, s in enumerate(states)}
        n = len(states)
        self.alpha = np.zeros(n)
        for s, p in ISLAND_IPV:
            self.alpha[self.index[tuple(s)]] += p
        self.S = []
        for theta in THETAS:
            S = np.zeros((n, n))
            for i, s in enumerate(states):
                for t, coef in island_transitions(s):
                    rate = float(np.dot(coef, theta))
                    S[i, i] -= rate
                    if tuple(t) in self.index:
                        S[i, self.index[tuple(t)]] += rate
            self.S.append(S)
        self.M = []
        for spec in MAPS:
            M = np.eye(n)
            if spec is not None:
                M = np.zeros((n, n))
                for i, s in enumerate(states):
                    for t, p in spec(s):
                        M[i, self.index[tuple(t)]] += p  # moves keep the lineage count: transient
            self.M.append(M)
        self.starts = [0.0, *BREAKS]
        self.p = [self.alpha]
        self.J = []  # per finite epoch: [J_0, J_1, J_2]
        for k, h in enumerate(np.diff(self.starts)):
            S = self.S[k]
            Z, I_ = np.zeros((n, n)), np.eye(n)
            A = np.block([[S, I_, Z, Z], [Z, Z, I_, Z], [Z, Z, Z, I_], [Z, Z, Z, Z]])
            E = scipy.linalg.expm(A * h)
            B1, B2, B3 = E[:n, n : 2 * n], E[:n, 2 * n : 3 * n], E[:n, 3 * n :]
            # B_j = int_0^h expm(S u) (h - u)^(j-1) / (j-1)! du
            self.J.append([B1, h * B1 - B2, h * h * B1 - 2 * h * B2 + 2 * B3])
            self.p.append(self.p[-1] @ E[:n, :n] @ self.M[k])
        self.U = np.linalg.inv(-self.S[-1])

    def sojourn(self):
        return sum(p @ J[0] for p, J in zip(self.p, self.J)) + self.p[-1] @ self.U

    def moments(self, power):
        one = np.ones(len(self.states))
        out = []
        for m in range(1, power + 1):
            total = 0.0
            for a, p, J in zip(self.starts, self.p, self.J):  # int_a^(a+h) t^(m-1) P(T > t) dt
                total += sum(comb(m - 1, i) * a ** (m - 1 - i) * (p @ J[i] @ one) for i in range(m))
            a, p = self.starts[-1], self.p[-1]
            x = one.copy()
            for i in range(m):  # int_a^inf t^(m-1) p expm(S (t - a)) 1 dt, i! p U^(i+1) 1
                x = self.U @ x
                total += comb(m - 1, i) * a ** (m - 1 - i) * math.factorial(i) * (p @ x)
            out.append(m * total)
        return out

    def distribution(self, t):
        one = np.ones(len(self.states))
        k = int(np.searchsorted(self.starts, t, side="right")) - 1
        P = self.p[k] @ scipy.linalg.expm(self.S[k] * (t - self.starts[k]))
        return float(P @ (-self.S[k] @ one)), 1.0 - float(P @ one)


def vertex_positions(g, ref):
    """Reference index of each of the graph's vertices (-1: start or absorbing)."""
    return np.array([ref.index.get(tuple(int(x) for x in s), -1) for s in np.asarray(g.states())])


@pytest.fixture(scope="module")
def islands():
    g = Graph(island)
    return g, Epochs(g, BREAKS, THETAS, MAPS), DenseIslands()


def test_epochs_expectation_and_moments(islands):
    g, e, ref = islands
    m = ref.moments(3)
    assert e.expectation() == pytest.approx(m[0], rel=1e-8)
    np.testing.assert_allclose(e.moments(3), m, rtol=1e-8)
    assert e.variance() == pytest.approx(m[1] - m[0] ** 2, rel=1e-8)


def test_epochs_sojourn_and_rewards(islands):
    g, e, ref = islands
    pos = vertex_positions(g, ref)
    assert sorted(pos[pos >= 0].tolist()) == list(range(len(ref.states)))  # same transient states
    soj_ref = ref.sojourn()
    soj = e.sojourn()
    np.testing.assert_allclose(soj[pos >= 0], soj_ref[pos[pos >= 0]], rtol=1e-8, atol=1e-12)
    assert np.all(soj[pos < 0] == 0)
    r_ref = np.random.default_rng(5).uniform(0.5, 3.0, len(ref.states))
    r = np.where(pos >= 0, r_ref[np.maximum(pos, 0)], 7.0)  # junk on the start and absorbing vertices
    assert e.expected_rewards(r) == pytest.approx(float(soj_ref @ r_ref), rel=1e-8)


def test_epochs_distribution(islands):
    g, e, ref = islands
    t = np.array([2.5, 0.05, 0.3, 0.55, 0.8, 1.2, 1.5, 6.0, 15.0])  # unsorted; breakpoints included
    pdf_ref, cdf_ref = np.array([ref.distribution(x) for x in t]).T
    np.testing.assert_allclose(e.cdf(t), cdf_ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(e.pdf(t), pdf_ref, rtol=0, atol=1e-9)


def test_epochs_matrix_maps_match_callables(islands):
    """The same maps as (V, V) arrays over the graph's vertices give the same results."""
    g, e, ref = islands
    states = np.asarray(g.states())
    lookup = {tuple(int(x) for x in s): v for v, s in enumerate(states) if v}
    V = len(states)
    mats = []
    for spec in MAPS:
        if spec is None:
            mats.append(None)
            continue
        M = np.zeros((V, V))
        M[0, 0] = 1.0
        for v in range(1, V):
            for t, p in spec(states[v]):
                M[v, lookup[tuple(t)]] += p
        mats.append(M)
    e2 = Epochs(g, BREAKS, THETAS, mats)
    assert e2.expectation() == pytest.approx(e.expectation(), rel=1e-12)
    np.testing.assert_allclose(e2.moments(3), e.moments(3), rtol=1e-12)
    t = np.array([0.1, 0.9, 3.0])
    np.testing.assert_allclose(e2.cdf(t), e.cdf(t), rtol=0, atol=1e-14)
