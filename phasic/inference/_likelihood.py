"""Log-likelihoods of an observed SFS given the expected one (ALGORITHMS.md section 5).

Poisson random field with a known ``theta = mutation rate x sequence length`` (per model time
unit): ``lambda_c = theta E[xi_c]``, ``log L = sum_c (D_c log lambda_c - lambda_c - log D_c!)``.
Multinomial (theta unknown, profiled out): ``log L = sum_c D_c log(E[xi_c] / sum E[xi])``
(the constant multinomial coefficient left out); the MLE of theta is ``sum D / sum E[xi]``.
Monomorphic cells are always masked; folded data compare with the folded expectation.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

from phasic.exceptions import ParameterError
from phasic.inference._data import corners_mask, fold


def _cells(expected, observed, mask, folded):
    e = np.asarray(expected, dtype=np.float64)
    d = np.asarray(observed, dtype=np.float64)
    if folded:
        e, d = fold(e), fold(d)
    m = ~(corners_mask(e.shape) | np.asarray(mask, bool))
    if folded:
        total = sum(e.shape) - len(e.shape)
        m &= np.indices(e.shape).sum(axis=0) <= total / 2
    return e[m], d[m]


def poisson_loglik(expected, observed, theta, mask=None, folded=False):
    """Poisson random-field log-likelihood with the known scaling `theta`."""
    if not (np.isfinite(theta) and theta > 0):
        raise ParameterError(f"theta (mutation rate x sequence length) must be positive, got {theta!r}")
    mask = np.zeros(np.shape(expected), bool) if mask is None else mask
    e, d = _cells(expected, observed, mask, folded)
    lam = theta * e
    if np.any((lam <= 0) & (d > 0)):
        return -np.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(d > 0, d * np.log(lam), 0.0) - lam - gammaln(d + 1)
    return float(terms.sum())


def multinomial_loglik(expected, observed, mask=None, folded=False):
    """Multinomial log-likelihood (theta profiled out), without the multinomial coefficient."""
    mask = np.zeros(np.shape(expected), bool) if mask is None else mask
    e, d = _cells(expected, observed, mask, folded)
    total = e.sum()
    if total <= 0:
        return -np.inf
    p = e / total
    if np.any((p <= 0) & (d > 0)):
        return -np.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.where(d > 0, d * np.log(p), 0.0).sum())


def theta_mle(expected, observed, mask=None, folded=False):
    """The theta that maximises the Poisson likelihood: ``sum D / sum E[xi]`` over the cells used."""
    mask = np.zeros(np.shape(expected), bool) if mask is None else mask
    e, d = _cells(expected, observed, mask, folded)
    return float(d.sum() / e.sum())


def cell_matrix(shape, mask=None, folded=False):
    """The linear map from an expected spectrum (flattened) to the cells the likelihood
    compares (folding and masks applied): a ``(cells, prod(shape))`` array ``A`` with
    ``A @ e.ravel()`` the compared expected values."""
    shape = tuple(shape)
    n = int(np.prod(shape))
    mask = np.zeros(shape, bool) if mask is None else np.asarray(mask, bool)
    zero = np.zeros(shape)
    basis = np.eye(n)
    return np.stack([_cells(basis[j].reshape(shape), zero, mask, folded)[0] for j in range(n)], axis=1)


def loglik_gradient(expected, observed, theta=None, mask=None, folded=False, cells=None):
    """``(log L, d log L / d expected)``: the Poisson log-likelihood with `theta` (or the
    multinomial one when `theta` is None) and its gradient with respect to every cell of the
    expected spectrum (shape of `expected`). `cells`: :func:`cell_matrix` of the shape, mask
    and folding, when already made.

    >>> e = np.array([0.0, 2.0, 1.0, 0.0])
    >>> ll, g = loglik_gradient(e, [0, 5, 3, 0], theta=2.0)
    >>> bool(np.isclose(ll, poisson_loglik(e, [0, 5, 3, 0], 2.0)))
    True
    >>> g.tolist()   # d/dE (D log(theta E) - theta E) = D / E - theta, 0 on the corners
    [0.0, 0.5, 1.0, 0.0]
    """
    e = np.asarray(expected, dtype=np.float64)
    d = np.asarray(observed, dtype=np.float64)
    mask = np.zeros(e.shape, bool) if mask is None else mask
    A = cell_matrix(e.shape, mask, folded) if cells is None else cells
    ec = A @ e.ravel()
    dc = _cells(d, d, mask, folded)[1]
    if theta is None:
        ll = multinomial_loglik(e, d, mask, folded)
        total = ec.sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            de = np.where(dc > 0, dc / ec, 0.0) - dc.sum() / total
    else:
        ll = poisson_loglik(e, d, theta, mask, folded)
        with np.errstate(divide="ignore", invalid="ignore"):
            de = np.where(dc > 0, dc / ec, 0.0) - theta
    if not np.isfinite(ll):
        return ll, np.zeros(e.shape)
    return ll, (A.T @ de).reshape(e.shape)
