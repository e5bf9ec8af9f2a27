"""Time-inhomogeneous models: epoch schedules on any parameterised graph, the standard
coalescent state spaces as library callbacks, and Demes demographic models (sizes that
change, splits, migration, pulses) with their SFS and T_MRCA.

- :class:`Epochs`: piecewise-constant parameters on a :class:`phasic.Graph`, with state maps
  at the breakpoints;
- :func:`lineage_counting`, :func:`block_counting`, :func:`islands`: the coalescent state
  spaces, as library callbacks;
- :func:`from_demes`: a Demes model as a :class:`DemographicModel` (``expected_sfs()``,
  ``expectation()``, ``variance()``, ``moments()``, ``pdf()``, ``cdf()``).
"""

from phasic.demography._epochs import Epochs
from phasic.demography._model import DemographicModel, Topologies, from_demes, graph_spec, sfs_shape
from phasic.demography._spaces import (
    block_counting,
    block_types,
    island_moves,
    islands,
    lineage_counting,
    lineage_sfs_weights,
)

__all__ = [
    "DemographicModel",
    "Epochs",
    "Topologies",
    "block_counting",
    "block_types",
    "from_demes",
    "graph_spec",
    "island_moves",
    "islands",
    "lineage_counting",
    "lineage_sfs_weights",
    "sfs_shape",
]
