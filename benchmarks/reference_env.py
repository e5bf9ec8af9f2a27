"""The reference environment: the published ``phasic`` package in its own venv.

The benchmarks compare this repository's phasic against the published package
(``phasic==0.32.1`` on PyPI). That package is installed into a separate virtual environment
``benchmarks/.ref-venv`` (git-ignored) and is only ever *called*, in a subprocess running its
own interpreter, through a small driver script that prints JSON.

Safety: the published package declares the dependencies ``eigen`` and ``mpfr``; on PyPI those
names belong to unrelated, untrusted packages. They must never be installed, so the package
is installed strictly with ``pip install --no-deps`` and its runtime needs are installed by
name from :data:`RUNTIME_PACKAGES`. :func:`ensure` refuses to continue if either name is
present in the venv.

Usage::

    python benchmarks/reference_env.py          # create/check the venv, print its status
    python benchmarks/reference_env.py --check  # only report; never installs
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".ref-venv"
REF_SPEC = "phasic==0.32.1"
RUNTIME_PACKAGES = ["numpy", "jax", "jaxlib", "pandas", "matplotlib", "seaborn", "tqdm", "requests"]
FORBIDDEN = ("eigen", "mpfr")
MARKER = VENV / ".phasic-ref-ok"


def python() -> Path:
    """Path of the reference venv's interpreter."""
    return VENV / "bin" / "python"


def _pip(*args: str) -> None:
    cmd = [str(python()), "-m", "pip", "install", "--disable-pip-version-check", *args]
    print("reference_env:", " ".join(cmd[3:]), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, stdout=sys.stderr)


def _installed() -> set[str]:
    out = subprocess.run(
        [str(python()), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {d["name"].lower() for d in json.loads(out)}


def _assert_safe() -> None:
    bad = sorted(set(FORBIDDEN) & _installed())
    if bad:
        raise RuntimeError(
            f"the reference venv {str(VENV)!r} contains {bad!r}, which must never be installed "
            f"(untrusted packages squatting phasic's declared dependencies); delete the venv "
            f"with `rm -rf {VENV}` and rerun this script"
        )


def ensure(install: bool = True) -> tuple[bool, str]:
    """Creates the reference venv if needed (idempotent).

    Parameters
    ----------
    install : bool
        When False, only checks; never creates or installs anything.

    Returns
    -------
    (ok, reason) : the venv is usable, or why not (a short message for the tables).
    """
    if MARKER.exists() and python().exists():
        return True, "ok"
    if not install:
        return False, "reference venv not created (run benchmarks/reference_env.py)"
    try:
        if not python().exists():
            venv.EnvBuilder(with_pip=True, clear=False).create(VENV)
        _pip("--no-deps", REF_SPEC)  # NEVER without --no-deps: see the module docstring
        _pip(*RUNTIME_PACKAGES)
        _assert_safe()
    except (subprocess.CalledProcessError, OSError, RuntimeError) as exc:
        return False, f"could not create the reference venv: {exc}"
    MARKER.write_text(REF_SPEC + "\n")
    return True, "ok"


def run_driver(source: str, args=(), timeout: float = 600.0, env: dict | None = None):
    """Runs `source` with the reference interpreter and collects the JSON lines it prints.

    The driver prints one JSON object per line on stdout (other lines are ignored), so a
    driver that dies or times out part-way still returns what it finished.

    Parameters
    ----------
    source : str
        Python source of the driver; it is written to a temporary file and run there,
        with ``sys.argv[1:] = args`` and ``PHASIC_CACHE_DIR``/``HOME`` in that temp dir.
    args : sequence of str
    timeout : float
        Seconds before the driver is killed.
    env : dict, optional
        Extra environment variables.

    Returns
    -------
    (records, error) : list of dicts, and None or a short reason ("n/a: <reason>" material).
    """
    ok, why = ensure(install=False)
    if not ok:
        return [], why
    with tempfile.TemporaryDirectory(prefix="phasic-ref-") as tmp:
        path = Path(tmp) / "driver.py"
        path.write_text(source)
        full_env = dict(os.environ)
        full_env.pop("PYTHONPATH", None)
        full_env["PHASIC_CACHE_DIR"] = str(Path(tmp) / "cache")
        full_env["HOME"] = tmp  # the published package writes its caches under ~
        full_env.setdefault("JAX_PLATFORMS", "cpu")
        if env:
            full_env.update(env)
        error = None
        try:
            proc = subprocess.run(
                [str(python()), str(path), *map(str, args)],
                cwd=tmp,
                env=full_env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            out, err, rc = proc.stdout, proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            err, rc = "", None
            error = f"timed out after {timeout:.0f} s"
    records = []
    for line in out.splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    if error is None and rc != 0:
        tail = (err.strip().splitlines() or ["no output"])[-1]
        error = f"exit {rc}: {tail[:160]}"
    return records, error


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ok, why = ensure(install="--check" not in argv)
    if ok:
        recs, err = run_driver(
            "import importlib.metadata as m, json, phasic, sys\n"
            "print(json.dumps({'dist': m.version('phasic'), "
            "'python': sys.version.split()[0]}))\n",
            timeout=300,
        )
        print(f"reference venv {VENV}: {recs[-1] if recs else err}")
        return 0 if recs and err is None else 1
    print(f"reference venv {VENV}: {why}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
