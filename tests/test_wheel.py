"""phasic from a plain wheel: the issue's user session runs from a built-and-installed wheel,
in a fresh virtual environment, outside the source tree.

The published package's ``Graph.pmf_from_graph`` fails to run from its released wheel; this
test builds ours (``pip wheel``), installs it into an empty venv (``pip --python ...
install``) and runs the traces/JAX session there, in two processes: the first records and
stores the trace, the second loads it. Values are checked against dense formulas written
here (numpy/scipy in this process), not against phasic's own output. The venv sees the
dependencies (numpy, h5py, jax) through a .pth line naming this environment's
site-packages; phasic itself must come from the wheel (checked: ``phasic.__file__``).
"""

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

SESSION = r"""
import json, os, sys
import phasic
from phasic import Graph, get_trace_cache_stats, pmf_from_graph


def model(state):  # 1 <-> 2 -> 3 -> absorbed, rates a, b, a and a + b
    s = int(state[0])
    return {1: [[[2], [1.0, 0.0]]],
            2: [[[1], [0.0, 1.0]], [[3], [1.0, 0.0]]],
            3: [[[4], [1.0, 1.0]]]}.get(s, [])


g = Graph(model, ipv=[[[1], 1.0]], hierarchical=True)
moments = []
for th in ([1.0, 0.5], [2.0, 0.1]):
    g.update_weights(th)
    moments.append(g.moments(2))
import jax, jax.numpy as jnp
f = pmf_from_graph(g)
times = [0.1, 0.7, 2.0, 5.0]
theta = jnp.array([1.0, 0.5])
dens = f(theta, jnp.array(times))
grad = jax.grad(lambda th: jnp.log(f(th, jnp.array(times))).sum())(theta)
same = g.pmf_from_graph()(theta, jnp.array(times))
print(json.dumps(dict(file=phasic.__file__, moments=moments, dens=[float(x) for x in dens],
                      same=[float(x) for x in same], grad=[float(x) for x in grad],
                      recorded=g._ll.hierarchy_stats is not None,
                      traces=get_trace_cache_stats()["total_files"])))
"""


def dense(th):
    a, b = th
    S = np.array([[-a, a, 0.0], [b, -(a + b), a], [0.0, 0.0, -(a + b)]])
    return np.array([1.0, 0.0, 0.0]), S, -S.sum(axis=1)


def reference(th, times):
    from scipy.linalg import expm

    alpha, S, s = dense(th)
    U = np.linalg.inv(-S)
    m = [alpha @ U @ np.ones(3), 2 * alpha @ U @ U @ np.ones(3)]
    return m, np.array([alpha @ expm(S * t) @ s for t in times])


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", "-w", str(dist), str(REPO)],
        check=True,
        timeout=900,
    )
    wheels = list(dist.glob("phasic-*.whl"))
    assert len(wheels) == 1, wheels
    env = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    py = env / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "-q",
            "--no-deps",
            "--no-compile",
            str(wheels[0]),
        ],
        check=True,
        timeout=300,
    )
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # dependencies from this environment, after the venv's own site-packages; a .pth line
    # adds the directory without running the .pth files in it (the editable install's hook)
    Path(site, "_deps_from_test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return dict(root=root, env=env, py=py, wheel=wheels[0])


def run_session(venv, home):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHASIC_", "JAX_", "PYTHON"))}
    env.update(HOME=str(home), JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [str(venv["py"]), "-c", SESSION], cwd=home, env=env, check=True, capture_output=True, text=True, timeout=300
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_wheel_contents(venv):
    import zipfile

    names = set(zipfile.ZipFile(venv["wheel"]).namelist())
    assert any(n.startswith("phasic/_core") and n.endswith(".so") for n in names), names
    for mod in (REPO / "phasic").rglob("*.py"):
        assert mod.relative_to(REPO).as_posix() in names, mod
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "phasic = phasic.cli:main" in zipfile.ZipFile(venv["wheel"]).read(entry).decode()


def test_session_from_the_wheel(venv, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    first, second = run_session(venv, home), run_session(venv, home)
    for run in (first, second):
        assert Path(run["file"]).is_relative_to(venv["env"]), run["file"]  # the wheel, not the tree
        for th, m in zip(([1.0, 0.5], [2.0, 0.1]), run["moments"]):
            np.testing.assert_allclose(m, reference(th, [])[0], rtol=1e-12)
        want = reference([1.0, 0.5], [0.1, 0.7, 2.0, 5.0])[1]
        np.testing.assert_allclose(run["dens"], want, rtol=1e-9)
        np.testing.assert_allclose(run["same"], want, rtol=1e-9)
        # gradient of the log-likelihood by central differences of the dense reference
        fd = []
        for i in range(2):
            e = np.eye(2)[i] * 1e-6
            lo = np.log(reference(np.array([1.0, 0.5]) - e, [0.1, 0.7, 2.0, 5.0])[1]).sum()
            hi = np.log(reference(np.array([1.0, 0.5]) + e, [0.1, 0.7, 2.0, 5.0])[1]).sum()
            fd.append((hi - lo) / 2e-6)
        np.testing.assert_allclose(run["grad"], fd, rtol=1e-6)
    assert first["recorded"] is True and first["traces"] >= 1  # recorded and stored
    assert second["recorded"] is False  # loaded: no elimination
    assert second["traces"] == first["traces"]
    assert (home / ".phasic_cache").is_dir()  # the default store, under HOME


def test_cli_entry_point(venv, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHASIC_", "PYTHON"))}
    env["HOME"] = str(tmp_path)
    out = subprocess.run(
        [str(venv["env"] / "bin" / "phasic"), "--help"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "usage" in out.stdout.lower()
