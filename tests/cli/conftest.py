"""The ``phasic`` command's tests: the ``env`` fixture, one test's cache, JAX cache and home with a
runner of the real console script; ``$HOME/.jax_cache`` always holds a file that no command
given another JAX directory may touch."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.models import CLI_MODEL

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "phasic"


class Env:
    """Paths of one test's cache, JAX cache and home, and a runner of the ``phasic`` command."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.cache = tmp_path / "cache"
        self.jax = tmp_path / "jax"
        self.home = tmp_path / "home"
        self.home_jax = self.home / ".jax_cache"
        self.home_jax.mkdir(parents=True)
        (self.home_jax / "home-entry-cache").write_bytes(b"precious")
        self.jax.mkdir()
        (self.jax / "configured-entry-cache").write_bytes(b"x" * 100)

    def env(self, jax=True):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
        env["PHASIC_CACHE_DIR"] = str(self.cache)
        env["HOME"] = str(self.home)
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        if jax:
            env["JAX_COMPILATION_CACHE_DIR"] = str(self.jax)
        return env

    def run(self, *args, jax=True, stdin=None, cwd=None, text=True):
        cmd = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "phasic.cli"]
        return subprocess.run(
            cmd + [str(a) for a in args],
            env=self.env(jax),
            capture_output=True,
            text=text,
            input=stdin,
            timeout=120,
            cwd=cwd or self.tmp,
        )

    def build(self, code):
        """Run Python `code` (with the model module importable) against this cache."""
        (self.tmp / "models_cli.py").write_text(CLI_MODEL)
        env = self.env()
        env["PYTHONPATH"] = os.pathsep.join([str(self.tmp), env["PYTHONPATH"]])
        out = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.tmp,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)
