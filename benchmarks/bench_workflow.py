"""The example workflow through `profiles/local` and through `profiles/slurm`, side by side.

Both runs start from an empty store and an empty working directory and run the default
target of the repository's Snakefile on the embedded default config (the `make run`
workflow). The Slurm run uses the profile as a user would, adding only the partition
(`--default-resources slurm_partition=...`). As root, the script starts a private
single-node Slurm (`scripts/slurm_up.sh`) for the run and stops it afterwards; otherwise it
uses the cluster `SLURM_CONF` points at, or runs the local profile only.

    .venv/bin/python benchmarks/bench_workflow.py [--repeat N] [--json FILE] [--keep]

Prints one table (wall seconds, Slurm jobs submitted, local jobs) and the ratio against the
target (Slurm within 6x of local).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SNAKEMAKE = str(BIN / "snakemake") if (BIN / "snakemake").exists() else shutil.which("snakemake")
TARGET = 6.0


def _start_slurm():
    """``(statedir, env, partition)`` of a private Slurm started here (root only), or None."""
    if os.geteuid() != 0 or shutil.which("slurmctld") is None:
        return None
    statedir = Path(tempfile.mkdtemp(prefix="phs-bw-", dir="/tmp"))
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "slurm_up.sh"), str(statedir), "bench"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        print(f"could not start Slurm:\n{proc.stderr[-2000:]}", file=sys.stderr)
        shutil.rmtree(statedir, ignore_errors=True)
        return None
    info = dict(line.split("=", 1) for line in (statedir / "info").read_text().splitlines() if "=" in line)
    env = {**os.environ, "SLURM_CONF": str(statedir / "etc" / "slurm.conf")}
    return statedir, env, info.get("partition", "bench")


def _stop_slurm(statedir):
    subprocess.run(["bash", str(REPO / "scripts" / "slurm_down.sh"), str(statedir)], capture_output=True, timeout=300)
    shutil.rmtree(statedir, ignore_errors=True)


def run_workflow(profile, env, extra=(), keep=False):
    """Wall seconds and job counts of one run of the default workflow from an empty store."""
    tmp = Path(tempfile.mkdtemp(prefix=f"phasic-bw-{profile}-"))
    work, cache = tmp / "work", tmp / "cache"
    work.mkdir()
    cmd = [
        SNAKEMAKE,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(work),
        "--profile",
        str(REPO / "profiles" / profile),
        "--config",
        f"cache_dir={cache}",
        *extra,
    ]
    env = {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "PHASIC_CACHE_DIR": str(cache)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"the {profile} run failed (exit {proc.returncode}):\n{out[-4000:]}")
    slurm_jobs = len(set(re.findall(r"submitted with SLURM jobid (\d+)", out)))
    local = len(re.findall(r"^localrule \w+:", out, flags=re.M))
    if not keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"wall_s": wall, "slurm_jobs": slurm_jobs, "local_jobs": local, "dir": str(tmp) if keep else None}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per profile (the best is reported)")
    parser.add_argument("--json", metavar="FILE", help="also write every number as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the working directories")
    args = parser.parse_args(argv)
    if SNAKEMAKE is None:
        raise SystemExit("snakemake is not installed (pip install phasic[workflow])")

    started = _start_slurm()
    if started is not None:
        statedir, slurm_env, partition = started
    elif os.environ.get("SLURM_CONF") or shutil.which("sbatch"):
        statedir, slurm_env, partition = None, dict(os.environ), os.environ.get("PHASIC_SLURM_PARTITION", "")
    else:
        statedir = slurm_env = partition = None
    results = {"local": [], "slurm": []}
    try:
        for _ in range(args.repeat):
            results["local"].append(run_workflow("local", dict(os.environ), keep=args.keep))
            if slurm_env is not None:
                extra = ["--default-resources", f"slurm_partition={partition}"] if partition else []
                results["slurm"].append(run_workflow("slurm", slurm_env, extra, keep=args.keep))
    finally:
        if statedir is not None:
            _stop_slurm(statedir)

    best = {p: min(r, key=lambda x: x["wall_s"]) for p, r in results.items() if r}
    print("Example workflow from an empty store (default config); wall seconds, best of", args.repeat)
    print(f"{'profile':10s} {'wall s':>8s} {'Slurm jobs':>11s} {'local jobs':>11s}")
    for p, b in best.items():
        print(f"{p:10s} {b['wall_s']:8.1f} {b['slurm_jobs']:11d} {b['local_jobs']:11d}")
    if "slurm" in best:
        ratio = best["slurm"]["wall_s"] / best["local"]["wall_s"]
        verdict = "met" if ratio <= TARGET else "NOT met"
        print(f"slurm / local: {ratio:.1f}x (target <= {TARGET:g}x: {verdict})")
    else:
        print("slurm: not run (no Slurm here; run as root with the packages of scripts/install_system_deps.sh)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
