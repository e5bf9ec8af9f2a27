"""Model callbacks for the Dask tests and benchmark.

They live in an importable module (``tests.dask_models``) so that Dask workers can unpickle
them by reference: worker processes inherit the test process's ``sys.path``.
"""

import os
import time

from phasic import with_ipv


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


def two_island(state, m=0.5, coal=1.0):
    """Structured coalescent of two islands; state = lineages (a, b); give ``ipv=[a0, b0]``."""
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


def two_island_param(state):
    """:func:`two_island` with ``theta = (coalescence rate, migration rate)`` as coefficients."""
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
