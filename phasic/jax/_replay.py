"""Moments as a pure JAX function of theta, by replaying the elimination trace level by level.

``moments_from_graph(g, k, backend="jax")`` builds its function here. The trace (see
csrc/elim.hpp and :mod:`phasic.traces`) has two parts; both are replayed on JAX arrays.

* The **tape**, an SSA list of scalar ops over the edge weights. An op's level is 1 + the
  highest level of its operands (weights: level 0). The ops of one level are independent:
  a level is a gather of operands, one elementwise formula and one scatter of results.
  The opcodes share the formula ``(P + Q * R) / (S - T)``, each op picking its five
  operands among the values and two constant slots 0 and 1 (DIV is ``(0 + a * 1) / (b - 0)``,
  INV1M ``(1 + 0 * 0) / (1 - a)``): the rounding is the core's, and there is no ``where``
  between branches whose unused divisions would turn gradients into NaN.
* The **reward program**, ``x[i] += m * x[j]`` and ``x[i] *= s``. A level applies, per
  target, adds and then at most one multiply, on values from before the level:
  ``x[i] = s * (x[i] + sum m * x[j])``, run as one gather and one scatter-add
  ``x[i] += (s - 1) * x[i] + sum (s * m) * x[j]`` (s >= 1, so s - 1 is exact; values stay
  within a few ulp of the core's). Adds into one target commute; an update goes after
  the last write to what it reads and not before the last read of what it writes (see
  :func:`program_levels`). A separate multiply step per level (a second gather after the
  scatter) made XLA copy the whole vector at every level.

Consecutive levels are grouped into buckets padded to a common width (padding reads the
constant slots and writes to sink slots), each one ``lax.scan``; a bucket is closed when
padding would cost more than :data:`BUCKET_COST` element-ops. On the two-island model at
n=60 the tape is shallow and wide (27,022 ops in 182 levels above the weights, 3 buckets,
25,204 padded slots), the program deep and narrow: a chain of triangular solves, 9,025
updates in 3,716 levels of width <= 3. Per theta, the loop overhead of those levels is
the cost; under ``jax.vmap`` a level works on whole rows of thetas at once.

Batching and gradients: the replay works on arrays with a trailing batch axis (values
``(slots, B)``), and ``custom_vmap`` hands a vmapped batch to it in blocks (vmap's own rule
would put the batch axis first: strided columns, several times slower). Each bucket has
a hand-written VJP, a reverse scan with one gather and one scatter-add per level into the
cotangent; around the buckets the gradient is JAX's reverse mode (the backward pass runs
the forward pass again). Forward mode (``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``) is
not available; ``jax.grad``, ``jax.vjp`` and ``jax.jacrev`` are.

Bad theta: a wrong shape raises :class:`ParameterError` when the function is called or
traced (the shape is static). Values are not checked, the function has to stay traceable:
as in the core's batch replay, a theta that makes an edge weight negative or NaN gives NaN
moments, and a vertex left with total rate 0 gives inf or NaN.
"""

from __future__ import annotations

from math import factorial

import numpy as np

from phasic import _core
from phasic._csr import of
from phasic.exceptions import ParameterError, TraceError
from phasic.traces import graph_trace

#: cost, in padded element-ops, charged for opening a new bucket of levels
BUCKET_COST = 256
_W, _ADD, _DIV, _INV, _MUL, _FMA, _INV1M = range(7)


# ----------------------------------------------------------------------------- levels
def tape_levels(code, a, b, c):
    """Dependency level of every tape op (weights 0, others 1 + max over operands)."""
    lev = [0] * code.size
    for i, (op, x, y, z) in enumerate(zip(code.tolist(), a.tolist(), b.tolist(), c.tolist())):
        if op != _W:
            m = lev[x]
            if y >= 0 and lev[y] > m:
                m = lev[y]
            if z >= 0 and lev[z] > m:
                m = lev[z]
            lev[i] = m + 1
    return np.asarray(lev, np.int64)


def program_levels(xi, xj, n_x):
    """Levels of the program updates. A level applies, per target x[i], its adds and then
    at most one multiply: ``x[i] = s * (x[i] + sum m * x[j])`` over values from before the
    level. So an update goes after the last write to what it reads and not before the last
    read of what it writes; an add after the last multiply of its target; a multiply not
    before the last add to its target. Returns the levels and, per update, the multiply
    (index) that follows an add in its level, or -1."""
    add, mul, read = [-1] * n_x, [-1] * n_x, [-1] * n_x
    lev, last = [0] * len(xi), {}  # (target, level) -> its adds so far
    after = np.full(len(xi), -1, np.int64)
    for k, (i, j) in enumerate(zip(xi.tolist(), xj.tolist())):
        if j >= 0:
            lv = max(add[j] + 1, mul[j] + 1, mul[i] + 1, read[i])
            add[i], read[j] = max(add[i], lv), max(read[j], lv)
            last.setdefault((i, lv), []).append(k)
        else:
            lv = max(add[i], mul[i] + 1, read[i])
            mul[i] = lv
            after[last.pop((i, lv), [])] = k
        lev[k] = lv
    return np.asarray(lev, np.int64), after


def buckets(widths, cost=BUCKET_COST):
    """Split levels (their op counts `widths`) into runs of consecutive levels, each padded
    to its widest level: greedy, a level starts a new run when that is cheaper than
    padding the current one. Returns ``[(first, end, width), ...]``."""
    out, start, pad = [], 0, 0
    for lv, w in enumerate(int(x) for x in widths):
        n = lv - start
        if lv == 0 or (n + 1) * max(pad, w) <= n * pad + w + cost:
            pad = max(pad, w)
        else:
            out.append((start, lv, pad))
            start, pad = lv, w
    if len(widths):
        out.append((start, len(widths), pad))
    return out


def _pad(level, lo, hi, width, cols, fill):
    """Per-level padded columns: arrays (hi - lo, width) for the ops with lo <= level < hi.
    A fill given as a tuple ``(start,)`` pads with ``start + slot``: distinct sink slots,
    so that the indices of a scatter stay unique."""
    sel = np.flatnonzero((level >= lo) & (level < hi))
    lv = level[sel] - lo
    order = np.argsort(lv, kind="stable")
    sel, lv = sel[order], lv[order]
    first = np.searchsorted(lv, np.arange(hi - lo))
    slot = np.arange(sel.size) - first[lv]
    res = []
    for col, f in zip(cols, fill):
        if isinstance(f, tuple):
            m = np.broadcast_to(f[0] + np.arange(width), (hi - lo, width)).copy()
        else:
            m = np.full((hi - lo, width), f, np.int64)
        m[lv, slot] = col[sel]
        res.append(m)
    return res


# ------------------------------------------------------------------------------- plan
def build_plan(tr, n_weights, n_vertices):
    """Index arrays for the level-by-level replay of trace `tr` (numpy, static).

    Value slots: the edge weights (a WEIGHT op lives in its edge's slot), constants 0 and 1,
    the other ops level by level, then write sinks for padding."""

    # the gathers below promise in-bounds indices: every operand must be checked first
    # (a trace the core recorded or checked for this graph: once, not on every call)
    problem = (
        None
        if _core.is_checked(tr, int(n_vertices), int(n_weights))
        else _core.trace_problem(tr, int(n_vertices), int(n_weights))
    )
    if problem:
        raise TraceError(f"build_plan: {problem}")
    code, a, b, c = tr["code"], tr["a"], tr["b"], tr["c"]
    n, E = int(code.size), int(n_weights)
    isw = code == _W
    tlev = tape_levels(code, a, b, c) if n else np.zeros(0, np.int64)
    slot = np.empty(n + 2, np.int64)  # op index (and n, n + 1: constants) -> value slot
    rest = np.flatnonzero(~isw)
    rest = rest[np.argsort(tlev[rest], kind="stable")]
    slot[np.flatnonzero(isw)], slot[n:] = a[isw], [E, E + 1]
    slot[rest] = E + 2 + np.arange(rest.size)
    ZERO, ONE, SINK = n, n + 1, E + 2 + rest.size
    b_, c_ = np.where(b >= 0, b, ZERO), np.where(c >= 0, c, ZERO)
    #            P                 Q              R             S              T
    table = {
        _ADD: (a, b_, ONE, ONE, ZERO),
        _DIV: (ZERO, a, ONE, b_, ZERO),
        _INV: (ONE, ZERO, ZERO, a, ZERO),
        _MUL: (ZERO, a, b_, ONE, ZERO),
        _FMA: (a, b_, c_, ONE, ZERO),
        _INV1M: (ONE, ZERO, ZERO, ONE, a),
    }
    cols = [np.full(n, ZERO, np.int64) for _ in range(5)]
    for k, srcs in table.items():
        m = code == k
        for col, s in zip(cols, srcs):
            col[m] = s[m] if isinstance(s, np.ndarray) else s
    cols = [slot[col] for col in cols] + [slot[:n]]
    n_tl = int(tlev.max()) if n else 0
    tw = np.bincount(tlev[~isw] - 1, minlength=n_tl) if n_tl else np.zeros(0, np.int64)
    # for the backward pass, the operands that are values (not constants) of each op: its
    # place in its level, the operand's slot, the slot of the partial derivative's factor
    # (P: 1, Q: R, R: Q, S: -y, T: y) and the sign
    pos = np.zeros(n, np.int64)
    pos[rest] = np.arange(rest.size) - np.searchsorted(tlev[rest], tlev[rest])
    fac = [np.full(n, E + 1), cols[2], cols[1], cols[5], cols[5]]
    refs = [[], [], [], []]  # op, operand slot, factor slot, sign
    for k, sg in enumerate([1, 1, 1, -1, 1]):
        m = ~isw & ((cols[k] < E) | (cols[k] >= E + 2))
        for lst, x in zip(refs, (np.flatnonzero(m), cols[k][m], fac[k][m], np.full(m.sum(), sg))):
            lst.append(x)
    r_op, r_src, r_fac, r_sign = (np.concatenate(x) for x in refs)
    rlev = tlev[r_op] - 1
    tape = []
    for lo, hi, wd in buckets(tw):
        fwd = _pad(tlev - 1, lo, hi, wd, cols, [E, E, E, E + 1, E, (SINK,)])
        inb = (rlev >= lo) & (rlev < hi)
        nr = int(np.bincount(rlev[inb] - lo).max()) if inb.any() else 0
        bwd = _pad(np.where(inb, rlev, -1), lo, hi, nr, [pos[r_op], r_src, r_fac, r_sign], [0, E, E, 0])
        tape.append((np.stack(fwd, axis=1), np.stack(bwd[:3], axis=1), bwd[3]))
    n_val = SINK + max([t[0].shape[2] for t in tape] + [1])
    # program on x: one slot per vertex, then a sink for padding
    xi, xj, xs = tr["xi"], tr["xj"], tr["xs"]
    X = n_vertices
    plev, after = program_levels(xi, xj, X)
    n_pl = int(plev.max()) + 1 if xi.size else 0
    # as one scatter-add: x[i] += (s - 1) * x[i] + sum (s * m) * x[j]; an update's
    # multiplier is val[a] * val[b] - sub (s >= 1, so s - 1 is exact)
    b = np.where(after >= 0, slot[xs[np.maximum(after, 0)]], E + 1) if xi.size else xs
    cols = [xi, np.where(xj >= 0, xj, xi), slot[xs], b, (xj < 0).astype(np.int64)]
    prog = [
        tuple(_pad(plev, lo, hi, wd, cols, [X, X, E, E + 1, 0]))
        for lo, hi, wd in buckets(np.bincount(plev, minlength=n_pl))
    ]
    xinit = np.append(slot[np.where(tr["xinit"] >= 0, tr["xinit"], ZERO)], E)
    info = {
        "ops": n,
        "tape_levels": n_tl,
        "tape_buckets": len(tape),
        "tape_padded": int(sum(t[0][:, 0].size for t in tape)),
        "updates": int(xi.size),
        "program_levels": n_pl,
        "program_buckets": len(prog),
        "program_padded": int(sum(q[0].size for q in prog)),
    }
    return dict(n_val=n_val, tape=tape, prog=prog, xinit=xinit, info=info)


# ---------------------------------------------------------------------- level loops
# Arrays carry a trailing batch axis: values (slots, B), multipliers (levels, width, B).
# The hand-written VJPs keep one gather and one scatter-add per level, which XLA runs in
# place on the cotangent; JAX's own transpose of these scans was several times slower
# (it stacks more per-level residuals and copies the carry).

_IB = dict(mode="promise_in_bounds")


def _tape_bucket(ix, rx, sign):
    """Levels of the tape; ix (levels, 6, width): operand slots P, Q, R, S, T and output;
    rx (levels, 3, refs) and sign (levels, refs): the value operands (see build_plan)."""
    import jax
    import jax.numpy as jnp

    def run(val):
        def body(v, i):
            P, Q, R, S, T = (v.at[i[j]].get(**_IB) for j in range(5))
            return v.at[i[5]].set((P + Q * R) / (S - T), unique_indices=True, indices_are_sorted=True, **_IB), None

        return jax.lax.scan(body, val, ix)[0]

    def back(val, ct):
        # val holds every op's final value (the tape is SSA), so nothing else is saved. One
        # scatter-add per level: the cotangent of each value operand, and the negated
        # cotangent of the outputs (which clears it); XLA updates the cotangent in place.
        def body(c, lv):
            i, (pos, src, fac), sg = lv
            co = c.at[i[5]].get(**_IB)
            g = co / (val.at[i[3]].get(**_IB) - val.at[i[4]].get(**_IB))
            upd = sg * val.at[fac].get(**_IB) * g.at[pos].get(**_IB)
            return c.at[jnp.concatenate([i[5], src])].add(jnp.concatenate([-co, upd]), **_IB), None

        return jax.lax.scan(body, ct, (ix, rx, sign), reverse=True)[0]

    f = jax.custom_vjp(run)
    f.defvjp(lambda val: (lambda out: (out, out))(run(val)), lambda out, ct: (back(out, ct),))
    return f


def _program_bucket(I, J):
    """Levels of the program, ``x[I] += M * x[J]`` with I, J (levels, width)."""
    import jax

    def run(x, M):
        def body(x, lv):
            i, j, m = lv
            g = x.at[j].get(**_IB)
            return x.at[i].add(m * g, **_IB), g

        return jax.lax.scan(body, x, (I, J, M))

    def back(M, G, ct):
        # the transposed level: c[J] += M * c[I], with c[I] read before the update
        def body(c, lv):
            i, j, m, g = lv
            d = c.at[i].get(**_IB)
            return c.at[j].add(m * d, **_IB), d * g

        return jax.lax.scan(body, ct, (I, J, M, G), reverse=True)

    def fwd(x, M):
        out, G = run(x, M)
        return out, (M, G)

    f = jax.custom_vjp(lambda x, M: run(x, M)[0])
    f.defvjp(fwd, lambda res, ct: back(*res, ct))
    return f


# --------------------------------------------------------------------------- function
def _batch_last(fn, block):
    """``fn`` of arrays with a trailing batch axis, as a function of unbatched arrays whose
    ``jax.vmap`` hands the whole batch to ``fn`` (batch axis moved last) in one call."""
    import jax
    import jax.numpy as jnp

    f = jax.custom_batching.custom_vmap(lambda *a: fn(*(x[..., None] for x in a))[..., 0])

    @f.def_vmap
    def rule(size, in_batched, *args):
        # blocks of at most `block` columns, run one after the other (lax.map), so that
        # the working set stays in cache and buffers are reused
        args = [
            jnp.moveaxis(x, 0, -1) if b else jnp.broadcast_to(x[..., None], x.shape + (size,))
            for x, b in zip(args, in_batched)
        ]
        if size <= block:
            return jnp.moveaxis(fn(*args), -1, 0), True
        nb = -(-size // block)
        bs = -(-size // nb)
        pad = nb * bs - size
        args = [
            jnp.moveaxis(
                jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, pad)], mode="edge").reshape(x.shape[:-1] + (nb, bs)), -2, 0
            )
            for x in args
        ]
        out = jax.lax.map(lambda a: fn(*a), args)  # (nb, ..., bs)
        out = jnp.moveaxis(out, 0, -2).reshape(out.shape[1:-1] + (nb * bs,))[..., :size]
        return jnp.moveaxis(out, -1, 0), True

    return f


def replay_moments(graph, k, r, dtype, *, block=None):
    """``f(theta) -> (k,)``: the first k moments of continuous `graph` with rewards `r`
    (per vertex, r[0] = 0), pure JAX. ``f.replay_info`` has the level statistics."""
    graph = of(graph)
    import jax
    import jax.numpy as jnp

    dtype = np.dtype(dtype)
    graph.flush()
    tr = graph_trace(graph)
    V, E = graph.vertices_length(), int(graph.target.size)
    plan = build_plan(tr, E, V)
    if block is None:  # thetas per block under vmap: on a CPU, values of a block near 8 MB
        cpu = jax.default_backend() == "cpu"
        block = int(np.clip(2**20 // plan["n_val"], 16, 256)) if cpu else 1024
    p = graph.coef.shape[1]
    base, coef = np.asarray(graph.base, dtype)[:, None], np.asarray(graph.coef, dtype)
    lo, hi = int(graph.indptr[0]), int(graph.indptr[1])
    a_target = graph.target[lo:hi].astype(np.int32)
    r_x = np.append(r, 0.0).astype(dtype)[:, None]
    facts = np.array([float(factorial(j)) for j in range(1, k + 1)], dtype)[:, None]
    u32 = lambda x: np.asarray(x, np.uint32)
    xinit, n_fill = u32(plan["xinit"]), plan["n_val"] - E
    tape = [_tape_bucket(u32(ix), u32(rx), sg.astype(dtype)[..., None]) for ix, rx, sg in plan["tape"]]
    prog = [
        (_program_bucket(u32(I), u32(J)), u32(A), u32(B), SUB.astype(dtype)[..., None])
        for I, J, A, B, SUB in plan["prog"]
    ]

    def moments(theta):  # theta (p, B) -> (k, B)
        w = base + coef @ theta
        fill = jnp.zeros((n_fill, theta.shape[1]), dtype).at[1].set(1.0)
        val = jnp.concatenate([w, fill])  # weights, 0, 1, then slots the tape writes
        for run in tape:
            val = run(val)
        # multipliers of the program (s - 1 for a multiply), gathered once for all k moments
        mults = [(run, val.at[a].get(**_IB) * val.at[b].get(**_IB) - sub) for run, a, b, sub in prog]
        inv = val.at[xinit].get(**_IB)

        def moment(y, _):  # y_j = U (r y_{j-1}); m_j = j! alpha . y_j
            y = r_x * y * inv
            for run, M in mults:
                y = run(y, M)
            return y, (w[lo:hi] * y.at[a_target].get(**_IB)).sum(axis=0)

        m = jax.lax.scan(moment, jnp.ones_like(inv), None, length=k)[1]
        ok = jnp.all(w >= 0, axis=0)  # False for NaN too
        return jnp.where(ok, facts * m, jnp.nan)

    # value and gradient each take the whole batch under jax.vmap; the gradient is JAX's
    # reverse mode of `moments` (with the buckets' VJPs), recomputing the forward pass
    value = _batch_last(moments, block)
    grad = _batch_last(lambda th, ct: jax.vjp(moments, th)[1](ct)[0], block)
    fn = jax.custom_vjp(value)
    fn.defvjp(lambda th: (value(th), th), lambda th, ct: (grad(th, ct),))
    fn = jax.jit(fn)

    def f(theta):
        theta = jnp.asarray(theta, dtype)
        if theta.shape != (p,):
            raise ParameterError(f"theta has shape {theta.shape}; expected ({p},)")
        return fn(theta)

    f.replay_info = dict(plan["info"], block=block)
    return f
