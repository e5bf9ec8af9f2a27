"""Engine benchmark: build, elimination + 3 moments, pdf at 100 points.

Compares this repository's phasic ("ours") with (a) dense numpy/scipy on the sub-intensity
matrix and (b) the published package phasic==0.32.1 ("ref", run in benchmarks/.ref-venv by
a driver subprocess; see reference_env.py), and prints one table of timings and ratios.

* build     : ``Graph(callback, ipv=...)`` (ref: ``graph_cache=False``); "bare cb" is the cost
              of calling the same callback once for every state of the built graph with a
              numpy int32 copy of the state (what phasic passes), i.e. the floor for a build.
* moments   : ``g.moments(3)`` on a fresh graph, so elimination/trace recording is included.
              dense: LU factorisation of -S and three solves (E[T^k] = k! a U^k 1); an explicit
              inverse costs about 3x the factorisation, so "x dense" is conservative.
* pdf       : density at t_j = j*h, j = 1..100, h = 2 E[T] / 100.
              dense: P = expm(S h) once, then a P^j s for each point (the cheapest exact
              dense method for a uniform grid). "err" is max|f - f_dense| / max f_dense.

Dense runs are skipped (with the estimate printed) when they would take over ~60 s or
8 GB. Timings are the best of a few repetitions (fresh graph each time for moments).

Usage::

    python benchmarks/bench_engine.py            # default cases (~5 min)
    python benchmarks/bench_engine.py --quick    # ~1 min
    python benchmarks/bench_engine.py --full     # + rabbits n=1000 (>500k vertices) in fresh processes
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
from timing import best_of  # noqa: E402

QUICK = [("kingman", 50), ("kingman", 200), ("block_counting", 20), ("block_counting", 25), ("rabbits", 100)]
DEFAULT = [
    ("kingman", 50),
    ("kingman", 200),
    ("kingman", 1000),
    ("block_counting", 20),
    ("block_counting", 25),
    ("block_counting", 30),
    ("block_counting", 35),
    ("rabbits", 100),
    ("rabbits", 150),
]
DENSE_MAX_S, DENSE_MAX_BYTES = 60.0, 8e9
SHORT = {"kingman": "kingman", "block_counting": "blockcount", "rabbits": "rabbits"}


def pdf_grid(mean):
    h = 2.0 * mean / 100
    return h, h * np.arange(1, 101)


# ----------------------------------------------------------------------------- ours
def run_ours(name, n):
    import phasic

    cb, ipv = models.spec(name, n)
    g = phasic.Graph(cb, ipv=ipv)
    states = g.states()

    def bare():
        for row in states[1:]:
            cb(row.copy())

    # build and bare callback cost alternate, so that both see the same machine load
    t_build = t_bare = float("inf")
    spent = 0.0
    for _ in range(7):
        t0 = time.perf_counter()
        h = phasic.Graph(cb, ipv=ipv)
        t1 = time.perf_counter()
        bare()
        t2 = time.perf_counter()
        del h
        t_build, t_bare = min(t_build, t1 - t0), min(t_bare, t2 - t1)
        spent += t2 - t0
        if spent > 4.0:
            break
    arrays, attrs = g.to_arrays()
    t_mom, m = best_of(
        lambda h: h.moments(3), setup=lambda: phasic.Graph.from_arrays(arrays, attrs), reps=5, budget=2.0
    )
    h, times = pdf_grid(m[0])
    t_pdf, f = best_of(
        lambda h: h.pdf(times), setup=lambda: phasic.Graph.from_arrays(arrays, attrs), reps=3, budget=2.0
    )
    return dict(
        V=g.vertices_length(),
        E=g.edges_length(),
        build=t_build,
        bare=t_bare,
        moments_t=t_mom,
        moments=list(map(float, m)),
        pdf_t=t_pdf,
        pdf=f.tolist(),
        h=h,
        graph=g,
    )


# ---------------------------------------------------------------------------- dense
def dense_matrices(g):
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


_CAL = {}


def calibrate():
    """Seconds per (n/1000)^3 for LU and expm, to estimate skipped dense runs.

    Starts from a 1000x1000 test matrix (best of 3) and is replaced by the largest dense run
    actually measured (see :func:`_learn`), which includes the real matrices' norms.
    """
    import scipy.linalg as sl

    if not _CAL:
        rng = np.random.default_rng(0)
        A = -np.eye(1000) * 3 + rng.random((1000, 1000)) / 1000
        for key, fn in (("lu", sl.lu_factor), ("expm", sl.expm)):
            ts = []
            for _ in range(3):
                t0 = time.perf_counter()
                fn(A)
                ts.append(time.perf_counter() - t0)
            _CAL[key] = (min(ts), 1000)
    return _CAL


def _learn(key, n, t):
    if n >= _CAL[key][1]:
        _CAL[key] = (t * (1000.0 / n) ** 3, n)


def run_dense(g, h, nmax_s=DENSE_MAX_S):
    import scipy.linalg as sl

    cal = calibrate()
    n = int(g.transient_vertices().size)
    scale = (n / 1000.0) ** 3
    est_lu, est_ex = cal["lu"][0] * scale, cal["expm"][0] * scale
    out = {"n": n}
    if est_lu > nmax_s or 3 * 8.0 * n * n > DENSE_MAX_BYTES:
        out["moments_skip"] = f"skipped (est. {est_lu:.0f} s, {3 * 8 * n * n / 1e9:.1f} GB)"
    if est_ex > nmax_s or 8 * 8.0 * n * n > DENSE_MAX_BYTES:
        out["pdf_skip"] = f"skipped (est. {est_ex:.0f} s, {8 * 8 * n * n / 1e9:.1f} GB)"
    if "moments_skip" in out and "pdf_skip" in out:
        return out
    alpha, S = dense_matrices(g)
    if "moments_skip" not in out:

        def moments():
            lu = sl.lu_factor(-S)
            y, res = np.ones(n), []
            for k in range(1, 4):
                y = sl.lu_solve(lu, y)
                res.append(float(np.prod(range(1, k + 1)) * alpha @ y))
            return res

        out["moments_t"], out["moments"] = best_of(moments, reps=3, budget=min(nmax_s, 5.0))
        _learn("lu", n, out["moments_t"])
    if "pdf_skip" not in out:
        s = -S.sum(axis=1)

        def pdf():
            P = sl.expm(S * h)
            v, f = alpha.copy(), np.empty(100)
            for j in range(100):
                v = v @ P
                f[j] = v @ s
            return f

        out["pdf_t"], out["pdf"] = best_of(pdf, reps=3, budget=min(nmax_s, 5.0))
        _learn("expm", n, out["pdf_t"])
    return out


# ------------------------------------------------------------------------ reference
REF_DRIVER = r'''
import json, os, select, signal, sys, time
cfg = json.loads(sys.argv[1])
sys.path.insert(0, cfg["bench_dir"])
import numpy as np
t0 = time.perf_counter()
import phasic
print(json.dumps({"import_s": time.perf_counter() - t0}), flush=True)
import models
from timing import best_of

def in_child(fn, timeout):
    """fn() in a forked child; {"ok": result} or {"error": reason}."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            res = {"ok": fn()}
        except BaseException as exc:
            res = {"error": f"{type(exc).__name__}: {exc}"[:150]}
        data = json.dumps(res).encode()
        while data:
            data = data[os.write(w, data):]
        os._exit(0)
    os.close(w)
    ready, _, _ = select.select([r], [], [], timeout)
    if not ready:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
        return {"error": f"timed out after {timeout:.0f} s"}
    chunks = []
    while True:
        b = os.read(r, 1 << 16)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks) or b'{"error": "child died"}')

for name, n, mean in cfg["cases"]:
    rec = {"model": name, "n": n}
    cb, ipv = models.spec(name, n)
    try:
        make = lambda: phasic.Graph(cb, ipv=ipv, graph_cache=False)
        rec["build"], g = best_of(make, reps=3, budget=3.0)
        rec["V"] = int(g.vertices_length())
        rec["moments_t"], m = best_of(lambda h: h.moments(3), setup=make, reps=5, budget=2.0)
        rec["moments"] = [float(x) for x in m]
        h = 2.0 * mean / 100
        times = h * np.arange(1, 101)
        res = in_child(lambda: best_of(lambda h: [float(x) for x in h.pdf(times)], setup=make,
                                       reps=3, budget=2.0), cfg["pdf_timeout"])
        if "ok" in res:
            rec["pdf_t"], rec["pdf"] = res["ok"]
        else:
            rec["pdf_error"] = res["error"]
    except Exception as exc:
        rec["error"] = f"{type(exc).__name__}: {exc}"[:150]
    print(json.dumps(rec), flush=True)
'''


def run_ref(cases, pdf_timeout):
    """{(model, n): record} from the published package, plus an error string or None."""
    ok, why = reference_env.ensure(install=True)
    if not ok:
        return {}, why
    cfg = {"bench_dir": str(HERE), "cases": cases, "pdf_timeout": pdf_timeout}
    recs, err = reference_env.run_driver(REF_DRIVER, [json.dumps(cfg)], timeout=120 + len(cases) * (pdf_timeout + 60))
    return {(r["model"], r["n"]): r for r in recs if "model" in r}, err


# ------------------------------------------------------------------------ importtime
def import_time(py, env=None, reps=3):
    """min over `reps` of the cumulative -X importtime of `phasic` (s), and its self time."""
    best = None
    for _ in range(reps):
        p = subprocess.run(
            [str(py), "-X", "importtime", "-c", "import phasic"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tempfile.gettempdir(),
            timeout=300,
        )
        for line in p.stderr.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| phasic$", line)
            if m:
                cur = (int(m.group(2)) / 1e6, int(m.group(1)) / 1e6)
                best = cur if best is None or cur[0] < best[0] else best
    return best


# ------------------------------------------------------------------------ large model
LARGE = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import models
kw = {"graph_cache": False} if sys.argv[3] == "ref" else {}
import phasic

def hwm_kb():
    # VmHWM: this process's own peak resident set (ru_maxrss would include the parent's
    # peak, which Linux carries over fork + exec)
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rss0 = hwm_kb()
cb, ipv = models.spec("rabbits", int(sys.argv[2]))
t0 = time.perf_counter()
g = phasic.Graph(cb, ipv=ipv, **kw)
t1 = time.perf_counter()
e = g.expectation()
t2 = time.perf_counter()
print(json.dumps({"V": int(g.vertices_length()), "build": t1 - t0, "expectation_t": t2 - t1,
                  "expectation": float(e), "rss_import_kb": rss0,
                  "rss_kb": hwm_kb()}), flush=True)
"""


def _rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_large(n, which, timeout, max_rss_gb=14.0):
    """Rabbits model of size `n` in a fresh process of `which` ("ours" or "ref").

    The process is killed if it runs past `timeout` seconds or its resident memory passes
    `max_rss_gb` (the machine is shared); both come back as {"error": reason}.
    """
    with tempfile.TemporaryDirectory(prefix="phasic-large-") as tmp:
        path = Path(tmp) / "large.py"
        path.write_text(LARGE)
        env = dict(os.environ, PHASIC_CACHE_DIR=str(Path(tmp) / "cache"))
        if which == "ref":
            ok, why = reference_env.ensure(install=False)
            if not ok:
                return {"error": why}
            py = reference_env.python()
            env.pop("PYTHONPATH", None)
            env.update(HOME=tmp, JAX_PLATFORMS="cpu")
        else:
            py = sys.executable
        with open(Path(tmp) / "out.txt", "w+") as out, open(Path(tmp) / "err.txt", "w+") as err:
            proc = subprocess.Popen(
                [str(py), str(path), str(HERE), str(n), which], env=env, stdout=out, stderr=err, cwd=tmp
            )
            t0, reason = time.monotonic(), None
            while proc.poll() is None:
                if time.monotonic() - t0 > timeout:
                    reason = f"timed out after {timeout:.0f} s"
                elif _rss_kb(proc.pid) > max_rss_gb * 1e6:
                    reason = f"killed at {max_rss_gb:g} GB resident memory, {time.monotonic() - t0:.0f} s in"
                if reason:
                    proc.kill()
                    proc.wait()
                    return {"error": reason}
                time.sleep(0.5)
            out.seek(0)
            err.seek(0)
            lines = [ln for ln in out.read().splitlines() if ln.startswith("{")]
            if lines:
                return json.loads(lines[-1])
            return {"error": (err.read().strip().splitlines() or ["no output"])[-1][:150]}


# ------------------------------------------------------------------------------ table
def fmt_t(x):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    return f"{x * 1e3:.2f}ms" if x < 0.1 else f"{x:.2f}s"


def fmt_r(a, b):
    """b / a as 'N.Nx' (how many times faster `a` is than `b`)."""
    if not isinstance(a, float) or not isinstance(b, float) or a <= 0:
        return "-"
    r = b / a
    return f"{r:.0f}x" if r >= 100 else f"{r:.1f}x" if r >= 1 else f"{r:.2f}x"


def rel_err(x, ref):
    if x is None or ref is None:
        return None
    x, ref = np.asarray(x, float), np.asarray(ref, float)
    return float(np.max(np.abs(x - ref)) / np.max(np.abs(ref)))


def print_table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = "  ".join(str(h).rjust(w) for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(c).rjust(w) for c, w in zip(r, widths)))


def na(rec, key, errkey=None):
    if rec is None:
        return None
    if key in rec:
        return rec[key]
    reason = rec.get(errkey or "", None) or rec.get("error")
    return f"n/a: {reason}" if reason else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small cases only (~1 min)")
    ap.add_argument("--full", action="store_true", help="also rabbits n=1000 in fresh processes")
    ap.add_argument("--large-only", action="store_true", help="only the --full large model")
    ap.add_argument("--no-ref", action="store_true", help="skip the published package")
    ap.add_argument("--no-dense", action="store_true", help="skip dense numpy/scipy")
    ap.add_argument(
        "--ref-large-timeout",
        type=float,
        default=1500.0,
        help="seconds allowed to the published package for rabbits n=1000",
    )
    ap.add_argument("--json", help="also write all results to this file")
    a = ap.parse_args(argv)
    cases = [] if a.large_only else QUICK if a.quick else DEFAULT
    a.full = a.full or a.large_only
    pdf_timeout = 20.0 if a.quick else 60.0
    os.environ.setdefault("PHASIC_CACHE_DIR", tempfile.mkdtemp(prefix="phasic-bench-"))

    ours, dense = {}, {}
    for name, n in cases:
        print(f"# ours: {name} n={n}", file=sys.stderr, flush=True)
        ours[name, n] = run_ours(name, n)
        if not a.no_dense:
            dense[name, n] = run_dense(ours[name, n]["graph"], ours[name, n]["h"])
    ref, ref_err = (
        ({}, "--no-ref") if a.no_ref else run_ref([[nm, n, ours[nm, n]["moments"][0]] for nm, n in cases], pdf_timeout)
    )

    header = [
        "model",
        "n",
        "V",
        "E",
        "build",
        "bare cb",
        "build/bare",
        "ref build",
        "ref/ours",
        "moments(3)",
        "dense",
        "ref",
        "x dense",
        "x ref",
        "pdf(100)",
        "dense",
        "ref",
        "x dense",
        "x ref",
        "err",
        "ref err",
    ]
    rows, results = [], []
    for name, n in cases:
        o, d = ours[name, n], dense.get((name, n), {})
        r = ref.get((name, n)) or ({"error": ref_err or "no result"} if not a.no_ref else None)
        rb, rm, rp = na(r, "build"), na(r, "moments_t"), na(r, "pdf_t", "pdf_error")
        dm, dp = d.get("moments_t", d.get("moments_skip")), d.get("pdf_t", d.get("pdf_skip"))
        rows.append(
            [
                SHORT[name],
                n,
                o["V"],
                o["E"],
                fmt_t(o["build"]),
                fmt_t(o["bare"]),
                f"{o['build'] / o['bare']:.2f}",
                fmt_t(rb),
                fmt_r(o["build"], rb),
                fmt_t(o["moments_t"]),
                fmt_t(dm),
                fmt_t(rm),
                fmt_r(o["moments_t"], dm),
                fmt_r(o["moments_t"], rm),
                fmt_t(o["pdf_t"]),
                fmt_t(dp),
                fmt_t(rp),
                fmt_r(o["pdf_t"], dp),
                fmt_r(o["pdf_t"], rp),
                _e(rel_err(o["pdf"], d.get("pdf"))),
                _e(rel_err((r or {}).get("pdf"), d.get("pdf"))),
            ]
        )
        mo_err = rel_err(o["moments"], d.get("moments"))
        ref_mo_err = rel_err(o["moments"], (r or {}).get("moments"))
        results.append(
            {
                "model": name,
                "n": n,
                "ours": {k: v for k, v in o.items() if k != "graph"},
                "dense": d,
                "ref": r,
                "moments_rel_err_vs_dense": mo_err,
                "moments_rel_diff_vs_ref": ref_mo_err,
            }
        )
    imp_ours = imp_ref = None
    if cases:
        print(
            "\nEngine benchmark: times are best-of-repeats; 'x dense'/'x ref' = their time / ours "
            "(>1: ours faster); err = max|pdf - dense pdf| / max pdf"
        )
        print_table(header, rows)
        checks = [(x["model"], x["n"], x["moments_rel_err_vs_dense"], x["moments_rel_diff_vs_ref"]) for x in results]
        print(
            "moments agreement (max rel. diff): "
            + ", ".join(f"{SHORT[m]} {n}: dense {_e(e1)} ref {_e(e2)}" for m, n, e1, e2 in checks)
        )

        imp_ours = import_time(sys.executable)
        imp_ref = (
            None
            if a.no_ref
            else import_time(
                reference_env.python(), env=dict(os.environ, HOME=tempfile.gettempdir(), JAX_PLATFORMS="cpu")
            )
        )
        print(
            f"\nimport phasic (-X importtime, cumulative, best of 3): ours {fmt_t(imp_ours[0])} "
            f"(self {fmt_t(imp_ours[1])}, incl. the editable-install rebuild check), ref "
            f"{fmt_t(imp_ref[0]) if imp_ref else 'n/a'}; ratio "
            f"{fmt_r(imp_ours[0], imp_ref[0]) if imp_ref else '-'}"
        )

    large = []
    if a.full:
        for nn in (1000,):
            for which in ("ours",) + (() if a.no_ref else ("ref",)):
                print(f"# large: rabbits n={nn} ({which})", file=sys.stderr, flush=True)
                rec = run_large(nn, which, 3600 if which == "ours" else a.ref_large_timeout)
                large.append((which, nn, rec))
        print("\nLarge model (fresh process each): rabbits, build + expectation, peak RSS")
        rows = []
        for which, nn, rec in large:
            if "error" in rec:
                rows.append([which, nn, "-", f"n/a: {rec['error']}", "-", "-", "-", "-", "-"])
            else:
                rows.append(
                    [
                        which,
                        nn,
                        rec["V"],
                        fmt_t(rec["build"]),
                        fmt_t(rec["expectation_t"]),
                        fmt_t(rec["build"] + rec["expectation_t"]),
                        f"{rec['rss_kb'] / 1e6:.2f} GB",
                        f"{rec['rss_import_kb'] / 1e6:.2f} GB",
                        f"{rec['expectation']:.12g}",
                    ]
                )
        print_table(["pkg", "n", "V", "build", "expectation", "total", "peak RSS", "RSS after import", "E[T]"], rows)

    verdicts = summarize(results, cases) if results else []
    for v in verdicts:
        print(v)
    if a.json:
        Path(a.json).write_text(
            json.dumps(
                {"results": results, "import": [imp_ours, imp_ref], "large": large, "verdicts": verdicts},
                indent=1,
                default=str,
            )
        )


def _e(x):
    return "-" if x is None else f"{x:.1e}"


def summarize(results, cases):
    out = []
    big_all = [x for x in results if x["ours"]["V"] >= 5000]

    def ratios(rows, key, other):
        res = []
        for x in rows:
            src = x["ref"] if other == "ref" else x["dense"]
            t = (src or {}).get(key)
            if isinstance(t, float):
                res.append((f"{SHORT[x['model']]} {x['n']}", t / x["ours"][key]))
        return res

    for label, other, target in (("moments vs ref", "ref", 2.0), ("moments vs dense", "dense", 50.0)):
        r = ratios(big_all, "moments_t", other)
        if not r:
            out.append(f"target {label} >= {target:g}x at >= 5000 vertices: not measured")
            continue
        worst = min(v for _, v in r)
        out.append(
            f"target {label} >= {target:g}x at >= 5000 vertices: "
            f"{'met' if worst >= target else 'NOT met'} (" + ", ".join(f"{k}: {v:.1f}x" for k, v in r) + ")"
        )
    bb = [
        (f"{SHORT[x['model']]} {x['n']}", x["ours"]["build"] / x["ours"]["bare"])
        for x in results
        if x["ours"]["V"] >= 500
    ]
    if bb:
        worst = max(v for _, v in bb)
        out.append(
            f"target build <= 1.5x bare callback cost (V >= 500): "
            f"{'met' if worst <= 1.5 else 'NOT met'} (worst {worst:.2f}x; "
            + ", ".join(f"{k}: {v:.2f}x" for k, v in bb)
            + ")"
        )
    return out


if __name__ == "__main__":
    main()
