"""The standard coalescent state spaces, as library callbacks.

Every callback is a plain module-level function with keyword parameters, so
``Graph(callback, ipv=..., **params)`` builds it, ``cache=True`` keys it like any user
callback, and a user can wrap one to add transitions (see the example in
:func:`lineage_counting`). Rates are coefficient lists, so one graph serves every size,
rate and time; the parameter vector is laid out as

``theta = [coal_0, ..., coal_{D-1}, move_0, ..., move_{M-1}]``

``coal_d``: the rate at which one pair of lineages in deme ``d`` coalesces (``1 / (2 N_d)`` per
generation for a diploid size ``N_d``); ``move_i``: the rate at which each lineage in deme
``moves[i][0]`` moves to deme ``moves[i][1]`` (backwards in time: migration, and the edges
that carry lineages of a deme that has ended into its ancestors).

States: ``lineage_counting`` counts lineages per deme (``D`` entries); ``block_counting``
counts, per deme, the lineages of each type ``b`` (the numbers of sampled descendants in each
sampled deme), ``D * B`` entries with ``B`` types (see :func:`block_types`). A state with one
lineage left is absorbing (the most recent common ancestor).
"""

from __future__ import annotations

import functools
import itertools
from math import comb, prod

import numpy as np

from phasic import _core
from phasic.exceptions import ParameterError, StateSpaceTooLarge


def _add(out, state, coef_index, value, p):
    key = tuple(state)
    row = out.get(key)
    if row is None:
        row = out[key] = [0.0] * p
    row[coef_index] += value


def lineage_counting(state, *, n_demes=1, moves=()):
    """Lineages per deme: coalescence within demes and moves between them.

    Parameters
    ----------
    state : sequence of int
        Lineages in each of the ``n_demes`` demes.
    n_demes : int
        ``D``; the first ``D`` parameters are the pair coalescence rates per deme.
    moves : sequence of (int, int)
        One parameter per ``(from, to)`` pair: each lineage in ``from`` moves to ``to`` at that rate.

    Examples
    --------
    A Kingman coalescent of 4 lineages; a user adds a second kind of event by wrapping it
    (here a lineage-count-independent "extinction" at rate ``theta[1]``, for illustration).

    >>> from phasic import Graph
    >>> from phasic.demography import lineage_counting
    >>> g = Graph(lineage_counting, ipv=[4])
    >>> g.update_weights([1.0]); round(g.expectation(), 6)   # 2 (1 - 1/4)
    1.5
    >>> def with_extinction(state):
    ...     return [[s, c + [1.0 if s == [0] else 0.0]] for s, c in lineage_counting(state)] + (
    ...         [[[0], [0.0, 1.0]]] if sum(state) > 1 else [])
    >>> h = Graph(with_extinction, ipv=[4]); h.update_weights([1.0, 0.5]); h.expectation() < 1.5
    True
    """
    D = int(n_demes)
    p = D + len(moves)
    if sum(state) <= 1:
        return []
    out = {}
    s = list(state)
    for d in range(D):
        k = s[d]
        if k >= 2:
            s[d] -= 1
            _add(out, s, d, k * (k - 1) / 2, p)
            s[d] += 1
    for i, (a, b) in enumerate(moves):
        k = s[a]
        if k >= 1:
            s[a] -= 1
            s[b] += 1
            _add(out, s, D + i, float(k), p)
            s[a] += 1
            s[b] -= 1
    return [[list(k), v] for k, v in out.items()]


def islands(state, *, n_demes=2):
    """The island model: lineages per deme, coalescence within demes, and a move between every
    ordered pair of demes (``theta = [coal_0..coal_{D-1}, m_01, m_02, ..., m_10, ...]``, the
    pairs in :func:`island_moves` order). :func:`lineage_counting` with those moves.

    Examples
    --------
    >>> from phasic import Graph
    >>> from phasic.demography import islands
    >>> g = Graph(islands, ipv=[2, 0], n_demes=2)
    >>> g.update_weights([1.0, 1.0, 0.5, 0.5])   # two equal islands, m = 1/2 each way
    >>> round(g.expectation(), 6)   # a pair from one island: D / pair rate, for any m (Strobeck 1987)
    2.0
    """
    return lineage_counting(state, n_demes=n_demes, moves=island_moves(n_demes))


def island_moves(n_demes):
    """Every ordered pair ``(a, b)``, ``a != b``, of ``n_demes`` demes, in a fixed order."""
    return [(a, b) for a in range(int(n_demes)) for b in range(int(n_demes)) if a != b]


def block_types(sample_sizes):
    """The lineage types of a block-counting space: every vector ``b`` with ``0 <= b_s <= n_s``
    except zero (the numbers of sampled descendants in each sampled deme), in
    ``itertools.product`` order, and a dict from type to its index (do not modify them: they
    are shared, computed once per sample sizes)."""
    return _block_types(tuple(int(n) for n in sample_sizes))


@functools.lru_cache(maxsize=64)
def _block_types(sample_sizes):
    types = [b for b in itertools.product(*(range(n + 1) for n in sample_sizes)) if any(b)]
    return types, {b: i for i, b in enumerate(types)}


def block_counting(state, *, n_demes=1, sample_sizes=(2,), moves=()):
    """Lineages per deme and type (block counting): the state of the joint SFS.

    ``state[d * B + t]`` is the number of lineages in deme ``d`` of type ``types[t]`` (see
    :func:`block_types`); the parameters are laid out as in :func:`lineage_counting`.
    """
    D = int(n_demes)
    types, index = block_types(sample_sizes)
    B = len(types)
    p = D + len(moves)
    if sum(state) <= 1:
        return []
    out = {}
    s = list(state)
    for d in range(D):
        present = [t for t in range(B) if s[d * B + t]]
        for x, t1 in enumerate(present):
            c1 = s[d * B + t1]
            for t2 in present[x:]:
                c2 = s[d * B + t2]
                pairs = c1 * (c1 - 1) / 2 if t1 == t2 else c1 * c2
                if pairs <= 0:
                    continue
                merged = index[tuple(u + v for u, v in zip(types[t1], types[t2]))]
                s[d * B + t1] -= 1
                s[d * B + t2] -= 1
                s[d * B + merged] += 1
                _add(out, s, d, float(pairs), p)
                s[d * B + merged] -= 1
                s[d * B + t2] += 1
                s[d * B + t1] += 1
    for i, (a, b) in enumerate(moves):
        for t in range(B):
            c = s[a * B + t]
            if c:
                s[a * B + t] -= 1
                s[b * B + t] += 1
                _add(out, s, D + i, float(c), p)
                s[a * B + t] += 1
                s[b * B + t] -= 1
    return [[list(k), v] for k, v in out.items()]


def block_counting_start(n_demes, sampled, sample_sizes):
    """The start state of :func:`block_counting`: every sample its own lineage, in its deme."""
    types, index = block_types(sample_sizes)
    B = len(types)
    s = [0] * (n_demes * B)
    for j, (d, n) in enumerate(zip(sampled, sample_sizes)):
        unit = tuple(1 if i == j else 0 for i in range(len(sample_sizes)))
        s[d * B + index[unit]] += n
    return s


def sfs_rewards(states, n_demes, sample_sizes):
    """Reward matrix ``(V, prod(n_s + 1))`` of the joint SFS: the reward of a state for cell
    ``b`` is its number of lineages of type ``b`` (all demes); cells 0 and the full sample
    stay 0 (a lineage ancestral to the whole sample is the root)."""
    types, _ = block_types(sample_sizes)
    B = len(types)
    shape = tuple(n + 1 for n in sample_sizes)
    cells = np.ravel_multi_index(np.array(types).T, shape)
    R = np.zeros((len(states), prod(shape)))
    for d in range(n_demes):  # a loop over the few demes: summing a strided axis is slow
        R[:, cells] += states[:, d * B : (d + 1) * B]
    R[:, -1] = 0.0  # the full sample
    R[0] = 0.0
    return R


def count_block_states(n_demes, sample_sizes):
    """An upper bound on the states of :func:`block_counting`: multisets of (type, deme)
    pairs whose types sum to the sample (the coefficient of ``x^n`` in
    ``prod_b (1 - x^b)^-D``), plus the start state."""
    return _count_block_states(int(n_demes), tuple(int(n) for n in sample_sizes))


@functools.lru_cache(maxsize=64)
def _count_block_states(n_demes, sample_sizes):
    shape = tuple(n + 1 for n in sample_sizes)
    types, _ = block_types(sample_sizes)
    f = np.zeros(shape, dtype=object)
    f[(0,) * len(shape)] = 1
    for b in types:
        for _ in range(n_demes):  # (1 - x^b)^-1, D times: an unbounded knapsack pass over b
            for idx in itertools.product(*(range(n + 1) for n in sample_sizes)):
                prev = tuple(i - j for i, j in zip(idx, b))
                if min(prev) >= 0:
                    f[idx] += f[prev]
    return int(f[tuple(sample_sizes)]) + 1


def count_lineage_states(n_demes, n):
    """States of :func:`lineage_counting` from ``n`` lineages: every way to place k = 1..n
    lineages in D demes, plus the start state."""
    return sum(comb(k + n_demes - 1, n_demes - 1) for k in range(1, n + 1)) + 1


#: the default largest state space from_demes builds (vertices)
MAX_STATES = 2_000_000
#: bytes per vertex and per state entry, for the memory estimate of a refusal
_BYTES_PER_VERTEX = 200


def check_size(count, state_length, limit, what):
    if count > limit:
        need = count * (_BYTES_PER_VERTEX + 4 * state_length)
        raise StateSpaceTooLarge(
            f"{what} has up to {count:,} states (about {need / 2**30:.1f} GiB to build and eliminate), more than "
            f"max_states={limit:,}; use fewer samples, state_space='lineages' for the T_MRCA and one-deme "
            "SFS, or raise max_states"
        )


def lineage_sfs_weights(n):
    """``W[i, k]``: E[xi_i] = sum_k W[i, k] E[T_k] for one panmictic deme (Griffiths & Tavare
    1998; Polanski & Kimmel 2003): ``k C(n-i-1, k-2) / C(n-1, k-1)``, i = 1..n-1, k = 2..n.
    A read-only ``(n + 1, n + 1)`` array, computed once per n (log-gamma, vectorised)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ParameterError(f"an SFS needs at least 2 samples, got {n!r}")
    return _sfs_weights(int(n))


def _log_comb(a, b):
    from scipy.special import gammaln

    return gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)


@functools.lru_cache(maxsize=32)
def _sfs_weights(n):
    i = np.arange(n + 1)[:, None]
    k = np.arange(n + 1)[None, :]
    ok = (i >= 1) & (i <= n - 1) & (k >= 2) & (k <= n - i + 1)
    a1, b1 = np.where(ok, n - i - 1, 0), np.where(ok, k - 2, 0)
    a2, b2 = np.where(ok, n - 1, 1), np.where(ok, k - 1, 0)
    W = np.where(ok, k * np.exp(_log_comb(a1, b1) - _log_comb(a2, b2)), 0.0)
    W.setflags(write=False)
    return W


# ---------------------------------------------------------------- builds without a Python call per state
def _merge_table(sample_sizes):
    types, index = block_types(sample_sizes)
    B = len(types)
    merged = np.full((B, B), -1, dtype=np.int32)
    for i, a in enumerate(types):
        for j, b in enumerate(types):
            c = tuple(x + y for x, y in zip(a, b))
            if c in index:
                merged[i, j] = index[c]
    return merged


@functools.lru_cache(maxsize=64)
def _merge_table_cached(sample_sizes):
    m = _merge_table(sample_sizes)
    m.setflags(write=False)
    return m


def _fast_build(kind):
    """``Graph``'s hook for the library spaces: the compiled builder (csrc/coalescent.hpp) for
    the arguments it knows, else None (the generic build then runs the callback, and reports
    what is wrong with the arguments)."""

    def build(ipv_pairs, params, max_vertices, theta_dim, discrete):
        if discrete or len(ipv_pairs) != 1 or float(ipv_pairs[0][1]) != 1.0:
            return None
        allowed = {
            "lineages": {"n_demes", "moves"},
            "islands": {"n_demes"},
            "blocks": {"n_demes", "sample_sizes", "moves"},
        }
        if set(params) - allowed[kind]:
            return None
        try:
            D = params.get("n_demes", 1)
            if isinstance(D, bool) or not isinstance(D, (int, np.integer)) or D < 1:
                return None
            moves = island_moves(D) if kind == "islands" else params.get("moves", ())
            mv = np.asarray([list(m) for m in moves], dtype=np.int64).reshape(-1, 2)
            if mv.size and (mv.min() < 0 or mv.max() >= D):
                return None
            if kind == "blocks":
                sizes = tuple(int(n) for n in params.get("sample_sizes", (2,)))
                if not sizes or min(sizes) < 0:
                    return None
                merged = _merge_table_cached(sizes)
            else:
                merged = np.zeros((1, 1), dtype=np.int32)
            B = merged.shape[0]
            start = np.asarray(ipv_pairs[0][0], dtype=np.int64)
        except (TypeError, ValueError):
            return None
        if start.shape != (D * B,) or start.min() < 0:
            return None
        if theta_dim is not None and theta_dim != D + len(mv):
            return None
        return _core.build_coalescent_space(D, B, merged, mv, start, max_vertices)

    return build


lineage_counting._phasic_fast_build = _fast_build("lineages")
islands._phasic_fast_build = _fast_build("islands")
block_counting._phasic_fast_build = _fast_build("blocks")
