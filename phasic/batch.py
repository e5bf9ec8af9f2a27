"""Many parameter vectors at once: :func:`evaluate_batch` replays a parameterised graph's
elimination trace for a whole batch of thetas, in one core call per thread."""

from __future__ import annotations

import numpy as np

from phasic import _core
from phasic._csr import of, reward_vector
from phasic.distributions import cdf, pdf
from phasic.exceptions import ParameterError
from phasic.moments import moments, replay_plan
from phasic.traces import graph_trace

__all__ = ["evaluate_batch"]

#: evaluate_batch replays blocks of 16 parameter vectors from this many rows, else of 8
BLOCK16_MIN_ROWS = 64


def _weights(g, thetas):
    g.flush()  # edges added by hand are pending until then
    th = np.asarray(thetas, dtype=np.float64)
    if g.coef is None:
        raise ParameterError("evaluate_batch needs a parameterised graph (coefficient edges)")
    p = g.coef.shape[1]
    if th.ndim == 1:
        th = th.reshape(1, -1)
    if th.ndim != 2 or th.shape[1] != p:
        raise ParameterError(f"thetas has shape {np.shape(thetas)!r}; expected (B, {p})")
    if not np.all(np.isfinite(th)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(th), axis=1))[0])
        raise ParameterError(f"theta {th[bad].tolist()!r} (row {bad}) has non-finite entries")
    return th


def _split_rows(B, threads, block=8):
    """Row ranges for `threads` workers: whole blocks of `block` rows, as even as possible
    (fewer ranges when there are fewer blocks)."""
    nb = -(-B // block)
    n = max(1, min(threads, nb))
    cuts = [min(B, (nb * i // n) * block) for i in range(n + 1)]
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def _check_threads(threads):
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        raise TypeError(f"threads must be an int, got {threads!r}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads!r}")
    return int(threads)


def evaluate_batch(g, thetas, what="moments", k=2, rewards=None, times=None, threads=1):
    """Evaluate many parameter vectors of `g` by replaying its elimination trace.

    One core call per thread replays the trace for blocks of 8 parameter vectors (16 from
    64 rows on) side by side; the values are bitwise those of :meth:`phasic.Graph.moments`
    after :meth:`phasic.Graph.update_weights` with each row.

    Parameters
    ----------
    g : Graph
        A parameterised graph (rates ``base + coef . theta``).
    thetas : array_like of float, shape (B, p) or (p,)
        The parameter vectors, one per row.
    what : {"moments", "expectation", "variance", "pdf", "cdf"}
        What to compute for each row.
    k : int
        Number of moments for ``what="moments"``.
    rewards : array_like of float, shape (V,), optional
        One reward per vertex (moments, expectation, variance).
    times : array_like of float
        Times for ``what="pdf"``/``"cdf"``.
    threads : int
        Continuous moments: split the rows over this many threads (the core releases the
        GIL; results are bitwise those of one thread). The default 1 leaves the cores to the
        caller (Dask workers, processes).

    Returns
    -------
    numpy.ndarray
        ``(B, k)`` moments, ``(B,)`` expectations or variances, ``(B, len(times))`` pdf/cdf.

    Raises
    ------
    ParameterError
        A graph without parameterised edges, `thetas` of the wrong shape or with non-finite
        entries, a row giving a negative rate, initial probabilities over 1 or non-finite
        moments (the message names the row), or an unknown `what`.

    Examples
    --------
    Kingman's coalescent from 4 genes with the rates scaled by ``theta`` has
    ``E[T] = 2 (1 - 1/4) / theta``:

    >>> import numpy as np
    >>> from phasic import Graph, evaluate_batch, with_ipv
    >>> @with_ipv([4])
    ... def kingman(state):
    ...     n = state[0]
    ...     return [] if n <= 1 else [[[n - 1], [n * (n - 1) / 2]]]
    >>> g = Graph(kingman)
    >>> evaluate_batch(g, [[1.0], [2.0], [0.5]], what="expectation").round(6)
    array([1.5 , 0.75, 3.  ])
    """
    g = of(g)
    th = _weights(g, thetas)
    B = th.shape[0]
    threads = _check_threads(threads)
    if what not in ("moments", "expectation", "variance", "pdf", "cdf"):
        raise ParameterError(f"what={what!r} is not one of moments, expectation, variance, pdf, cdf")
    lo, hi = int(g.indptr[0]), int(g.indptr[1])
    mass = (g.base[lo:hi] + th @ g.coef[lo:hi].T).sum(axis=1) if B else np.zeros(0)
    if np.any(mass > 1 + 1e-12):
        bad = int(np.flatnonzero(mass > 1 + 1e-12)[0])
        raise ParameterError(
            f"theta {th[bad].tolist()!r} (row {bad}) makes the initial probabilities sum to {float(mass[bad])!r} > 1"
        )
    if B == 0:
        return np.zeros((0, k) if what == "moments" else (0, np.size(times)) if what in ("pdf", "cdf") else (0,))
    if what in ("pdf", "cdf"):
        if times is None:
            raise ParameterError(f"what={what!r} needs times=")
        h = g.copy()
        out = []
        for row in th:
            h.update_weights(row)
            out.append(pdf(h, times) if what == "pdf" else cdf(h, times))
        return np.asarray(out).reshape(B, -1)
    kk = {"moments": k, "expectation": 1, "variance": 2}[what]
    if isinstance(kk, bool) or not isinstance(kk, (int, np.integer)) or kk < 1:
        raise ParameterError(f"k must be a positive integer, got {k!r}")
    if g.discrete:
        h = g.copy()
        res = []
        for row in th:
            h.update_weights(row)
            res.append(moments(h, kk, rewards))
        res = np.asarray(res)
    else:
        tr = graph_trace(g)
        r = None if rewards is None else reward_vector(g, rewards)
        base = np.ascontiguousarray(g.base, np.float64)
        coef = np.ascontiguousarray(g.coef, np.float64)
        plan = replay_plan(g, tr, eager=B >= 8)
        if plan is not None:
            th = np.ascontiguousarray(th)
            # 16 vectors per block once lanes are rarely wasted: a little faster than 8
            # (docs/performance.md), same bits (the lanes are independent)
            block = 16 if B >= BLOCK16_MIN_ROWS else 8
            parts = _split_rows(B, threads, block)

            def run(ab):
                return plan.moments_theta(th[ab[0] : ab[1]], base, coef, int(kk), r, block)

            if len(parts) == 1:
                res, negative = run(parts[0])
            else:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(len(parts)) as ex:
                    done = list(ex.map(run, parts))
                res, negative = (np.concatenate([d[i] for d in done]) for i in (0, 1))
        else:
            lo, hi = int(g.indptr[0]), int(g.indptr[1])
            res, negative = _core.cph_moments_theta(
                tr,
                np.ascontiguousarray(th),
                base,
                coef,
                g.target[lo:hi].astype(np.int64),
                np.arange(lo, hi, dtype=np.int64),
                reward_vector(g, None) if r is None else r,
                int(kk),
            )
        if negative.any():
            raise ParameterError(f"theta {th[np.flatnonzero(negative)[0]].tolist()!r} gives a negative rate")
        bad = np.flatnonzero(~np.all(np.isfinite(res), axis=1))
        if bad.size:
            raise ParameterError(
                f"theta {th[bad[0]].tolist()!r} gives non-finite moments: some "
                f"vertex has total rate 0 or cannot reach absorption"
            )
    if what == "expectation":
        return res[:, 0]
    if what == "variance":
        return res[:, 1] - res[:, 0] ** 2
    return res
