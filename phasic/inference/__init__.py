"""Fitting Demes models to an observed site frequency spectrum (SFS), on cached traces.

- :func:`loglik`: the Poisson random-field (known mutation rate x length) or multinomial
  log-likelihood of an observed SFS under a Demes model with parameters from a moments-style
  options file;
- :func:`fit`: maximum likelihood (L-BFGS-B in log-parameter space with the likelihood's
  gradient, several starts in-process or as Dask tasks), standard errors from the observed
  information or, for linked sites, the Godambe information from bootstrap replicates
  (:class:`FitResult`); or ``method="svgd"``: posterior particles by Stein variational gradient
  descent under a uniform or log-uniform prior on the bounds (:class:`PosteriorResult`);
- :func:`likelihood`: the log-likelihood as a reusable object (:class:`Problem`) with its exact
  gradient (reverse mode through the epochs) and batches, for scans and your own samplers;
- :func:`block_bootstrap`: block-bootstrap replicates of the SFS of a tree sequence;
- :func:`observed_sfs`: the observed SFS of an array, a ``.fs`` file, a tree sequence or a VCF
  with a population map;
- :func:`read_fs`, :func:`poisson_loglik`, :func:`multinomial_loglik`, :func:`fold`.

Every evaluation builds the model on the graph and elimination trace of its topology, loaded
from the store once (``cache=True``) and replayed.
"""

from phasic.inference._data import fold, observed_sfs, read_fs
from phasic.inference._fit import FitResult, block_bootstrap, fit, loglik
from phasic.inference._likelihood import multinomial_loglik, poisson_loglik, theta_mle
from phasic.inference._problem import Problem, likelihood
from phasic.inference._svgd import PosteriorResult

__all__ = [
    "FitResult",
    "PosteriorResult",
    "Problem",
    "block_bootstrap",
    "fit",
    "fold",
    "likelihood",
    "loglik",
    "multinomial_loglik",
    "observed_sfs",
    "poisson_loglik",
    "read_fs",
    "theta_mle",
]
