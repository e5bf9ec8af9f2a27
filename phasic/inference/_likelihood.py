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
