"""The models and reference helpers the tests share: one home, imported as ``tests.models``.

The callbacks live at module level of an importable module so that Dask workers can unpickle
them by reference (worker processes inherit the test process's ``sys.path``; the Dask tests,
YAML specs in the tests and ``benchmarks/bench_dask.py`` name this module), and so that a
child process can import them (``from tests.models import two_island``).

References here are written from the definitions with numpy (dense matrices), never with
phasic's own numerical routines.  The verification models (closed forms, random models,
dense phase-type formulas) live in ``tests/verification/models.py``.
"""

import hashlib
import importlib.util
import os
import re
import resource
import shutil
import subprocess
import sys
import textwrap
import time
from math import factorial
from pathlib import Path

import numpy as np

from phasic import Graph, with_ipv
from phasic.exceptions import PhasicError

REPO = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------ Kingman coalescent


@with_ipv([10])
def coalescent(state, theta=1.0):
    """Kingman coalescent of 10 lineages with numeric rates ``C(n, 2) * theta``."""
    n = state[0]
    if n <= 1:
        return []
    return [[[n - 1], n * (n - 1) / 2 * theta]]


@with_ipv([10])
def coalescent_param(state):
    """Kingman coalescent of 10 lineages, rate ``C(n, 2) * theta[0]`` (parameterised)."""
    n = state[0]
    if n <= 1:
        return []
    return [[[n - 1], [n * (n - 1) / 2]]]


@with_ipv([4])
def kingman(state):
    """Kingman coalescent of 4 lineages at rate ``C(n, 2)`` (no parameters)."""
    n = state[0]
    return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2]]


@with_ipv([4])
def coalescent_coef(state):
    """Kingman coalescent of 4 lineages with the rate as a coefficient of theta[0]."""
    n = state[0]
    return [] if n <= 1 else [[[n - 1], [n * (n - 1) / 2]]]


@with_ipv([8])
def counting_coalescent(state, theta=1.0, marker=""):
    """Kingman coalescent of 8 lineages that appends a line to ``marker`` once per build."""
    n = state[0]
    if n == 8 and marker:
        with open(marker, "a") as fh:
            fh.write(f"{os.getpid()}\n")
    if n <= 1:
        return []
    return [[[n - 1], n * (n - 1) / 2 * theta]]


@with_ipv([6])
def sleepy_coalescent(state, theta=1.0, marker="", sleep=60.0):
    """On its very first call (no ``marker`` file yet) writes its pid there and sleeps."""
    n = state[0]
    if marker and not os.path.exists(marker):
        with open(marker + ".tmp", "w") as fh:
            fh.write(str(os.getpid()))
        os.replace(marker + ".tmp", marker)
        time.sleep(sleep)
    if n <= 1:
        return []
    return [[[n - 1], n * (n - 1) / 2 * theta]]


@with_ipv([7])
def failing_coalescent(state, fail_at=4):
    """Raises ZeroDivisionError when it reaches ``fail_at`` lineages."""
    n = state[0]
    if n == fail_at:
        raise ZeroDivisionError(f"no rate defined for {n} lineages")
    if n <= 1:
        return []
    return [[[n - 1], n * (n - 1) / 2]]


# ------------------------------------------------------------------ structured coalescent, two islands


def two_island_param(state):
    """Structured coalescent of two islands; state = lineages (a, b); ``theta = (coalescence
    rate, migration rate)`` as coefficients; give ``ipv=[a0, b0]``."""
    a, b = state
    if a + b <= 1:
        return []
    out = []
    if a >= 2:
        out.append([[a - 1, b], [a * (a - 1) / 2, 0.0]])
    if b >= 2:
        out.append([[a, b - 1], [b * (b - 1) / 2, 0.0]])
    if a >= 1:
        out.append([[a - 1, b + 1], [0.0, float(a)]])
    if b >= 1:
        out.append([[a + 1, b - 1], [0.0, float(b)]])
    return out


#: :func:`two_island_param` started from 5 lineages on island 1 (the traces' test model)
two_island = with_ipv([[[5, 0], 1.0]])(two_island_param)


def two_island_graph(n):
    """The graph of :func:`two_island_param` from ``n`` lineages on island 1."""
    return Graph(with_ipv([[[n, 0], 1.0]])(two_island_param))


def two_island_rates(state, m=0.5, coal=1.0):
    """:func:`two_island_param` with numeric rates: migration ``m``, coalescence ``coal``."""
    a, b = state
    if a + b <= 1:
        return []
    out = []
    if a >= 2:
        out.append([[a - 1, b], a * (a - 1) / 2 * coal])
    if b >= 2:
        out.append([[a, b - 1], b * (b - 1) / 2 * coal])
    if a >= 1:
        out.append([[a - 1, b + 1], a * m])
    if b >= 1:
        out.append([[a + 1, b - 1], b * m])
    return out


def one_way_islands_param(state):
    """Two islands with migration from island 1 to island 2 only (an acyclic state space);
    ``theta = (coalescence rate, migration rate)``; give ``ipv=[n, 0]``."""
    a, b = state
    if a + b <= 1:
        return []
    out = []
    if a >= 2:
        out.append([[a - 1, b], [a * (a - 1) / 2, 0.0]])
    if b >= 2:
        out.append([[a, b - 1], [b * (b - 1) / 2, 0.0]])
    if a >= 1:
        out.append([[a - 1, b + 1], [0.0, float(a)]])
    return out


# ------------------------------------------------------------------ block-counting coalescent


def block_counting_transitions(state):
    """Block-counting coalescent; entry i-1 counts lineages with i descendants.

    The state has length n so that the MRCA (one lineage with n descendants) is
    representable; entries 0..n-2 are the SFS classes 1..n-1.
    """
    a = [int(x) for x in state]
    n = len(a)
    out = []
    for i in range(n):
        if a[i] == 0:
            continue
        for j in range(i, n):
            if a[j] == 0:
                continue
            rate = a[i] * (a[i] - 1) / 2 if i == j else a[i] * a[j]
            if rate <= 0:
                continue
            b = list(a)
            b[i] -= 1
            b[j] -= 1
            b[i + j + 1] += 1  # sizes (i+1) + (j+1) -> index i+j+1
            out.append([b, float(rate)])
    return out


# ------------------------------------------------------------------ a walk on a grid


def grid_walk(state):
    """Random walk on {1..4}^2 with a fixed neighbour order, absorbed at (4, 4)."""
    x, y = int(state[0]), int(state[1])
    if (x, y) == (4, 4):
        return []
    out = []
    for dx, dy, rate in ((1, 0, 1.0), (0, 1, 2.0), (-1, 0, 0.5), (0, -1, 0.25)):
        nx, ny = x + dx, y + dy
        if 1 <= nx <= 4 and 1 <= ny <= 4:
            out.append([[nx, ny], rate * (nx + 2 * ny)])
    return out


#: two start states of :func:`grid_walk`
GRID_IPV = [[[2, 1], 0.25], [[1, 3], 0.75]]


# ------------------------------------------------------------------ graphs built by hand


def random_param_graph(seed, n=40, p=3, extra=3):
    """A random parameterised graph with cycles, built by hand."""
    rng = np.random.default_rng(seed)
    g = Graph(state_length=1, theta_dim=p)
    vs = [g.find_or_create_vertex([i + 1]) for i in range(n)]
    absorb = g.find_or_create_vertex([n + 1])
    g.add_edge(0, vs[0], 0.6)
    g.add_edge(0, vs[1], 0.4)
    for i, v in enumerate(vs):
        targets = set(rng.choice(n, size=extra, replace=False).tolist()) - {i}
        for t in targets:
            g.add_edge(v, vs[t], 0.0, coefficients=rng.uniform(0, 1, p))
        g.add_edge(v, absorb, 0.0, coefficients=rng.uniform(0.05, 0.5, p))
    return g


def good_graph(n=6):
    """A death process n -> n-1 -> ... -> 1 at rate k from state k (n + 1 vertices)."""
    return Graph(with_ipv([n])(lambda s: [] if s[0] <= 1 else [[[int(s[0]) - 1], float(s[0])]]))


# ------------------------------------------------------------------ references and checks


def dense_moments(g, k, rewards=None):
    """The first ``k`` (reward) moments of ``g`` at its current weights by dense algebra:
    ``m_j = j! alpha (U diag r)^j 1`` with ``U = (-S)^-1``."""
    alpha, S = g.as_matrices()
    tv = g.transient_vertices()
    r = np.ones(tv.size) if rewards is None else np.asarray(rewards)[tv]
    U = np.linalg.inv(-S)
    y, out = np.ones(tv.size), []
    for j in range(1, k + 1):
        y = U @ (r * y)
        out.append(factorial(j) * alpha @ y)
    return np.array(out)


def assert_value_error(exc):
    """A bad value is a phasic error that is also a ValueError or TypeError."""
    assert isinstance(exc, PhasicError)
    assert isinstance(exc, (ValueError, TypeError))


def K(i):
    """A store key (64 hex digits) made from ``i``."""
    return hashlib.sha256(str(i).encode()).hexdigest()


def run_limited(argv, timeout, limit_bytes=None, env=None):
    """Runs ``argv`` in the repository with one BLAS thread and, given ``limit_bytes``, that much
    address space; returns the CompletedProcess (text)."""

    def limit():
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, preexec_fn=limit)


def flip_data_byte(path, dataset):
    """Flips one byte inside ``dataset``'s data in the HDF5 store entry at ``path``."""
    import h5py

    with h5py.File(path, "r") as f:
        offset = f[dataset].id.get_offset()
    data = bytearray(path.read_bytes())
    data[offset + 5] ^= 0xFF
    path.write_bytes(bytes(data))


def child_env(**extra):
    """``os.environ`` with the repository on PYTHONPATH (a child process can import ``tests``),
    updated with ``extra``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


# ------------------------------------------------------------------ the phasic command

#: callbacks the ``phasic`` command's tests load with ``--file models_cli.py``
CLI_MODEL = textwrap.dedent("""
    from phasic import with_ipv

    @with_ipv([4])
    def coalescent(state, theta=1.0):
        n = state[0]
        return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * theta]]

    def chain(state, n=3, rate=1.5, label="x"):
        k = state[0]
        return [] if k >= n else [[[k + 1], rate]]
""")


def chain_up(state, n=3):
    """A chain 0 -> 1 -> ... -> n at rate 1.5 (give ``ipv=[[[0], 1.0]]``)."""
    k = state[0]
    return [] if k >= n else [[[k + 1], 1.5]]


def store_two_graphs_and_a_trace(root):
    """Two real graphs stored under the keys a..a and b..b (no key material) and a real trace;
    returns the store and the trace's key."""
    from phasic.store import Store
    from phasic.traces import ensure_trace

    store = Store(root)
    for n, key in ((6, "a" * 64), (2, "b" * 64)):
        g = Graph(chain_up, n=n, ipv=[[[0], 1.0]])
        arrays, attrs = g.to_arrays(compact=True)
        store.put("graphs", key, arrays, {**attrs, "callback": "_chain"})
    return store, ensure_trace(g, store)


def one_line_error(out):
    """The one ``phasic: error:`` line of a command that failed with exit 2 (no traceback)."""
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert len(lines) == 1 and lines[0].startswith("phasic: error:"), out.stderr
    assert "Traceback" not in out.stderr
    return lines[0]


# ------------------------------------------------------------------ the Snakemake workflow

#: the interpreter's directory, where the virtualenv's console scripts are
BIN = Path(sys.executable).parent

#: the workflow this repository ships
SNAKEFILE = REPO / "Snakefile"
SNAKEMAKE = str(BIN / "snakemake") if (BIN / "snakemake").exists() else shutil.which("snakemake")

#: tiny models for the workflow tests (a module written to each test's directory)
WORKFLOW_MODELS_PY = textwrap.dedent('''
    """Tiny models for the workflow tests; each callback appends the states it expands to a marker."""
    from phasic import with_ipv


    def _mark(marker, state):
        if marker:
            with open(marker, "a") as fh:
                fh.write(" ".join(str(x) for x in state) + "\\n")


    @with_ipv([4])
    def kingman(state, marker=""):
        _mark(marker, state)
        n = state[0]
        if n <= 1:
            return []
        return [[[n - 1], [n * (n - 1) / 2]]]


    @with_ipv([4, 0, 0, 0])
    def block_counting(state, marker=""):
        _mark(marker, state)
        n = len(state)
        if sum(state) <= 1:
            return []
        edges = []
        for i in range(n):
            for j in range(i, n):
                pairs = state[i] * (state[i] - 1) / 2 if i == j else state[i] * state[j]
                if pairs > 0:
                    child = list(state)
                    child[i] -= 1
                    child[j] -= 1
                    child[i + j + 1] += 1
                    edges.append([child, pairs])
        return edges


    @with_ipv([4])
    def countdown(state, p=0.5, marker=""):
        _mark(marker, state)
        n = state[0]
        return [] if n <= 1 else [[[n - 1], p]]


    @with_ipv([4])
    def broken(state, marker=""):
        _mark(marker, state)
        n = state[0]
        if n == 2:
            raise ValueError("broken on purpose at n=2")
        return [] if n <= 1 else [[[n - 1], 1.0]]
''')


def write_config(path, models, **extra):
    """Writes ``{"models": models, **extra}`` as YAML to ``path``; returns ``path``."""
    import yaml

    path.write_text(yaml.safe_dump({"models": models, **extra}, sort_keys=False))
    return path


def job_counts(output):
    """``{rule: count}`` from Snakemake's "Job stats" table."""
    counts = {}
    if "Job stats:" not in output:
        return counts
    table = output.split("Job stats:", 1)[1]
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    return counts


def load_callback(path, name):
    """The attribute ``name`` of the Python file ``path``, loaded as a fresh module."""
    spec = importlib.util.spec_from_file_location(f"wf_models_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)
