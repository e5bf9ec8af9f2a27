"""The examples run from a checkout, and the fitting example does what it says: recovers its
parameters by maximum likelihood, and a second run reuses the stored graph and trace."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script, tmp_path):
    env = dict(os.environ, PHASIC_CACHE_DIR=str(tmp_path / "cache"), JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax"))
    p = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


def _entries(root):
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*.h5")}


@pytest.mark.slow
def test_fit_structured_coalescent_recovers_parameters_and_reuses_caches(tmp_path):
    out1 = _run("fit_structured_coalescent.py", tmp_path)
    rows = dict(re.findall(r"^(coalescence|migration)\s+(\S+\s+\S+\s+\S+)$", out1, re.M))
    assert set(rows) == {"coalescence", "migration"}, out1
    for name, row in rows.items():
        true, est, se = map(float, row.split())
        assert se > 0 and abs(est - true) < 4 * se, (name, true, est, se)
    assert "converged=True" in out1
    stored = _entries(tmp_path / "cache")
    assert any(k.startswith("graphs/") for k in stored) and any(k.startswith("traces/") for k in stored)
    # the JAX cache is the configured one (whether a compile is kept depends on how long it
    # took, against CompilationConfig's min_cache_time; tests/jax/test_cache.py covers reuse)
    assert f"Cache directory: {tmp_path / 'jax'}" in out1

    out2 = _run("fit_structured_coalescent.py", tmp_path)
    assert _entries(tmp_path / "cache") == stored  # loaded, nothing rebuilt or rewritten
    assert re.findall(r"^(?:coalescence|migration).*$", out2, re.M) == re.findall(
        r"^(?:coalescence|migration).*$", out1, re.M
    )


def test_moments_table_example(tmp_path):
    out = _run("moments_table.py", tmp_path)
    row = re.search(r"^kingman\s+(\d+)\s+(\S+)\s+(\S+)", out, re.M)
    assert row and "two_island" in out, out
    # Kingman n=10 at theta=2: independent exponential stages with rates 2 C(k, 2)
    rates = [2.0 * k * (k - 1) / 2 for k in range(2, 11)]
    assert int(row.group(1)) == 11
    assert float(row.group(2)) == pytest.approx(sum(1 / r for r in rates), abs=1e-6)
    assert float(row.group(3)) == pytest.approx(sum(1 / r**2 for r in rates), abs=1e-6)
