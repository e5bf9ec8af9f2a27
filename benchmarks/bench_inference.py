"""Inference benchmark: end-to-end maximum likelihood of a Demes model from an observed SFS,
``phasic.inference.fit`` against ``moments.Demes.Inference.optimize``, in one run.

Two models, data simulated with msprime at known parameters (``sim_ancestry`` with
recombination on a long sequence, ``sim_mutations`` with a binary model, seeded; the site
SFS ``ts.allele_frequency_spectrum(mode="site", polarised=True, span_normalise=False)``, with
one sample set per deme for the joint SFS):

(a) a split of X (10,000, fixed) at T_split into A and B with migration A -> B only
    (asymmetric), 4 + 4 genomes; fitted: N_A, N_B, T_split, m;
(b) one deme whose size changes at T from N0 to N1, 20 genomes; fitted: N1, T, N0.

Both methods start from the same values (the Demes graph file) with the same options file
(moments' format: bounds, the places each parameter sets) and the same likelihood: Poisson
random field with the mutation rate x sequence length known (phasic: ``mutation_rate``,
``sequence_length``; moments: ``uL = mutation_rate x sequence_length``, with which
``optimize`` uses the Poisson ``moments.Inference.ll`` of ``moments.Demes.SFS(..., u=uL)``
instead of the multinomial). Both use L-BFGS-B in log-parameter space, moments with
finite-difference gradients (``method="lbfgsb"``, its ``epsilon=1e-2``), phasic with its exact
gradient (reverse mode through the epochs).

Table 1 (MLE), per model:

* ``moments``: ``optimize(graph.yaml, options.yaml, Spectrum, uL=, method="lbfgsb",
  output=tmp)``;
* ``cold``: ``inference.fit(...)`` on an empty store (a new ``PHASIC_CACHE_DIR`` each
  repetition): the first evaluation builds the graph and records the trace;
* ``warm``: the same call again on that store (graph and trace stored);
* ``cold/m``, ``warm/m``: phasic's time over moments' (the issue's targets: <= 2x cold,
  <= 1x warm);
* ``evals``: likelihood evaluations (moments' objective calls; phasic's
  ``FitResult.evaluations``: models evaluated, a value with its gradient counting one, and
  including the 2p gradients of the observed information that ``fit`` always computes for its
  standard errors; moments computes none);
* ``ll``: each method's estimate scored by phasic's exact model
  (``inference.loglik(..., params=estimate)``), and the estimates themselves.

Table 2 (evaluation throughput), warm store: one ``inference.loglik`` call (it reads the
options and data and loads the graph each time); then on one ``inference.likelihood`` object
(graph, trace, rewards and maps kept): one vector, ``batch`` of 32 vectors (one after another:
there is no vectorised replay of many epoch schedules), the value with its exact gradient
(``gradient``), and the value with a central-difference gradient (2p more evaluations), which
the exact one replaces.

The three fits take turns in every round so that they see the same machine load; times are
the best of a few rounds (``time.perf_counter``); expect 10-30 % noise on a shared machine.
``--profile`` adds a cProfile of one warm fit per model (top functions by own and cumulative
time).

Usage::

    python benchmarks/bench_inference.py              # both tables (~1-2 min)
    python benchmarks/bench_inference.py --quick      # fewer rounds
    python benchmarks/bench_inference.py --profile    # plus a profile of a warm fit
    python benchmarks/bench_inference.py --json FILE
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import io
import json
import math
import os
import pstats
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from timing import print_table  # noqa: E402

MU, LENGTH, RECOMB = 1e-8, 2e7, 1e-8

# Bounds are chosen so that exp(log(bound)) stays inside [lower, upper]: phasic's fit checks
# feasibility on exp of the log-space point, so a bound that does not round-trip makes the
# bound itself infeasible (see the notes in docs/performance.md, "Inference").
N_BOUNDS = {"lower_bound": 100, "upper_bound": 1e6}
T_BOUNDS = {"lower_bound": 10, "upper_bound": 5e5}
M_BOUNDS = {"lower_bound": 1e-6, "upper_bound": 0.02}


# ----------------------------------------------------------------------------- models
def split_mig(N_A=5000.0, N_B=2000.0, T_split=2000.0, m=5e-4):
    import demes

    b = demes.Builder(time_units="generations")
    b.add_deme("X", epochs=[dict(start_size=10000, end_time=T_split)])
    b.add_deme("A", ancestors=["X"], epochs=[dict(start_size=N_A)])
    b.add_deme("B", ancestors=["X"], epochs=[dict(start_size=N_B)])
    b.add_migration(source="A", dest="B", rate=m)
    return b.resolve()


SPLIT_OPTIONS = {
    "parameters": [
        {"name": "N_A", "values": [{"demes": {"A": {"epochs": {0: "start_size"}}}}], **N_BOUNDS},
        {"name": "N_B", "values": [{"demes": {"B": {"epochs": {0: "start_size"}}}}], **N_BOUNDS},
        {
            "name": "T_split",
            "values": [
                {"demes": {"X": {"epochs": {0: "end_time"}}}},
                {"demes": {"A": "start_time", "B": "start_time"}},
                {"migrations": {0: "start_time"}},
            ],
            **T_BOUNDS,
        },
        {"name": "m", "values": [{"migrations": {0: "rate"}}], **M_BOUNDS},
    ]
}


def size_change(N1=20000.0, T=1000.0, N0=5000.0):
    import demes

    b = demes.Builder(time_units="generations")
    b.add_deme("A", epochs=[dict(start_size=N0, end_time=T), dict(start_size=N1)])
    return b.resolve()


SIZE_OPTIONS = {
    "parameters": [
        {"name": "N1", "values": [{"demes": {"A": {"epochs": {1: "start_size"}}}}], **N_BOUNDS},
        {"name": "T", "values": [{"demes": {"A": {"epochs": {0: "end_time"}}}}], **T_BOUNDS},
        {"name": "N0", "values": [{"demes": {"A": {"epochs": {0: "start_size"}}}}], **N_BOUNDS},
    ]
}

CASES = [
    # label, model, options, samples, truth, start, seed
    (
        "(a) split+mig 4+4",
        split_mig,
        SPLIT_OPTIONS,
        {"A": 4, "B": 4},
        dict(N_A=5000.0, N_B=2000.0, T_split=2000.0, m=5e-4),
        dict(N_A=3000.0, N_B=3000.0, T_split=1000.0, m=1e-4),
        1,
    ),
    (
        "(b) size change n=20",
        size_change,
        SIZE_OPTIONS,
        {"A": 20},
        dict(N1=20000.0, T=1000.0, N0=5000.0),
        dict(N1=10000.0, T=3000.0, N0=10000.0),
        3,
    ),
]


# ------------------------------------------------------------------------------ helpers
def simulate(model, truth, samples, seed, length=LENGTH):
    """The observed site SFS (joint over the sampled demes, in the order of `samples`)."""
    import msprime

    ts = msprime.sim_ancestry(
        samples=[msprime.SampleSet(n, population=d, ploidy=1) for d, n in samples.items()],
        demography=msprime.Demography.from_demes(model(**truth)),
        ploidy=2,
        sequence_length=length,
        recombination_rate=RECOMB,
        random_seed=seed,
    )
    ts = msprime.sim_mutations(
        ts, rate=MU, random_seed=seed + 1, model=msprime.BinaryMutationModel(), discrete_genome=False
    )
    ids = {p.metadata["name"]: p.id for p in ts.populations()}
    sets = [ts.samples(population=ids[d]) for d in samples]
    return np.asarray(
        ts.allele_frequency_spectrum(sample_sets=sets, mode="site", polarised=True, span_normalise=False), float
    )


def moments_fit(graph_file, options_file, fs, out_file, length=LENGTH):
    """(names, estimates, objective calls) of moments' optimize, Poisson with uL = mu x L."""
    import moments.Demes.Inference as MI

    MI._counter = 0
    with warnings.catch_warnings():  # moments passes iprint to scipy (deprecated)
        warnings.simplefilter("ignore", DeprecationWarning)
        names, x, _ = MI.optimize(
            graph_file,
            options_file,
            fs,
            uL=MU * length,
            method="lbfgsb",
            output=out_file,
            overwrite=True,
            output_stream=io.StringIO(),
        )
    return dict(zip(names, map(float, x))), MI._counter


def phasic_fit(start, options, data, samples, length=LENGTH):
    from phasic import inference

    return inference.fit(start, options, data, samples=samples, mutation_rate=MU, sequence_length=length)


def phasic_ll(start, options, data, samples, params, length=LENGTH):
    from phasic import inference

    return inference.loglik(
        start, options, data, samples=samples, params=params, mutation_rate=MU, sequence_length=length
    )


def moments_options(options):
    """The options without the places that only a resolved graph holds (children's and
    migrations' ``start_time``): moments reads the simplified Demes file, where those follow
    from the ancestor's ``end_time``; phasic starts from the resolved graph, where they are
    explicit and must move with the split time."""

    def keep(place):
        return "start_time" not in repr(place)

    out = copy.deepcopy(options)
    for p in out["parameters"]:
        p["values"] = [v for v in p["values"] if keep(v)]
    return out


def write_inputs(tmp, start_graph, options):
    """The (simplified) Demes file and the options file for moments."""
    import demes
    import yaml

    g_file, o_file = os.path.join(tmp, "graph.yaml"), os.path.join(tmp, "options.yaml")
    demes.dump(start_graph, g_file)
    with open(o_file, "w") as fh:
        yaml.safe_dump(moments_options(options), fh)
    return g_file, o_file


def fmt_t(x):
    return "-" if x is None else f"{x * 1e3:.0f}" if x >= 0.1 else f"{x * 1e3:.1f}"


def fmt_r(x):
    return "-" if x is None or not math.isfinite(x) else f"{x:.1f}x" if x >= 1 else f"{x:.2f}x"


def fmt_p(params):
    return ", ".join(f"{k}={v:.3g}" for k, v in params.items())


def fresh_store(root):
    d = tempfile.mkdtemp(prefix="store-", dir=root)
    os.environ["PHASIC_CACHE_DIR"] = d
    return d


# ------------------------------------------------------------------------------ run
def bench_case(case, rounds, tmp, profile=False):
    import moments

    label, model, options, samples, truth, start_vals, seed = case
    data = simulate(model, truth, samples, seed)
    start = model(**start_vals)
    g_file, o_file = write_inputs(tmp, start, options)
    fs = moments.Spectrum(data, pop_ids=list(samples))
    out_file = os.path.join(tmp, "moments-out.yaml")

    best = {"moments": math.inf, "cold": math.inf, "warm": math.inf}
    for _ in range(rounds):
        t0 = time.perf_counter()
        m_params, m_evals = moments_fit(g_file, o_file, fs, out_file)
        best["moments"] = min(best["moments"], time.perf_counter() - t0)
        store = fresh_store(tmp)
        t0 = time.perf_counter()
        phasic_fit(start, options, data, samples)
        best["cold"] = min(best["cold"], time.perf_counter() - t0)
        t0 = time.perf_counter()
        r = phasic_fit(start, options, data, samples)
        best["warm"] = min(best["warm"], time.perf_counter() - t0)
        shutil.rmtree(store, ignore_errors=True)

    store = fresh_store(tmp)
    phasic_fit(start, options, data, samples)  # the store now holds graph and trace
    ll_phasic = phasic_ll(start, options, data, samples, r.params)
    ll_moments = phasic_ll(start, options, data, samples, m_params)
    ll_truth = phasic_ll(start, options, data, samples, truth)

    # throughput, warm: one vector by inference.loglik (reads the inputs and loads the graph
    # each call); then on one inference.likelihood object: one vector, a batch of 32, the
    # exact gradient, and the central-difference gradient it replaces (2p + 1 evaluations)
    rng = np.random.default_rng(0)
    batch = [{k: v * math.exp(rng.normal(0, 0.1)) for k, v in r.params.items()} for _ in range(32)]
    t_call = min(_time(lambda: phasic_ll(start, options, data, samples, r.params)) for _ in range(10))
    from phasic import inference

    lik = inference.likelihood(start, options, data, samples=samples, mutation_rate=MU, sequence_length=LENGTH)
    x = np.array([r.params[n] for n in lik.names])
    rows = np.array([[p[n] for n in lik.names] for p in batch])
    lik(x)
    t_one = min(_time(lambda: lik(x)) for _ in range(20))
    t_batch = min(_time(lambda: lik.batch(rows)) for _ in range(3))
    t_grad = min(_time(lambda: lik.gradient(x)) for _ in range(10))

    def central():
        for i in range(x.size):
            for s in (1.0, -1.0):
                y = x.copy()
                y[i] *= 1 + s * 1e-6
                lik(y)

    t_fd = min(_time(lambda: (lik(x), central())) for _ in range(5))

    prof = None
    if profile:
        pr = cProfile.Profile()
        pr.enable()
        phasic_fit(start, options, data, samples)
        pr.disable()
        s = io.StringIO()
        st = pstats.Stats(pr, stream=s)
        st.sort_stats("cumulative").print_stats(25)
        st.sort_stats("tottime").print_stats(15)
        prof = s.getvalue()
    shutil.rmtree(store, ignore_errors=True)

    return {
        "label": label,
        "sites": float(data.sum()),
        "moments_s": best["moments"],
        "cold_s": best["cold"],
        "warm_s": best["warm"],
        "moments_evals": m_evals,
        "phasic_evals": r.evaluations,
        "phasic_params": r.params,
        "moments_params": m_params,
        "truth": truth,
        "ll_phasic": ll_phasic,
        "ll_moments": ll_moments,
        "ll_truth": ll_truth,
        "eval_call_s": t_call,
        "eval_one_s": t_one,
        "eval_batch32_s": t_batch,
        "eval_grad_s": t_grad,
        "eval_fd_s": t_fd,
        "n_params": int(x.size),
        "profile": prof,
    }


def _time(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds")
    ap.add_argument("--profile", action="store_true", help="cProfile one warm fit per model")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = ap.parse_args(argv)
    rounds = 2 if args.quick else 3
    tmp = tempfile.mkdtemp(prefix="phasic-bench-inference-")
    old = os.environ.get("PHASIC_CACHE_DIR")
    try:
        results = [bench_case(c, rounds, tmp, args.profile) for c in CASES]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is None:
            os.environ.pop("PHASIC_CACHE_DIR", None)
        else:
            os.environ["PHASIC_CACHE_DIR"] = old

    print(f"phasic.inference.fit vs moments.Demes.Inference.optimize (best of {rounds}; times in ms)")
    print_table(
        "MLE time (Poisson, mu x L known; L-BFGS-B in log space, same start and bounds)",
        ["model", "sites", "moments", "cold", "warm", "cold/m", "warm/m", "evals m", "evals p"],
        [
            [
                r["label"],
                f"{r['sites']:.0f}",
                fmt_t(r["moments_s"]),
                fmt_t(r["cold_s"]),
                fmt_t(r["warm_s"]),
                fmt_r(r["cold_s"] / r["moments_s"]),
                fmt_r(r["warm_s"] / r["moments_s"]),
                r["moments_evals"],
                r["phasic_evals"],
            ]
            for r in results
        ],
    )
    print_table(
        "Estimates and their log-likelihood under phasic's exact model",
        ["model", "who", "loglik", "estimates"],
        [
            row
            for r in results
            for row in (
                [r["label"], "truth", f"{r['ll_truth']:.2f}", fmt_p(r["truth"])],
                ["", "phasic", f"{r['ll_phasic']:.2f}", fmt_p(r["phasic_params"])],
                ["", "moments", f"{r['ll_moments']:.2f}", fmt_p(r["moments_params"])],
            )
        ],
    )
    print_table(
        "Likelihood evaluations, warm store (ms; loglik(): one inference.loglik call; the others on one "
        "inference.likelihood object: one vector, a batch of 32, value + exact gradient, value + central "
        "differences)",
        ["model", "loglik()", "one", "one: /s", "batch 32", "vectors/s", "grad", "central", "central/grad"],
        [
            [
                r["label"],
                f"{r['eval_call_s'] * 1e3:.2f}",
                f"{r['eval_one_s'] * 1e3:.2f}",
                f"{1 / r['eval_one_s']:.0f}",
                f"{r['eval_batch32_s'] * 1e3:.1f}",
                f"{32 / r['eval_batch32_s']:.0f}",
                f"{r['eval_grad_s'] * 1e3:.2f}",
                f"{r['eval_fd_s'] * 1e3:.2f}",
                fmt_r(r["eval_fd_s"] / r["eval_grad_s"]),
            ]
            for r in results
        ],
    )
    for r in results:
        cold, warm = r["cold_s"] / r["moments_s"], r["warm_s"] / r["moments_s"]
        print(
            f"{r['label']}: target cold <= 2x moments: {'met' if cold <= 2 else 'MISSED'} ({fmt_r(cold)}); "
            f"warm <= 1x: {'met' if warm <= 1 else 'MISSED'} ({fmt_r(warm)}); "
            f"MLE not below moments' estimate: {'yes' if r['ll_phasic'] >= r['ll_moments'] else 'NO'}"
        )
    for r in results:
        if r["profile"]:
            print(f"\ncProfile of one warm fit, {r['label']}\n{r['profile']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([{k: v for k, v in r.items() if k != "profile"} for r in results], fh, indent=1)


if __name__ == "__main__":
    sys.exit(main())
