"""Standard errors of maximum-likelihood estimates: the observed information from differences of
the exact gradient, and the Godambe information for linked sites from bootstrap replicates.

Everything is in log-parameter space (where :func:`phasic.inference.fit` optimises); a
standard error ``s`` of ``log theta`` is reported as ``theta s`` (the delta method).

Observed information
    ``H = -d^2 log L / d(log theta)^2`` by central differences of the gradient
    (``Problem.loglik_grad``): ``p`` gradient pairs, symmetrised. Its inverse is the covariance
    when sites are independent, which linked sites are not: it understates the uncertainty.

Godambe information (Coffman et al. 2016, *Mol. Biol. Evol.* 33:591)
    ``G = H J^-1 H`` with ``J`` the variance of the score (the log-space gradient at the
    estimate) over bootstrap replicates of the data; the covariance is
    ``G^-1 = H^-1 J H^-1``. The replicates must resample the data so as to keep its
    correlations: blocks of sequence long enough to be nearly independent of each other
    (linkage extends over much less than a block), resampled with replacement, each replicate
    the size of the data. With independent sites ``J = H`` on average and the two agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from phasic.exceptions import ParameterError
from phasic.inference._data import observed_sfs


def log_gradient(prob, values):
    """``(log-likelihood, gradient in log space)`` at `values` (``d log L / d log theta =
    theta dlogL/dtheta``)."""
    ll, g = prob.loglik_grad(np.asarray(values, dtype=np.float64))
    return ll, np.asarray(g, dtype=np.float64) * values


def observed_information(prob, x, log_bounds, h=1e-3):
    """``-d^2 log L / dx^2`` at log-parameters `x` by central differences of the gradient
    (one-sided where a step would leave `log_bounds`), symmetrised."""
    x = np.asarray(x, dtype=np.float64)
    p = x.size
    H = np.zeros((p, p))
    lo = np.array([b[0] for b in log_bounds])
    hi = np.array([b[1] for b in log_bounds])
    g0 = None

    def grad_at(y):
        """The log-space gradient at `y`, None where the values are infeasible (a constraint,
        a graph demes refuses: an estimate on such a boundary is differenced one-sided)."""
        v = np.exp(y)
        if not prob.feasible(v):
            return None
        try:
            return log_gradient(prob, v)[1]
        except ParameterError:
            return None

    for i in range(p):
        up, dn = x.copy(), x.copy()
        up[i] = min(x[i] + h, hi[i])
        dn[i] = max(x[i] - h, lo[i])
        gu = grad_at(up) if up[i] != x[i] else None
        gd = grad_at(dn) if dn[i] != x[i] else None
        if gu is None or gd is None:
            if g0 is None:
                g0 = log_gradient(prob, np.exp(x))[1]
            if gu is None:
                gu, up = g0, x.copy()
            if gd is None:
                gd, dn = g0, x.copy()
        step = up[i] - dn[i]
        if step <= 0:
            H[:, i] = np.nan
            continue
        H[:, i] = -(gu - gd) / step
    return 0.5 * (H + H.T)


def log_stderr(cov):
    """Square roots of the diagonal of `cov` (NaN where it is not positive: the information is
    not positive definite there)."""
    d = np.diag(cov).copy()
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(d) & (d > 0), np.sqrt(np.where(d > 0, d, 0.0)), np.nan)


def inverse(H):
    """The inverse of `H`, NaN where it is singular or not finite."""
    if not np.all(np.isfinite(H)):
        return np.full(H.shape, np.nan)
    try:
        return np.linalg.inv(H)
    except np.linalg.LinAlgError:
        return np.full(H.shape, np.nan)


def godambe_covariance(H, scores):
    """``(H J^-1 H)^-1 = H^-1 J H^-1`` with ``J`` the variance of the rows of `scores` (the
    log-space score of each bootstrap replicate at the estimate)."""
    scores = np.asarray(scores, dtype=np.float64)
    J = np.atleast_2d(np.cov(scores, rowvar=False, ddof=1))
    Hinv = inverse(H)
    return Hinv @ J @ Hinv, J


def _tree_sequence(data):
    if type(data).__name__ == "TreeSequence":
        return data
    if isinstance(data, (str, Path)) and str(data).endswith(".trees"):
        import tskit

        try:
            return tskit.load(str(data))
        except (OSError, tskit.FileFormatError) as exc:
            raise ParameterError(f"cannot read the tree sequence {str(data)!r}: {exc}") from None
    return None


def _sample_sets(ts, samples):
    """The sample nodes of each deme of `samples` (populations named by their metadata)."""
    named = {}
    for pop in ts.populations():
        md = pop.metadata if isinstance(pop.metadata, dict) else {}
        if md.get("name") is not None:
            named.setdefault(md["name"], pop.id)
    sets = []
    for deme, n in samples.items():
        if deme not in named:
            raise ParameterError(f"the tree sequence has no population named {deme!r} (names: {sorted(named)})")
        nodes = ts.samples(population=named[deme])
        if len(nodes) != n:
            raise ParameterError(
                f"population {deme!r} has {len(nodes)} sample genomes in the tree sequence; samples says {n}"
            )
        sets.append(nodes)
    return sets


def block_sfs(ts, samples, blocks):
    """The polarised site SFS of each of `blocks` equal windows of the tree sequence `ts`
    (shape ``(blocks, n_1 + 1, ...)``): the blocks sum to the SFS of the whole sequence."""
    if isinstance(blocks, bool) or not isinstance(blocks, (int, np.integer)) or blocks < 2:
        raise ParameterError(f"blocks must be an integer of at least 2, got {blocks!r}")
    windows = np.linspace(0.0, ts.sequence_length, int(blocks) + 1)
    return np.asarray(
        ts.allele_frequency_spectrum(
            sample_sets=_sample_sets(ts, samples),
            windows=windows,
            mode="site",
            span_normalise=False,
            polarised=True,
        ),
        dtype=np.float64,
    )


def bootstrap_replicates(data, bootstrap, blocks, samples, shape, seed):
    """The bootstrap replicates as ``[(counts, mask or None), ...]``.

    `bootstrap` is a list of SFS arrays or ``.fs`` files (given by the user, each of the
    model's shape), or, when `data` is a tree sequence, a number ``n``: ``n`` replicates that
    resample the `blocks` windows of the sequence with replacement (seeded by `seed`).
    """
    if isinstance(bootstrap, (int, np.integer)) and not isinstance(bootstrap, bool):
        ts = _tree_sequence(data)
        if ts is None:
            raise ParameterError(
                f"bootstrap={bootstrap!r} (a number of block-bootstrap replicates) needs a tree "
                "sequence as data; for an SFS array or .fs file give the replicates as a list"
            )
        if bootstrap < 2:
            raise ParameterError(f"bootstrap must be at least 2 replicates, got {bootstrap!r}")
        per_block = block_sfs(ts, samples, blocks)
        if per_block.shape[1:] != tuple(shape):
            raise ParameterError(
                f"the tree sequence's block SFS has shape {per_block.shape[1:]}, the model's samples "
                f"give {tuple(shape)}"
            )
        rng = np.random.default_rng(seed)
        nb = per_block.shape[0]
        return [(per_block[rng.integers(0, nb, nb)].sum(axis=0), None) for _ in range(int(bootstrap))]
    if isinstance(bootstrap, (str, Path)) or not hasattr(bootstrap, "__len__"):
        raise ParameterError(
            f"bootstrap must be a list of SFS arrays or .fs files, or a number of replicates "
            f"(with tree-sequence data), got {bootstrap!r}"
        )
    if isinstance(bootstrap, np.ndarray) and bootstrap.ndim == len(shape):
        raise ParameterError(
            f"bootstrap is one array of shape {bootstrap.shape}; give a list of replicates "
            f"(or an array of shape (replicates, {', '.join(str(s) for s in shape)}))"
        )
    if len(bootstrap) < 2:
        raise ParameterError(f"bootstrap needs at least 2 replicates, got {len(bootstrap)}")
    out = []
    for i, item in enumerate(bootstrap):
        try:
            counts, mask, _ = observed_sfs(item, shape)
        except ParameterError as exc:
            raise ParameterError(f"bootstrap replicate {i}: {exc}") from None
        out.append((counts, mask))
    return out
