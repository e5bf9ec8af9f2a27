"""Timing helper shared by the benchmark scripts and the drivers they run under the
published package's interpreter (plain Python: no phasic import)."""

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def best_of(fn, setup=None, reps=5, budget=2.0):
    """(min seconds, last result) over up to `reps` runs, stopping after `budget` seconds."""
    best, spent, out = float("inf"), 0.0, None
    for _ in range(reps):
        arg = setup() if setup else None
        t0 = time.perf_counter()
        res = fn(arg) if setup else fn()
        dt = time.perf_counter() - t0
        out = res  # the previous result is freed here, outside the timed region
        best, spent = min(best, dt), spent + dt
        if spent >= budget:
            break
    return best, out


def compile_bytecode(pycache):
    """Compiles phasic (and models.py) into a private bytecode cache and returns the
    environment for child processes that uses it (``PYTHONPYCACHEPREFIX``).

    The meson-python editable install writes no .pyc files (and this machine sets
    PYTHONDONTWRITEBYTECODE), so without it every fresh child would spend ~20 ms compiling
    phasic's modules, which a pip-installed phasic never does."""
    env = dict(os.environ, PYTHONPYCACHEPREFIX=str(pycache))
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(HERE.parent / "phasic"), str(HERE / "models.py")],
        env=env,
        check=True,
        capture_output=True,
    )
    return env


def print_table(title, header, rows):
    """Prints `rows` under `header` as right-aligned columns, after a blank line and `title`."""
    print(f"\n{title}")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(str(h).rjust(w) for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(c).rjust(w) for c, w in zip(r, widths)))
