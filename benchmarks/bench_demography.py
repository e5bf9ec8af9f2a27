"""Demography benchmark: the SFS and the T_MRCA of Demes models (``phasic.demography``)
against moments, phasegen and dense scipy, in one run, with the ratios.

Three tables:

1. **SFS vs moments** (``moments.Demes.SFS(g, sampled_demes, sample_sizes, u=1.0)``, branch
   lengths in generations like ``expected_sfs()``) on (a) a two-deme split with asymmetric
   migration (IM), 4+4 genomes; (b) a split without migration, one deme growing exponentially,
   4+4; (c) one deme with a bottleneck and exponential growth, n = 10, 30.

   * ``cold``: ``from_demes(g, samples, cache=True).expected_sfs()`` on an empty store
     (a new ``PHASIC_CACHE_DIR`` per repetition): build through the callback, store, record
     the elimination trace, evaluate;
   * ``warm``: the same call after the store holds the topology, with NEW sizes, times and
     migration rates each repetition (the graph is a store hit, served by its memory layer;
     the store holds the graph only, so the elimination trace is recorded again);
   * ``reuse``: no public API builds a model for new parameters on an existing model's graph;
     this row does it through the private ``phasic.demography._demes.compile_plan`` and
     ``DemographicModel(m.graph, plan, ...)`` (no store lookup; the graph keeps the trace it
     recorded), to show what a public "new parameters" method could cost;
   * ``diff``: max relative difference of the SFS (entries that are not corners) from moments
     at the same sample size, and from moments at 20 (+20) genomes projected down
     (``proj``): moments closes its moment equations with a jackknife when there is
     migration, which is inexact at small samples; phasic's SFS is exact up to the piecewise
     constant treatment of growth (``growth_tolerance=0.01``).

   moments, warm and reuse take turns in every round (and so do phasic and moments in table 2),
   so that they see the same machine load.

2. **Single-deme SFS through lineage counting** (``from_demes(g, {"A": n})``: n + 1 states and
   the Polanski-Kimmel weights; no cache), n = 30, 50, 100, 200, one deme whose size changes
   from 10,000 to 1,000 at 1,000 generations, against moments and, at n = 30, against
   phasegen's default SFS (``phasegen.Coalescent(n, demography=phasegen.Demography(pop_sizes=
   {"pop_0": {0: 2000, 1000: 20000}})).sfs.mean``: block counting, p(n) states; sizes are
   2N so that the pair rate is 1/(2N) per generation). phasegen runs in its own venv
   (``benchmarks/.phasegen-venv``, git-ignored; ``--setup-phasegen`` creates it with
   ``pip install phasegen``) in a subprocess; its numba kernels are compiled (and cached on
   disk) by an untimed first call.

3. **Stiffness**: ``Graph.pdf`` at 100 points ``t_j = 4 j / 100`` (coalescent units) of a
   Kingman coalescent from n = 1000 lineages (``Graph(lineage_counting, ipv=[1000])``,
   ``update_weights([1.0])``; largest rate C(1000, 2) = 499,500) by adaptive uniformisation,
   against dense ``scipy.linalg.expm`` on the 999 x 999 sub-intensity matrix (one expm for
   the grid's one distinct step, then 100 vector products; the error column is the max
   absolute pdf difference) and against the previous, non-adaptive uniformisation
   (``phasic._core.uniformisation``: one rate for the whole graph, so its step count is
   about largest rate x time, ~2e6 here; at ~0.1 ms per step that is minutes, so by default
   it runs to t = 0.4 and its time is scaled by the step count to t = 4, marked ``~``;
   ``--full`` runs the whole grid).

Timings are the best of a few repetitions (``time.perf_counter``); the machine is shared, so
expect 10-30 % noise on small numbers. ``PHASIC_CACHE_DIR`` is set to temporary directories.

Usage::

    python benchmarks/bench_demography.py                 # all three tables (~1-2 min)
    python benchmarks/bench_demography.py --quick         # fewer repetitions, no n=200
    python benchmarks/bench_demography.py --full          # the previous uniformisation on the whole grid
    python benchmarks/bench_demography.py --only sfs      # one table (sfs, lineages, stiff); --json FILE
    python benchmarks/bench_demography.py --no-phasegen   # skip the phasegen subprocess
    python benchmarks/bench_demography.py --setup-phasegen  # create benchmarks/.phasegen-venv
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from timing import best_of, print_table  # noqa: E402

PHASEGEN_VENV = HERE / ".phasegen-venv"
PHASEGEN_PY = PHASEGEN_VENV / "bin" / "python"
LINEAGE_SIZES = {"quick": [30, 50, 100], "default": [30, 50, 100, 200]}
STIFF_N, STIFF_T, STIFF_POINTS = 1000, 4.0, 100
OLD_TMAX = 0.4  # the previous uniformisation runs to here unless --full


# ----------------------------------------------------------------------------- models
def im_model(k=0):
    """(a) Split at T into A and B with asymmetric migration; `k` scales every parameter."""
    import demes

    f = 1.0 + 0.07 * k
    b = demes.Builder(time_units="generations")
    b.add_deme("X", epochs=[dict(start_size=10000 * f, end_time=2000 / f)])
    b.add_deme("A", ancestors=["X"], epochs=[dict(start_size=5000 / f)])
    b.add_deme("B", ancestors=["X"], epochs=[dict(start_size=2000 * f)])
    b.add_migration(source="A", dest="B", rate=1e-4 * f)
    b.add_migration(source="B", dest="A", rate=5e-4 / f)
    return b.resolve()


def split_growth_model(k=0):
    """(b) Split at T without migration; A grows exponentially from 1,000 to 10,000."""
    import demes

    f = 1.0 + 0.07 * k
    b = demes.Builder(time_units="generations")
    b.add_deme("X", epochs=[dict(start_size=10000 * f, end_time=1500 / f)])
    b.add_deme("A", ancestors=["X"], epochs=[dict(start_size=1000 / f, end_size=10000 * f)])
    b.add_deme("B", ancestors=["X"], epochs=[dict(start_size=3000 * f)])
    return b.resolve()


def bottleneck_growth_model(k=0):
    """(c) One deme: 10,000; a bottleneck of 500 from 2,000 to 1,000 generations ago; then
    exponential growth from 2,000 to 20,000."""
    import demes

    f = 1.0 + 0.07 * k
    b = demes.Builder(time_units="generations")
    b.add_deme(
        "A",
        epochs=[
            dict(start_size=10000 * f, end_time=2000 * f),
            dict(start_size=500 / f, end_time=1000 * f),
            dict(start_size=2000 / f, end_size=20000 * f, end_time=0),
        ],
    )
    return b.resolve()


def size_change_model():
    """Section 2: one deme of 1,000 for the last 1,000 generations, 10,000 before."""
    import demes

    b = demes.Builder(time_units="generations")
    b.add_deme("A", epochs=[dict(start_size=10000, end_time=1000), dict(start_size=1000, end_time=0)])
    return b.resolve()


SFS_CASES = [
    ("(a) IM, asym. migration", im_model, {"A": 4, "B": 4}),
    ("(b) split, exp. growth", split_growth_model, {"A": 4, "B": 4}),
    ("(c) bottleneck+growth", bottleneck_growth_model, {"A": 10}),
    ("(c) bottleneck+growth", bottleneck_growth_model, {"A": 30}),
]


# ------------------------------------------------------------------------------ helpers
def moments_sfs(g, samples):
    import moments

    fs = moments.Demes.SFS(g, sampled_demes=list(samples), sample_sizes=list(samples.values()), u=1.0)
    return np.asarray(fs.data)


def sfs_diff(ours, ref):
    """Max relative difference over the cells that are not corners (and not 0 in `ref`)."""
    ours, ref = np.asarray(ours, float), np.asarray(ref, float)
    mask = np.ones(ref.shape, bool)
    mask[(0,) * ref.ndim] = False
    mask[tuple(s - 1 for s in ref.shape)] = False
    mask &= ref != 0
    return float(np.max(np.abs(ours[mask] - ref[mask]) / np.abs(ref[mask])))


def fresh_store():
    """Points the store at a new, empty temporary directory; returns it."""
    d = tempfile.mkdtemp(prefix="phasic-bench-demog-")
    os.environ["PHASIC_CACHE_DIR"] = d
    return d


def fmt_t(x):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    return f"{x * 1e3:.2f}" if x < 10 else f"{x * 1e3:.0f}"


def fmt_r(x):
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.0f}x" if x >= 100 else f"{x:.1f}x" if x >= 1 else f"{x:.2f}x"


def fmt_e(x):
    return "-" if x is None else f"{x:.1e}"


# ------------------------------------------------------------------- 1. SFS vs moments
def interleaved(fns, reps, budget):
    """Best time of each of `fns` (name -> (fn, setup or None)), the functions taking turns in
    every round so that all of them see the same machine load. Returns (times, last results)."""
    best, out, spent = dict.fromkeys(fns, float("inf")), {}, 0.0
    for _ in range(reps):
        for key, (fn, setup) in fns.items():
            arg = setup() if setup else None
            t0 = time.perf_counter()
            res = fn(arg) if setup else fn()
            dt = time.perf_counter() - t0
            out[key] = res
            best[key], spent = min(best[key], dt), spent + dt
        if spent >= budget:
            break
    return best, out


def run_sfs_case(name, make, samples, reps):
    import moments

    from phasic.demography import DemographicModel, _demes, from_demes

    g0 = make(0)
    # a more accurate moments reference: 20 genomes per deme, projected down (untimed)
    big = {k: max(20, v) for k, v in samples.items()}
    fs = moments.Demes.SFS(g0, sampled_demes=list(big), sample_sizes=list(big.values()), u=1.0)
    ref_proj = np.asarray(fs.project(list(samples.values())).data) if big != samples else None

    # cold: an empty store every repetition (build, store, record the trace, evaluate)
    dirs = []

    def new_store():
        dirs.append(fresh_store())

    def cold(_):
        m = from_demes(g0, samples=samples, cache=True)
        return m, m.expected_sfs()

    t_cold, (m0, ours) = best_of(cold, setup=new_store, reps=max(2, reps // 2), budget=6.0)
    for d in dirs[:-1]:
        shutil.rmtree(d, ignore_errors=True)

    # moments, warm and reuse take turns; warm and reuse get new parameters every time
    ks = iter(range(1, 10_000))
    used = {}

    def new_params(which):
        def setup():
            k = next(ks)
            used[which] = k
            return make(k)

        return setup

    def warm(g):  # a fresh from_demes: the graph is a store hit
        return from_demes(g, samples=samples, cache=True).expected_sfs()

    def reuse(g):  # the cold model's graph, a new plan (private API)
        plan = _demes.compile_plan(g, samples, single_deme=m0.plan.single_deme)
        return DemographicModel(m0.graph, plan, samples, m0.state_space, g).expected_sfs()

    times, outs = interleaved(
        {
            "moments": (lambda: moments_sfs(g0, samples), None),
            "warm": (warm, new_params("warm")),
            "reuse": (reuse, new_params("reuse")),
        },
        reps,
        budget=6.0,
    )
    ref = outs["moments"]
    # the warm and reuse results against a model built without the store, same parameters
    check = max(
        sfs_diff(outs[key], from_demes(make(used[key]), samples=samples).expected_sfs()) for key in ("warm", "reuse")
    )
    shutil.rmtree(dirs[-1], ignore_errors=True)
    return dict(
        name=name,
        samples=samples,
        V=int(m0.graph.vertices_length()),
        epochs=len(m0.epochs.thetas),
        state_space=m0.state_space,
        moments=times["moments"],
        cold=t_cold,
        warm=times["warm"],
        reuse=times["reuse"],
        diff=sfs_diff(ours, ref),
        diff_proj=None if ref_proj is None else sfs_diff(ours, ref_proj),
        warm_check=check,
    )


def table_sfs(results):
    header = [
        "model",
        "samples",
        "space",
        "V",
        "epochs",
        "moments ms",
        "cold ms",
        "warm ms",
        "reuse ms",
        "warm/moments",
        "reuse/moments",
        "diff",
        "diff proj",
    ]
    rows = []
    for r in results:
        rows.append(
            [
                r["name"],
                "+".join(str(v) for v in r["samples"].values()),
                r["state_space"],
                r["V"],
                r["epochs"],
                fmt_t(r["moments"]),
                fmt_t(r["cold"]),
                fmt_t(r["warm"]),
                fmt_t(r["reuse"]),
                fmt_r(r["warm"] / r["moments"]),
                fmt_r(r["reuse"] / r["moments"]),
                fmt_e(r["diff"]),
                fmt_e(r["diff_proj"]),
            ]
        )
    print_table("1. Expected SFS: phasic (cold / warm / reuse) vs moments.Demes.SFS", header, rows)
    worst = max(r["warm_check"] for r in results)
    print(
        "   diff: vs moments at the same samples; diff proj: vs moments at 20 (+20) projected down. warm and reuse "
        f"results vs the same parameters built without the store: max rel. diff {worst:.1e}"
    )


# ---------------------------------------------------------- 2. lineage-counting route
PHASEGEN_DRIVER = r"""
import json, sys, time
t0 = time.perf_counter()
import phasegen as pg
imp = time.perf_counter() - t0
cfg = json.loads(sys.argv[1])
def run(n):
    c = pg.Coalescent(n=n, demography=pg.Demography(pop_sizes={"pop_0": {0: 2000.0, 1000.0: 20000.0}}))
    return c.sfs.mean
for n in cfg["ns"]:
    t0 = time.perf_counter()
    run(n)  # numba kernels: compiled or loaded from numba's disk cache
    first = time.perf_counter() - t0
    best, spent = float("inf"), 0.0
    for _ in range(cfg["reps"]):
        t0 = time.perf_counter()
        s = run(n)
        dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
        if spent > 5.0:
            break
    print(json.dumps({"n": n, "best": best, "first": first, "import": imp, "sfs": [float(x) for x in s.data]}))
"""


def run_phasegen(ns, reps):
    if not PHASEGEN_PY.exists():
        return {n: {"error": f"{PHASEGEN_VENV.name} missing (run with --setup-phasegen)"} for n in ns}
    try:
        proc = subprocess.run(
            [str(PHASEGEN_PY), "-c", PHASEGEN_DRIVER, json.dumps({"ns": ns, "reps": reps})],
            capture_output=True,
            text=True,
            timeout=900,
        )
    except subprocess.TimeoutExpired:
        return {n: {"error": "timeout"} for n in ns}
    out = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            out[rec["n"]] = rec
    for n in ns:
        if n not in out:
            out[n] = {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:80]}
    return out


def run_lineages(ns, reps, phasegen_ns, with_phasegen):
    from phasic.demography import from_demes

    g = size_change_model()
    pg = run_phasegen(phasegen_ns, max(reps, 5)) if with_phasegen else {}
    rows = []
    for n in ns:
        samples = {"A": n}
        times, outs = interleaved(
            {
                "moments": (lambda: moments_sfs(g, samples), None),
                "ours": (lambda: from_demes(g, samples=samples).expected_sfs(), None),
            },
            reps,
            budget=4.0,
        )
        rec = dict(n=n, moments=times["moments"], ours=times["ours"], diff=sfs_diff(outs["ours"], outs["moments"]))
        p = pg.get(n)
        if p is not None:
            rec["phasegen"] = p.get("best")
            rec["phasegen_first"] = p.get("first")
            rec["phasegen_import"] = p.get("import")
            rec["phasegen_error"] = p.get("error")
            if "sfs" in p:
                rec["phasegen_diff"] = sfs_diff(outs["ours"], p["sfs"])
        rows.append(rec)
    return rows


def table_lineages(rows):
    header = ["n", "phasic ms", "moments ms", "moments/phasic", "phasegen ms", "phasegen/phasic", "diff", "diff pg"]
    out = []
    for r in rows:
        pg = r.get("phasegen")
        pg_s = fmt_t(pg) if pg is not None else (f"n/a: {r['phasegen_error']}" if r.get("phasegen_error") else "-")
        out.append(
            [
                r["n"],
                fmt_t(r["ours"]),
                fmt_t(r["moments"]),
                fmt_r(r["moments"] / r["ours"]),
                pg_s,
                fmt_r(pg / r["ours"]) if pg is not None else "-",
                fmt_e(r["diff"]),
                fmt_e(r.get("phasegen_diff")),
            ]
        )
    print_table("2. One-deme SFS via lineage counting (no cache; size 1,000 -> 10,000 at 1,000 gen.)", header, out)
    print(
        "   diff: max rel. difference of the SFS from moments' (same n); diff pg: from phasegen's. phasegen runs in its "
        "own process (not interleaved with the others)"
    )
    for r in rows:
        if r.get("phasegen_first") is not None:
            print(
                f"   phasegen n={r['n']}: import {r['phasegen_import']:.1f}s, first call (numba, disk-cached) "
                f"{r['phasegen_first']:.2f}s, then the best of fresh Coalescent objects above"
            )


# ------------------------------------------------------------------------ 3. stiffness
def dense_sub_intensity(g):
    indptr, target, w = g.edges()
    V = indptr.size - 1
    src = np.repeat(np.arange(V), np.diff(indptr))
    lam = np.bincount(src, weights=w, minlength=V)
    tv = np.flatnonzero(lam > 0)
    tv = tv[tv > 0]
    pos = np.full(V, -1)
    pos[tv] = np.arange(tv.size)
    start = src == 0
    alpha = np.zeros(tv.size)
    np.add.at(alpha, pos[target[start]], w[start])
    inner = (src > 0) & (pos[target] >= 0)
    S = np.zeros((tv.size, tv.size))
    np.add.at(S, (pos[src[inner]], pos[target[inner]]), w[inner])
    S[np.arange(tv.size), np.arange(tv.size)] -= lam[tv]
    return alpha, S


def run_stiff(reps, full=False):
    import scipy.linalg as sl

    import phasic
    from phasic import _core, _csr
    from phasic.demography import lineage_counting
    from phasic.distributions import initial_mass, propagate

    g = phasic.Graph(lineage_counting, ipv=[STIFF_N])
    g.update_weights([1.0])
    h = STIFF_T / STIFF_POINTS
    times = h * np.arange(1, STIFF_POINTS + 1)
    arrays, attrs = g.to_arrays()

    def fresh_graph():  # nothing cached from an earlier call (out-rates, ...)
        x = phasic.Graph.from_arrays(arrays, attrs)
        x.update_weights([1.0])
        return x

    t_ours, f = best_of(lambda x: x.pdf(times), setup=fresh_graph, reps=reps, budget=3.0)
    ll = _csr.of(g)
    indptr, target, w = g.edges()
    lam = _csr.out_rates(ll)
    _, _, _, _, st = propagate(ll, ll.w, lam, initial_mass(ll), float(times[-1]), times)

    alpha, S = dense_sub_intensity(g)
    s = -S.sum(axis=1)

    def dense():
        P = sl.expm(S * h)
        out = np.empty(STIFF_POINTS)
        a = alpha
        for j in range(STIFF_POINTS):
            a = a @ P
            out[j] = a @ s
        return out

    t_dense, fd = best_of(dense, reps=2, budget=5.0)
    # the product reference checked against direct expm(S t) at three times (untimed)
    check = max(abs(float(alpha @ sl.expm(S * times[j]) @ s) - fd[j]) for j in (9, 49, 99))

    L = float(lam.max())

    def old_steps(tmax):  # dist.hpp: stepped up to poisson_window's upper end for the largest time
        mu = L * tmax
        return int(math.ceil(mu + 12.0 * math.sqrt(mu) + 40.0))

    # the previous uniformisation: ~1e-4 s per step here, so the whole grid (2e6 steps) takes
    # minutes; by default it runs up to OLD_TMAX and the full time is extrapolated by steps
    sub = times if full else times[times <= OLD_TMAX + 1e-12]
    t_old, (f_old, _) = best_of(lambda: _core.uniformisation(indptr, target, w, lam, sub), reps=1)
    steps_sub, steps_all = old_steps(float(sub[-1])), old_steps(float(times[-1]))
    return dict(
        n=STIFF_N,
        V=int(g.vertices_length()),
        largest_rate=L,
        ours=t_ours,
        steps=int(st["steps"]),
        intervals=int(st["intervals"]),
        dense=t_dense,
        old=t_old * steps_all / steps_sub,
        old_measured=t_old,
        old_tmax=float(sub[-1]),
        old_estimated=sub.size < times.size,
        old_steps=steps_all,
        old_steps_run=steps_sub,
        err=float(np.max(np.abs(f - fd))),
        old_err=float(np.max(np.abs(f_old - fd[: sub.size]))),
        dense_check=float(check),
        pdf_max=float(np.max(fd)),
    )


def table_stiff(r):
    header = ["method", "ms", "/ adaptive", "steps", "max |pdf - dense|"]
    rows = [
        ["adaptive uniformisation (Graph.pdf)", fmt_t(r["ours"]), "1.0x", f"{r['steps']:,}", fmt_e(r["err"])],
        ["dense expm(S h) + 100 products", fmt_t(r["dense"]), fmt_r(r["dense"] / r["ours"]), "-", "(reference)"],
        [
            "previous uniformisation (_core.uniformisation)",
            ("~" if r["old_estimated"] else "") + fmt_t(r["old"]),
            fmt_r(r["old"] / r["ours"]),
            f"{r['old_steps']:,}",
            fmt_e(r["old_err"]),
        ],
    ]
    print_table(
        f"3. Kingman n={r['n']} ({r['V']} vertices, largest rate {r['largest_rate']:,.0f}): pdf at "
        f"{STIFF_POINTS} points to t={STIFF_T:g}",
        header,
        rows,
    )
    print(
        f"   step ratio previous/adaptive: {r['old_steps'] / max(r['steps'], 1):,.0f}x; dense reference vs direct "
        f"expm(S t) at 3 times: {r['dense_check']:.1e}; max pdf {r['pdf_max']:.3f}"
    )
    if r["old_estimated"]:
        print(
            f"   ~: previous uniformisation run to t={r['old_tmax']:g} ({r['old_steps_run']:,} steps, "
            f"{r['old_measured']:.1f}s) and scaled by steps to t={STIFF_T:g}; --full runs the whole grid"
        )


# ----------------------------------------------------------------------------- verdicts
def verdicts(sfs, lin, stiff):
    out = []
    for r in sfs:
        ratio = r["warm"] / r["moments"]
        tag = "+".join(str(v) for v in r["samples"].values())
        out.append(
            f"{'PASS' if ratio <= 2 else 'FAIL'}  warm within 2x of moments, {r['name']} {tag}: {ratio:.2f}x "
            f"(reuse {r['reuse'] / r['moments']:.2f}x)"
        )
    for r in lin:
        if r.get("phasegen") is not None:
            ok = r["ours"] <= r["phasegen"]
            out.append(
                f"{'PASS' if ok else 'FAIL'}  as fast as phasegen at n={r['n']}: phasegen/phasic "
                f"{r['phasegen'] / r['ours']:.2f}x"
            )
        if r["n"] >= 50:
            ok = r["ours"] <= r["moments"]
            out.append(
                f"{'PASS' if ok else 'FAIL'}  as fast as moments at n={r['n']}: moments/phasic "
                f"{r['moments'] / r['ours']:.2f}x"
            )
    if stiff:
        out.append(f"{'PASS' if stiff['err'] <= 1e-9 else 'FAIL'}  stiff pdf within 1e-9 of dense: {stiff['err']:.1e}")
    return out


def setup_phasegen():
    if not PHASEGEN_PY.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PHASEGEN_VENV)], check=True)
    subprocess.run([str(PHASEGEN_PY), "-m", "pip", "install", "-q", "phasegen"], check=True)
    subprocess.run([str(PHASEGEN_PY), "-c", "import phasegen; print('phasegen', phasegen.__version__)"], check=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, no n=200")
    ap.add_argument("--full", action="store_true", help="the previous uniformisation on the whole grid (minutes)")
    ap.add_argument("--no-phasegen", action="store_true", help="skip the phasegen subprocess")
    ap.add_argument("--setup-phasegen", action="store_true", help="create benchmarks/.phasegen-venv and exit")
    ap.add_argument("--only", choices=["sfs", "lineages", "stiff"], action="append", help="run only these tables")
    ap.add_argument("--json", help="also write all results to this file")
    a = ap.parse_args(argv)
    if a.setup_phasegen:
        setup_phasegen()
        return 0
    reps = 3 if a.quick else 5
    only = set(a.only or ["sfs", "lineages", "stiff"])
    base = os.environ.get("PHASIC_CACHE_DIR")
    t0 = time.perf_counter()
    import demes  # noqa: F401
    import moments  # noqa: F401

    import phasic  # noqa: F401

    print(f"# imports: {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
    sfs, lin, stiff = [], [], None
    try:
        if "sfs" in only:
            for name, make, samples in SFS_CASES:
                print(f"# sfs: {name} {samples}", file=sys.stderr, flush=True)
                sfs.append(run_sfs_case(name, make, samples, reps))
        fresh_store()
        if "lineages" in only:
            print("# lineage counting", file=sys.stderr, flush=True)
            ns = LINEAGE_SIZES["quick" if a.quick else "default"]
            lin = run_lineages(ns, reps, [30], not a.no_phasegen)
        if "stiff" in only:
            print("# stiffness", file=sys.stderr, flush=True)
            stiff = run_stiff(reps, full=a.full)
    finally:
        shutil.rmtree(os.environ["PHASIC_CACHE_DIR"], ignore_errors=True)
        if base is None:
            os.environ.pop("PHASIC_CACHE_DIR", None)
        else:
            os.environ["PHASIC_CACHE_DIR"] = base
    if sfs:
        table_sfs(sfs)
    if lin:
        table_lineages(lin)
    if stiff:
        table_stiff(stiff)
    print()
    v = verdicts(sfs, lin, stiff)
    for line in v:
        print(line)
    if a.json:
        Path(a.json).write_text(json.dumps({"sfs": sfs, "lineages": lin, "stiff": stiff, "verdicts": v}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
