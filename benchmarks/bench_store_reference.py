"""Graph cache across processes: this repository's phasic vs the published package.

For each model, two fresh processes per package share one cache directory: the first builds
the graph and stores it (``Graph(cb, cache=True)``; the reference: ``graph_cache=True``),
the second loads it. Only the ``Graph(...)`` call is timed (imports excluded). The
reference runs in benchmarks/.ref-venv (see reference_env.py) with ``HOME`` pointed at the
temporary directory, because its cache lives under ``~/.phasic_cache``.

Usage::

    python benchmarks/bench_store_reference.py [--quick | --full] [--no-ref]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import reference_env  # noqa: E402
import timing  # noqa: E402

CASES = {
    "quick": [("block_counting", 25), ("rabbits", 100)],
    "default": [("block_counting", 25), ("block_counting", 30), ("rabbits", 150), ("two_island", 90)],
    "full": [("block_counting", 30), ("block_counting", 35), ("rabbits", 300), ("two_island", 90)],
}

DRIVER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import phasic, models
cb, ipv = models.spec(sys.argv[2], int(sys.argv[3]))
kw = {"graph_cache": True} if sys.argv[4] == "ref" else {"cache": True}
t0 = time.perf_counter()
g = phasic.Graph(cb, ipv=ipv, **kw)
t = time.perf_counter() - t0
print(json.dumps({"t": t, "V": int(g.vertices_length()), "E": float(g.expectation()) if sys.argv[2] != "two_island" else None}))
"""


def _size(root):
    """Bytes of every file under ``root`` (a cache directory)."""
    return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())


def ours(model, n, cache_dir):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "drv.py"
        path.write_text(DRIVER)
        env = dict(timing.compile_bytecode(Path(tmp) / "pycache"), PHASIC_CACHE_DIR=str(cache_dir))
        out = []
        for _ in range(2):
            p = subprocess.run(
                [sys.executable, str(path), str(HERE), model, str(n), "ours"],
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
                cwd=tmp,
            )
            lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
            out.append(
                json.loads(lines[-1]) if lines else {"error": (p.stderr.strip().splitlines() or ["?"])[-1][:120]}
            )
        return out


def ref(model, n, home):
    out = []
    for _ in range(2):
        recs, err = reference_env.run_driver(
            DRIVER,
            [str(HERE), model, str(n), "ref"],
            timeout=900,
            env={"HOME": str(home), "PHASIC_CACHE_DIR": str(home / "c")},
        )
        out.append(recs[-1] if recs else {"error": err or "no output"})
    return out


def ft(x):
    return f"{x * 1e3:.1f}ms" if x < 1 else f"{x:.2f}s"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--no-ref", action="store_true")
    a = ap.parse_args(argv)
    mode = "quick" if a.quick else "full" if a.full else "default"
    use_ref = not a.no_ref and reference_env.ensure(install=True)[0]
    rows = []
    for model, n in CASES[mode]:
        print(f"# {model} n={n}", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="phasic-store-ref-") as tmp:
            o = ours(model, n, Path(tmp) / "ours")
            size_o = _size(Path(tmp) / "ours" / "graphs")
            r = ref(model, n, Path(tmp)) if use_ref else [{"error": "--no-ref"}] * 2
            size_r = _size(Path(tmp) / ".phasic_cache") if use_ref else 0
        cells = [model, n, o[0].get("V", "-")]
        for pair in (o, r):
            if all("t" in x for x in pair):
                cells += [ft(pair[0]["t"]), ft(pair[1]["t"]), f"{pair[0]['t'] / pair[1]['t']:.1f}x"]
            else:
                cells += [f"n/a: {next(x['error'] for x in pair if 'error' in x)}", "-", "-"]
        lo, lr = o[1].get("t"), r[1].get("t")
        cells.append(f"{lr / lo:.1f}x" if lo and lr else "-")
        same = o[1].get("E") is None or r[1].get("E") is None or abs(o[1]["E"] - r[1]["E"]) <= 1e-9 * abs(r[1]["E"])
        cells.append("yes" if same else "NO")
        cells += [
            f"{size_o / 1024:.0f}KB",
            f"{size_r / 1024:.0f}KB" if size_r else "-",
            f"{size_r / size_o:.1f}x" if size_r and size_o else "-",
        ]
        rows.append(cells)
    header = [
        "model",
        "n",
        "V",
        "ours build+store",
        "ours load",
        "build/load",
        "ref build+store",
        "ref load",
        "build/load",
        "ref load / ours load",
        "same E[T]",
        "ours file",
        "ref file",
        "ref/ours size",
    ]
    widths = [max(len(str(x[i])) for x in rows + [header]) for i in range(len(header))]
    print(f"\nGraph cache across fresh processes ({mode}); times of the Graph(...) call only")
    print("  ".join(str(h).rjust(w) for h, w in zip(header, widths)))
    print("-" * (sum(widths) + 2 * len(widths)))
    for r in rows:
        print("  ".join(str(c).rjust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main()
