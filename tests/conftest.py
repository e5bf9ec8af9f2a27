"""Shared pytest set-up: the single-node Slurm fixture (`slurm`), a Dask cluster with a decoy
store (`decoy`, tests/dask_cluster.py), a private cache root per test
(`cache_dir`) or per module (`isolated_cache`), and the harness for checks run as another user
(`world`, `run_child`).  The models and references the tests share are in tests/models.py."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["tests.slurm_cluster", "tests.dask_cluster"]

REPO = Path(__file__).resolve().parents[1]

#: Python source a child pastes before it switches user: ``become(uid, gid)`` drops every
#: group and the login-name variables, then sets the gid and uid (only root can do this).
BECOME = textwrap.dedent("""
    def become(uid, gid):
        import os
        for name in ("USER", "LOGNAME", "LNAME", "USERNAME"):
            os.environ.pop(name, None)
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
""")


@pytest.fixture(scope="module")
def isolated_cache(tmp_path_factory):
    """A fresh PHASIC_CACHE_DIR for a whole test module (``pytestmark =
    pytest.mark.usefixtures("isolated_cache")``), restored after the module.

    Module scope (rather than ``monkeypatch``/``tmp_path``) keeps hypothesis'
    function-scoped-fixture health check quiet."""
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("phasic_cache")
        mp.setenv("PHASIC_CACHE_DIR", str(root))
        yield root


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A fresh PHASIC_CACHE_DIR for one test."""
    root = tmp_path / "phasic_cache"
    monkeypatch.setenv("PHASIC_CACHE_DIR", str(root))
    return root


@pytest.fixture
def world():
    """A fresh directory under /tmp that other users can reach (pytest's tmp_path is 0700 and
    root's), removed afterwards; for checks that drop to another uid in a child."""
    base = Path(tempfile.mkdtemp(prefix="phasic-world-", dir="/tmp"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def run_child():
    """``run_child(code, *args, timeout=90, env=None, cwd=REPO)``: run ``code`` in a fresh
    interpreter (the repository on its path, ``become(uid, gid)`` defined: see :data:`BECOME`)
    and return the JSON of its last stdout line.  A child that does not answer within
    ``timeout`` seconds fails the test instead of hanging the suite; one that fails shows its
    stderr."""

    def run(code, *args, timeout=90, env=None, cwd=REPO):
        full = dict(os.environ)
        full["PYTHONPATH"] = os.pathsep.join([str(REPO), full.get("PYTHONPATH", "")])
        full.pop("PHASIC_CACHE_LOCK_TIMEOUT", None)
        full.update(env or {})
        try:
            proc = subprocess.run(
                [sys.executable, "-c", BECOME + textwrap.dedent(code), *map(str, args)],
                cwd=cwd,
                env=full,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"the child blocked or looped: no answer within {timeout} s")
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    return run
