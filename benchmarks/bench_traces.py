"""Trace benchmark: per-parameter-vector cost of re-elimination vs trace replay, the trace
store across processes, hierarchical (per-SCC) reuse, and the JAX functions.

Model: the parameterised two-island structured coalescent of benchmarks/models.py (state
``(a, b)``; coalescence ``[C(a,2), 0] . theta``, migration ``a [0, 1] . theta``), theta drawn
uniformly from [0.5, 2]^2. Compared against the published package phasic==0.32.1 ("ref",
in benchmarks/.ref-venv; see reference_env.py), whose fastest public parameter path is
``g.update_weights(theta); g.moments(2)`` on a graph whose parameterised reward-compute
graph is cached by the first call (its Python trace API is deprecated and not wired to
``moments``).

Rows (all in one table, "ratio" = slower / faster as stated in the row):

* re-eliminate : fresh ``Graph.from_arrays`` + ``update_weights`` + ``moments(2)`` per theta
                 (records the elimination again every time)
* replay       : ``g.update_weights(theta); g.moments(2)`` with the trace recorded
* batch        : ``phasic.batch.evaluate_batch(g, thetas (1000, 2), k=2)`` / 1000 (one thread;
                 also ``threads=2``, which the targets do not use)
* store        : ``moments(2)`` with ``hierarchical=True`` in a fresh process, first (records,
                 stores) vs second (loads) -- PHASIC_CACHE_DIR in a temp dir; and in the second
                 process, its second call (new theta: replay) vs its first
* JAX          : jitted ``phasic.pmf_from_graph(g, method=...)`` at 50 times vs core ``g.pdf``
                 (uniformisation, the default, and expm for comparison); grad vs value
                 of the log-likelihood; grad vs value of ``phasic.moments_from_graph(g, 2)``
                 and its ``jax.vmap`` over 1000 thetas (one callback: evaluate_batch's replay);
                 ``backend="jax"`` (pure-JAX replay) at n=60: jit value vs the core backend,
                 vmap over 1000 thetas vs evaluate_batch and vs jit single, grad vs value
* family       : recording the traces of two-island models n = 20..30 without vs with the
                 shared per-SCC trace cache (``hierarchical=True``)

Usage::

    python benchmarks/bench_traces.py [--quick | --full] [--no-ref] [--no-jax] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import models  # noqa: E402
import reference_env  # noqa: E402
import timing  # noqa: E402

SIZES = {"quick": [45], "default": [60, 90], "full": [60, 90, 140]}
JAX_SIZES = {"quick": [10], "default": [10, 20], "full": [10, 20, 25]}
FAMILY = {"quick": range(20, 26), "default": range(20, 31), "full": range(20, 41)}
N_REPLAY, N_BATCH, N_REELIM = 200, 1000, 10
JAX_REPLAY_N = 60  # model size of the backend="jax" moments rows, in every mode


def thetas(n, seed=0):
    return np.random.default_rng(seed).uniform(0.5, 2.0, (n, 2))


def best_of(fn, reps=3, budget=3.0):
    """(min seconds over up to `reps` runs, stopping after `budget` s, last result)."""
    best, spent, out = float("inf"), 0.0, None
    for _ in range(reps):
        t0 = time.perf_counter()
        res = fn()
        dt = time.perf_counter() - t0
        out = res
        best, spent = min(best, dt), spent + dt
        if spent >= budget:
            break
    return best, out


def build(n, **kw):
    import phasic

    cb, ipv = models.spec("two_island", n)
    return phasic.Graph(cb, ipv=ipv, **kw)


# ------------------------------------------------------------------------ per-theta costs
def per_theta_ours(n):
    import phasic
    from phasic.batch import evaluate_batch
    from phasic.traces import graph_trace

    g = build(n)
    arrays, attrs = g.to_arrays()
    TH = thetas(N_BATCH)

    def reelim():
        out = []
        for th in TH[:N_REELIM]:
            h = phasic.Graph.from_arrays(arrays, attrs)
            h.update_weights(th)
            out.append(h.moments(2))
        return out

    t_re, m_re = best_of(reelim, reps=3, budget=3.0)
    g.update_weights(TH[0])
    g.moments(2)  # records the trace

    def replay():
        out = []
        for th in TH[:N_REPLAY]:
            g.update_weights(th)
            out.append(g.moments(2))
        return out

    t_rp, m_rp = best_of(replay, reps=3, budget=3.0)
    t_b, m_b = best_of(lambda: evaluate_batch(g, TH, k=2), reps=3, budget=3.0)
    t_b2, m_b2 = best_of(lambda: evaluate_batch(g, TH, k=2, threads=2), reps=3, budget=3.0)
    assert np.array_equal(m_b, m_b2)
    m_re, m_rp = np.asarray(m_re), np.asarray(m_rp)
    agree = max(_rel(m_rp[:N_REELIM], m_re), _rel(m_b[:N_REPLAY], m_rp))
    return dict(
        V=g.vertices_length(),
        E=g.edges_length(),
        ops=int(graph_trace(g)["code"].size),
        reelim=t_re / N_REELIM,
        replay=t_rp / N_REPLAY,
        batch=t_b / N_BATCH,
        batch2=t_b2 / N_BATCH,
        moments=m_rp[:3].tolist(),
        agree=agree,
    )


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.abs(b)))


REF_DRIVER = r"""
import json, sys, time
cfg = json.loads(sys.argv[1])
sys.path.insert(0, cfg["bench_dir"])
import numpy as np
import phasic
import models
TH = np.random.default_rng(0).uniform(0.5, 2.0, (cfg["n_replay"], 2))
for n in cfg["sizes"]:
    rec = {"n": n}
    try:
        cb, ipv = models.spec("two_island", n)
        make = lambda: phasic.Graph(cb, ipv=ipv, graph_cache=False)
        best = float("inf")
        for th in TH[:3]:
            g = make()
            t0 = time.perf_counter()
            g.update_weights(th)
            g.moments(2)
            best = min(best, time.perf_counter() - t0)
        rec["first"] = best
        g = make()
        g.update_weights(TH[0]); g.moments(2)
        out, t0, k = [], time.perf_counter(), 0
        for th in TH:
            g.update_weights(th)
            out.append([float(x) for x in g.moments(2)])
            k += 1
            if time.perf_counter() - t0 > cfg["budget"] and k >= 5:
                break
        rec["replay"] = (time.perf_counter() - t0) / k
        rec["replay_n"] = k
        rec["moments"] = out[:3]
    except Exception as exc:
        rec["error"] = f"{type(exc).__name__}: {exc}"[:150]
    print(json.dumps(rec), flush=True)
for name in ("pmf_from_graph", "moments_from_graph"):
    try:
        import jax, jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)
        cb, ipv = models.spec("two_island", 10)
        g = phasic.Graph(cb, ipv=ipv, graph_cache=False)
        f = getattr(phasic.Graph, name)(g)
        th = jnp.array([1.0, 0.5])
        if name == "pmf_from_graph":
            f(th, jnp.linspace(0.1, 5.0, 50)).block_until_ready()
        else:
            f(th)
        print(json.dumps({"jax": name, "ok": True}), flush=True)
    except Exception as exc:
        print(json.dumps({"jax": name, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"[:90]}),
              flush=True)
"""


def per_theta_ref(sizes, budget):
    ok, why = reference_env.ensure(install=True)
    if not ok:
        return {}, {}, why
    cfg = {"bench_dir": str(HERE), "sizes": sizes, "n_replay": N_REPLAY, "budget": budget}
    recs, err = reference_env.run_driver(REF_DRIVER, [json.dumps(cfg)], timeout=300 + 60 * len(sizes))
    return ({r["n"]: r for r in recs if "n" in r}, {r["jax"]: r for r in recs if "jax" in r}, err)


# -------------------------------------------------------------------------- trace store
STORE_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, sys.argv[1])
import phasic, models
cb, ipv = models.spec("two_island", int(sys.argv[2]))
g = phasic.Graph(cb, ipv=ipv, hierarchical=sys.argv[3] == "1")
g.update_weights([1.0, 0.5])
t1 = time.perf_counter()
m = g.moments(2)
t2 = time.perf_counter()
g.update_weights([1.1, 0.4])
t3 = time.perf_counter()
g.moments(2)
t4 = time.perf_counter()
print(json.dumps({"moments_t": t2 - t1, "process_t": t2 - t0, "moments": m, "second_t": t4 - t3,
                  "stats": g._ll.hierarchy_stats}))
"""


def store_processes(n):
    with tempfile.TemporaryDirectory(prefix="phasic-bench-") as tmp:
        path = Path(tmp) / "store_run.py"
        path.write_text(STORE_SCRIPT)
        env = dict(timing.compile_bytecode(Path(tmp) / "pycache"), PHASIC_CACHE_DIR=str(Path(tmp) / "cache"))
        out = []
        for hier in ("0", "1", "1"):
            p = subprocess.run(
                [sys.executable, str(path), str(HERE), str(n), hier],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                cwd=tmp,
            )
            lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
            if not lines:
                raise RuntimeError(f"store subprocess failed: {p.stderr.strip()[-300:]}")
            out.append(json.loads(lines[-1]))
    return out  # plain, hierarchical first, hierarchical second


# -------------------------------------------------------------------------------- family
def family(sizes):
    from phasic.store import Store
    from phasic.traces import graph_trace

    t_plain, t_hier, t_again = 0.0, 0.0, 0.0
    reused = recorded = 0
    with tempfile.TemporaryDirectory(prefix="phasic-bench-") as tmp:
        store = Store(Path(tmp) / "cache")
        for n in sizes:
            g = build(n)
            t0 = time.perf_counter()
            graph_trace(g)
            t_plain += time.perf_counter() - t0
            h = build(n, hierarchical=True)
            t0 = time.perf_counter()
            graph_trace(h, store)
            t_hier += time.perf_counter() - t0
            st = h._ll.hierarchy_stats or {}
            reused += st.get("reused", 0)
            recorded += st.get("recorded", 0)
        for n in sizes:  # every graph trace is now in the store
            h = build(n, hierarchical=True)
            t0 = time.perf_counter()
            graph_trace(h, store)
            t_again += time.perf_counter() - t0
    return dict(plain=t_plain, hier=t_hier, again=t_again, reused=reused, recorded=recorded)


# ----------------------------------------------------------------------------------- JAX
def jax_pmf(n, method):
    """Jitted ``pmf_from_graph(g, method=method)`` at 50 times vs ``g.pdf``, and the
    log-likelihood's gradient vs its value. The times are closed over (data); theta is traced
    under jit, so the uniformisation step count is sized for twice the graph's current top
    rate (see ``pmf_from_graph``)."""
    import jax
    import jax.numpy as jnp

    import phasic

    g = build(n)
    th = np.array([1.0, 0.5])
    g.update_weights(th)
    mean = g.moments(1)[0]
    times = np.linspace(2 * mean / 50, 2 * mean, 50)
    pmf = phasic.pmf_from_graph(g, method=method)
    f = jax.jit(lambda t: pmf(t, times))  # times are data: closed over, as in a likelihood
    t0 = time.perf_counter()
    f(th).block_until_ready()
    compile_t = time.perf_counter() - t0
    t_jax, v = best_of(lambda: f(th).block_until_ready(), reps=5, budget=6.0)
    t_core, c = best_of(lambda: g.pdf(times), reps=5, budget=1.0)
    ll = jax.jit(lambda t: jnp.log(pmf(t, times)).sum())
    gl = jax.jit(jax.grad(lambda t: jnp.log(pmf(t, times)).sum()))
    ll(th).block_until_ready()
    gl(th).block_until_ready()
    t_ll = t_gl = float("inf")
    spent = 0.0
    for _ in range(10):  # value and grad alternate, so that both see the same machine load
        t0 = time.perf_counter()
        ll(th).block_until_ready()
        t1 = time.perf_counter()
        gl(th).block_until_ready()
        t2 = time.perf_counter()
        t_ll, t_gl = min(t_ll, t1 - t0), min(t_gl, t2 - t1)
        spent += t2 - t0
        if spent > 12.0:
            break
    return dict(
        V=g.vertices_length(),
        compile=compile_t,
        jax=t_jax,
        core=t_core,
        ll=t_ll,
        grad=t_gl,
        err=float(np.max(np.abs(np.asarray(v) - c)) / np.max(np.abs(c))),
    )


def jax_moments(n, backend="core"):
    """``moments_from_graph(g, 2, backend=backend)``: jitted value and gradient per theta;
    for backend="jax" also compile times, the replay's level counts, and ``jax.vmap`` over
    N_BATCH thetas (per theta) against ``evaluate_batch``."""
    import jax
    import jax.numpy as jnp

    import phasic

    g = build(n)
    f = phasic.moments_from_graph(g, 2, backend=backend)
    th = jnp.array([1.0, 0.5])
    fv = jax.jit(lambda t: f(t).sum())
    fg = jax.jit(jax.grad(lambda t: f(t).sum()))
    t0 = time.perf_counter()
    fv(th).block_until_ready()
    t1 = time.perf_counter()
    fg(th).block_until_ready()
    t2 = time.perf_counter()
    t_v, _ = best_of(lambda: fv(th).block_until_ready(), reps=20, budget=1.0)
    t_g, _ = best_of(lambda: fg(th).block_until_ready(), reps=20, budget=1.0)
    out = dict(V=g.vertices_length(), value=t_v, grad=t_g)
    from phasic.batch import evaluate_batch

    TH = thetas(N_BATCH)
    fb = jax.jit(jax.vmap(f))
    t3 = time.perf_counter()
    fb(TH).block_until_ready()
    t4 = time.perf_counter()
    t_b, m_b = best_of(lambda: fb(TH).block_until_ready(), reps=3, budget=4.0)
    t_e, m_e = best_of(lambda: evaluate_batch(g, TH, k=2), reps=3, budget=2.0)
    out.update(vmap=t_b / N_BATCH, batch=t_e / N_BATCH, err=_rel(m_b, m_e))
    if backend == "jax":
        out.update(f.replay_info, compile_value=t1 - t0, compile_grad=t2 - t1, compile_vmap=t4 - t3)
    return out


# --------------------------------------------------------------------------------- table
def ft(x):
    if not isinstance(x, float):
        return str(x)
    if x < 1e-3:
        return f"{x * 1e6:.1f}us"
    return f"{x * 1e3:.2f}ms" if x < 1 else f"{x:.2f}s"


def ratio_str(r):
    if r is None:
        return "-"
    if r < 1:
        return f"{r:.2g}x (1/{1 / r:.0f})" if r < 0.5 else f"{r:.2f}x"
    return f"{r:.0f}x" if r >= 100 else f"{r:.1f}x"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--no-ref", action="store_true")
    ap.add_argument("--no-jax", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    mode = "quick" if a.quick else "full" if a.full else "default"
    os.environ["PHASIC_CACHE_DIR"] = tempfile.mkdtemp(prefix="phasic-bench-")
    rows, res = [], {"mode": mode}

    def row(what, model, V, a_lab, a_t, b_lab, b_t, target=None, higher_is_better=True):
        """ratio = b_t / a_t ("a is ratio x faster than b")."""
        r = b_t / a_t if isinstance(a_t, float) and isinstance(b_t, float) and a_t > 0 else None
        verdict = "-"
        if target is not None and r is not None:
            ok = r >= target if higher_is_better else r <= target
            verdict = f"{'met' if ok else 'NOT met'} ({'>=' if higher_is_better else '<='}{target:g}x)"
        rows.append([what, model, V, f"{a_lab} {ft(a_t)}", f"{b_lab} {ft(b_t)}", ratio_str(r), verdict])

    sizes = SIZES[mode]
    ours = {}
    for n in sizes:
        print(f"# per-theta: two_island n={n}", file=sys.stderr, flush=True)
        ours[n] = per_theta_ours(n)
    ref, ref_jax, ref_err = ({}, {}, "--no-ref") if a.no_ref else per_theta_ref(sizes, 4.0 if mode == "quick" else 8.0)
    res["per_theta"], res["ref"], res["ref_jax"], res["ref_err"] = ours, ref, ref_jax, ref_err
    for n in sizes:
        o = ours[n]
        m = f"2-island n={n}"
        row(
            "replay vs re-eliminate (per theta)",
            m,
            o["V"],
            "replay",
            o["replay"],
            "re-elim",
            o["reelim"],
            target=100 if o["V"] >= 1000 else None,
        )
        row(
            "batch vs re-eliminate (per theta)",
            m,
            o["V"],
            "batch",
            o["batch"],
            "re-elim",
            o["reelim"],
            target=100 if o["V"] >= 1000 else None,
        )
        row("batch vs replay (per theta)", m, o["V"], "batch", o["batch"], "replay", o["replay"])
        row("batch: 2 threads vs 1 (per theta; same bits)", m, o["V"], "2 thr", o["batch2"], "1 thr", o["batch"])
        r = ref.get(n)
        if r and "replay" in r:
            row("replay vs ref replay (per theta)", m, o["V"], "ours", o["replay"], "ref", r["replay"], target=2)
            row("batch vs ref replay (per theta)", m, o["V"], "ours", o["batch"], "ref", r["replay"], target=2)
            row("re-eliminate vs ref first call", m, o["V"], "ours", o["reelim"], "ref", r["first"])
            o["ref_rel_diff"] = _rel(o["moments"], r["moments"])
        else:
            why = (r or {}).get("error") or ref_err or "no result"
            rows.append(
                ["replay vs ref replay (per theta)", m, o["V"], f"ours {ft(o['replay'])}", f"ref n/a: {why}", "-", "-"]
            )

    print("# trace store across processes", file=sys.stderr, flush=True)
    for n in sizes[:1] if mode == "quick" else sizes:
        plain, first, second = store_processes(n)
        res[f"store_{n}"] = [plain, first, second]
        m, V = f"2-island n={n}", ours[n]["V"]
        row("hierarchical: 2nd process vs 1st (moments)", m, V, "2nd", second["moments_t"], "1st", first["moments_t"])
        row(
            "hierarchical 2nd process vs plain record",
            m,
            V,
            "plain",
            plain["moments_t"],
            "2nd (load)",
            second["moments_t"],
        )
        row(
            "hierarchical 2nd process: 2nd moments() vs 1st",
            m,
            V,
            "2nd call",
            second["second_t"],
            "1st call",
            second["moments_t"],
        )

    print("# family", file=sys.stderr, flush=True)
    fam = family(FAMILY[mode])
    res["family"] = fam
    fl = f"2-island n={FAMILY[mode][0]}..{FAMILY[mode][-1]}"
    rows.append(
        [
            "family: record without vs with SCC cache",
            fl,
            "-",
            f"plain {ft(fam['plain'])}",
            f"hier {ft(fam['hier'])}",
            ratio_str(fam["plain"] / fam["hier"]),
            f"SCCs reused {fam['reused']}, recorded {fam['recorded']}",
        ]
    )
    row("family: all traces stored vs plain record", fl, "-", "stored", fam["again"], "plain", fam["plain"])

    if not a.no_jax:
        for n in JAX_SIZES[mode]:
            for method in ("uniformization", "expm"):
                print(f"# jax pmf n={n} ({method})", file=sys.stderr, flush=True)
                j = jax_pmf(n, method)
                res[f"jax_pmf_{n}_{method}"] = j
                m, lab = f"2-island n={n}", "unif" if method == "uniformization" else method
                row(
                    f"JAX pmf {lab} (jit, 50 t) vs core pdf [err {j['err']:.0e}]",
                    m,
                    j["V"],
                    "core",
                    j["core"],
                    "jax",
                    j["jax"],
                )
                row(
                    f"JAX pmf {lab} log-lik: grad vs value",
                    m,
                    j["V"],
                    "value",
                    j["ll"],
                    "grad",
                    j["grad"],
                    target=3,
                    higher_is_better=False,
                )
        n = sizes[0]
        print(f"# jax moments n={n}", file=sys.stderr, flush=True)
        jm = jax_moments(n)
        res["jax_moments"] = jm
        row(
            "moments_from_graph(g,2): grad vs value",
            f"2-island n={n}",
            jm["V"],
            "value",
            jm["value"],
            "grad",
            jm["grad"],
            target=3,
            higher_is_better=False,
        )
        row(
            f"core backend vmap {N_BATCH} vs evaluate_batch (per theta) [err {jm['err']:.0e}]",
            f"2-island n={n}",
            jm["V"],
            "batch",
            jm["batch"],
            "vmap",
            jm["vmap"],
        )
        row(
            "core backend: vmap vs jit single (per theta)",
            f"2-island n={n}",
            jm["V"],
            "vmap",
            jm["vmap"],
            "single",
            jm["value"],
        )
        n = JAX_REPLAY_N
        print(f"# jax moments, backend='jax', n={n}", file=sys.stderr, flush=True)
        jx = jax_moments(n, backend="jax")
        jc = jm if n == sizes[0] else jax_moments(n)
        res["jax_moments_replay"], m = jx, f"2-island n={n}"
        print(
            f"# backend='jax' n={n}: tape {jx['ops']} ops in {jx['tape_levels']} levels "
            f"({jx['tape_buckets']} buckets), program {jx['updates']} updates in "
            f"{jx['program_levels']} levels; compile value {jx['compile_value']:.2f}s, grad "
            f"{jx['compile_grad']:.2f}s, vmap {jx['compile_vmap']:.2f}s",
            file=sys.stderr,
            flush=True,
        )
        row(
            "moments_from_graph jax backend vs core backend (jit value)",
            m,
            jx["V"],
            "jax",
            jx["value"],
            "core",
            jc["value"],
        )
        row(
            f"jax backend vmap {N_BATCH} vs evaluate_batch (per theta) [err {jx['err']:.0e}]",
            m,
            jx["V"],
            "batch",
            jx["batch"],
            "vmap",
            jx["vmap"],
        )
        row("jax backend: vmap vs jit single (per theta)", m, jx["V"], "vmap", jx["vmap"], "single", jx["value"])
        row(
            "moments_from_graph jax backend: grad vs value",
            m,
            jx["V"],
            "value",
            jx["value"],
            "grad",
            jx["grad"],
            target=3,
            higher_is_better=False,
        )
        for name, r in ref_jax.items():
            if "error" in r:
                rows.append([f"ref {name}", "2-island n=10", "-", "-", f"n/a: {r['error'][:60]}", "-", "-"])

    header = ["measurement", "model", "V", "A", "B", "B/A", "target"]
    widths = [max(len(str(x[i])) for x in rows + [header]) for i in range(len(header))]
    print(
        f"\nTrace benchmark ({mode}); B/A = how many times A is faster than B; times per call "
        f"(per theta where stated), best of repeats"
    )
    fmt = "  ".join(f"{{:{'<' if i < 2 else '>'}{w}}}" for i, w in enumerate(widths))
    print(fmt.format(*header))
    print("-" * (sum(widths) + 2 * len(widths)))
    for r in rows:
        print(fmt.format(*map(str, r)))
    print(
        "agreement: "
        + ", ".join(
            f"n={n}: replay/batch/re-elim max rel diff {ours[n]['agree']:.1e}"
            + (f", vs ref {ours[n]['ref_rel_diff']:.1e}" if "ref_rel_diff" in ours[n] else "")
            for n in sizes
        )
    )
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
