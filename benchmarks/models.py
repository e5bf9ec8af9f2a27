"""Model callbacks used by the benchmarks.

Plain Python with no imports of phasic, so that the same file serves this repository's
package and the published reference package (whose driver runs in another venv and imports
this module by path). Each callback takes the state (a numpy int32 array, as both packages
pass it) and returns ``[[next_state, rate], ...]``; ``[]`` marks an absorbing state.

Use :func:`spec` to get ``(callback, ipv)`` for a model and a size::

    cb, ipv = spec("block_counting", 20)
    g = phasic.Graph(cb, ipv=ipv)

Models
------
kingman
    Kingman coalescent counting lineages: state ``[k]``; rate ``C(k, 2)`` to ``[k - 1]``.
block_counting
    Block-counting coalescent: state = counts of lineages with ``i`` descendants,
    ``i = 1..n`` (vector length n). Each pair of lineages merges at rate 1: an i- and a
    j-lineage give an (i+j)-lineage, i.e. rate ``k_i k_j`` for i != j and ``C(k_i, 2)``
    within a class. Absorbing at one lineage. ``p(n)`` vertices (integer partitions).
rabbits
    The rabbit-island model of Roikjer, Hobolth & Munch (2022): state ``(left, right)``;
    each rabbit moves to the other island at rate 1; the left island floods at rate 2 and
    the right at rate 4, drowning every rabbit on it. Starts at ``(n, 0)``; absorbing when no
    rabbit is left. About ``(n+1)(n+2)/2`` vertices.
two_island
    Parameterised two-island structured coalescent: state ``(a, b)`` lineages per island;
    coalescence in an island at ``C(a, 2) * theta[0]`` (coefficients ``[C(a, 2), 0]``),
    each lineage migrates at ``theta[1]`` (coefficients ``a * [0, 1]``). Starts with all
    ``n`` lineages in island 1; absorbing at one lineage. ``n (n + 3) / 2`` vertices plus
    the start vertex; each fixed total ``a + b`` is one strongly connected component.
"""

from __future__ import annotations


def kingman(state):
    k = int(state[0])
    if k <= 1:
        return []
    return [[[k - 1], k * (k - 1) / 2]]


def block_counting(state):
    s = state.tolist() if hasattr(state, "tolist") else list(state)
    nz = [i for i, c in enumerate(s) if c]
    if sum(s) <= 1:
        return []
    out = []
    for a, i in enumerate(nz):
        ki = s[i]
        if ki >= 2:  # two (i+1)-lineages merge into one 2(i+1)-lineage
            nxt = s.copy()
            nxt[i] -= 2
            nxt[2 * i + 1] += 1
            out.append([nxt, ki * (ki - 1) / 2])
        for j in nz[a + 1 :]:  # an (i+1)- and a (j+1)-lineage merge
            nxt = s.copy()
            nxt[i] -= 1
            nxt[j] -= 1
            nxt[i + j + 1] += 1
            out.append([nxt, float(ki * s[j])])
    return out


def rabbits(state, flood_left=2.0, flood_right=4.0):
    left, right = int(state[0]), int(state[1])
    out = []
    if left > 0:
        out.append([[left - 1, right + 1], float(left)])
        out.append([[0, right], flood_left])
    if right > 0:
        out.append([[left + 1, right - 1], float(right)])
        out.append([[left, 0], flood_right])
    return out


def two_island(state):
    a, b = int(state[0]), int(state[1])
    if a + b <= 1:
        return []
    out = []
    if a >= 2:
        out.append([[a - 1, b], [a * (a - 1) / 2, 0.0]])
    if b >= 2:
        out.append([[a, b - 1], [b * (b - 1) / 2, 0.0]])
    if a > 0:
        out.append([[a - 1, b + 1], [0.0, float(a)]])
    if b > 0:
        out.append([[a + 1, b - 1], [0.0, float(b)]])
    return out


def _ipv(state):
    return [[list(state), 1.0]]


def spec(name: str, n: int):
    """``(callback, ipv)`` for model `name` of size `n` (see the module docstring)."""
    if name == "kingman":
        return kingman, _ipv([n])
    if name == "block_counting":
        return block_counting, _ipv([n] + [0] * (n - 1))
    if name == "rabbits":
        return rabbits, _ipv([n, 0])
    if name == "two_island":
        return two_island, _ipv([n, 0])
    raise ValueError(f"unknown benchmark model {name!r}; expected kingman, block_counting, rabbits or two_island")


def expected_vertices(name: str, n: int) -> int:
    """Vertex count (start vertex included) for the table's size column."""
    if name == "kingman":
        return n + 1
    if name == "rabbits":
        return (n + 1) * (n + 2) // 2 + 1
    if name == "two_island":
        return n * (n + 3) // 2 + 1
    if name == "block_counting":
        p = [1] + [0] * n  # integer partitions of n
        for part in range(1, n + 1):
            for m in range(part, n + 1):
                p[m] += p[m - part]
        return p[n] + 1
    raise ValueError(f"unknown benchmark model {name!r}")
