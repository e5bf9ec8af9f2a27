"""Job sizes (``mem_mb``, ``runtime``) of ``record_trace`` and ``evaluate`` from what is known.

A built graph's store entry records its vertex and edge counts (the shapes of its ``states``
and ``edges/target`` arrays); a model's spec says how many parameter vectors, time points and
rewards it is evaluated at.  The workflow's rules ask :func:`resources` when Snakemake schedules
a job, i.e. after ``build_graph`` has stored the entry; before that (a dry run from an empty
store, or a Slurm group job that builds the graph itself) the size is the floor.

The formula (``SAFETY`` x the fitted peak, never below ``FLOOR``)::

    mem_mb  = max(FLOOR, SAFETY * (BASE_MB + (BYTES_PER_VERTEX * V + BYTES_PER_EDGE * E
                                             + BYTES_PER_DISTRIBUTION_ROW * B * T
                                             + BYTES_PER_MOMENT_ROW * B * R) / 2**20))
    runtime = max(FLOOR, SAFETY * (BASE_S + SECONDS_PER_ELEMENT * (V + E) * B'
                                   + SECONDS_PER_DISTRIBUTION_ROW * B * T
                                   + SECONDS_PER_MOMENT_ROW * B * R) / 60)      # minutes

with V vertices, E edges, B parameter vectors (1 without any), T time points per vector, R
rewards (``evaluate`` only; ``record_trace`` has B' = 1 and no rows).  The constants are the
peak resident memory and wall time of ``phasic trace record`` and ``phasic evaluate`` (measured
with ``/usr/bin/time`` on the 2-core development machine; a least-squares fit of
``base + a V + b E`` to Kingman chains of 11 to 800,001 vertices, block-counting coalescents of
78 to 5,605 vertices and two-island models of 861 to 321,201 vertices / 1,279,999 edges, each
within 15% of its point above 60 MB; rounded up):

======================  =========  ==========  ========  =================================
step                    base       per vertex  per edge  per row
======================  =========  ==========  ========  =================================
record_trace            46 MB      210 B       327 B     --
evaluate                36 MB      128 B       147 B     ~630 B (pdf/cdf), ~1.4 KB (moments)
======================  =========  ==========  ========  =================================

e.g. the two-island model with 321,201 vertices: record_trace 510 MB and 1.2 s, evaluate (2
vectors, moments) 255 MB and 0.6 s; a Kingman model evaluated at 1,000 vectors x 1,000 times:
663 MB and 10.6 s.  The memory of both steps is linear in V and E (the elimination trace of
these graphs has no fill-in to speak of); a model whose trace grows faster needs its own
``resources``.  The runtime covers recording, moment replay and writing the tables; the pdf/cdf
by uniformisation costs about (largest exit rate x last time point) steps over the edges, which
the counts do not tell (one vector of the 7,381-vertex two-island model up to t = 5: 150 s), so
a model with stiff rates and long time grids should set ``runtime`` itself.

A model's own ``resources`` and the config's top-level ``resources`` win over these values
(``common.smk``); this module only knows sizes.  Plain Python, no Snakemake: the tests call it
directly.
"""

import math
import os

#: peak sizes are multiplied by this (another callback's graph, another numpy, page rounding)
SAFETY = 2.0
#: no job asks for less than this: what every job got before jobs were sized
FLOOR = {"mem_mb": 1000, "runtime": 15}

BASE_MB = {"record_trace": 50, "evaluate": 40}
BYTES_PER_VERTEX = {"record_trace": 256, "evaluate": 160}
BYTES_PER_EDGE = {"record_trace": 384, "evaluate": 160}
BYTES_PER_DISTRIBUTION_ROW = 700
BYTES_PER_MOMENT_ROW = 1536

BASE_S = 2.0
#: trace recording: 1.2 s for 1.6 M vertices + edges; moment replay: 9 ns per vector and element
SECONDS_PER_ELEMENT = {"record_trace": 2e-6, "evaluate": 2e-8}
SECONDS_PER_DISTRIBUTION_ROW = 2e-5  # measured 1.0e-5 (10.6 s for 10^6 rows)
SECONDS_PER_MOMENT_ROW = 1.5e-4  # measured 7.5e-5 (7.5 s for 10^5 vectors)

STEPS = tuple(BASE_MB)
#: points of an automatic time grid (``phasic evaluate --times auto``)
AUTO_TIMES = 100


def graph_size(entry):
    """``{"vertices", "edges", "state_length", "theta_dim"}`` of the graph stored at ``entry``
    (``<root>/graphs/xx/<62 hex>.h5``), or None while there is no readable entry there.

    Read through :class:`phasic.store.Store` (its checksum verified); remembered per file
    (inode, size), so a scheduler asking for many jobs reads each entry once."""
    try:
        st = os.stat(entry)
    except OSError:
        return None
    return _graph_size(str(entry), st.st_ino, st.st_size)


_SIZES = {}


def _graph_size(entry, inode, size):
    key = (entry, inode, size)
    if key not in _SIZES:
        from phasic.specs import entry_key
        from phasic.store import Store

        root, kind, graph_key = entry_key(entry)
        found = Store(root).get(kind, graph_key)
        if found is None:  # damaged or unreadable: the jobs report it; size as unknown
            return None
        arrays, attrs = found
        _SIZES[key] = {
            "vertices": int(arrays["states"].shape[0]),
            "edges": int(arrays["edges/target"].shape[0]),
            "state_length": int(attrs.get("state_length") or arrays["states"].shape[1]),
            "theta_dim": int(attrs.get("theta_dim") or 0),
        }
    return _SIZES[key]


def evaluation_size(spec, size=None):
    """``(B, T, R)`` of a model spec: parameter vectors (1 without any), time points per vector
    of the pdf/cdf table and rewards (state columns for ``sfs``/``columns``/a function, which
    needs the graph's ``state_length``; 1 without rewards)."""
    from phasic.specs import theta_matrix

    thetas = theta_matrix(spec)
    n_theta = 1 if thetas is None else int(thetas.shape[0])
    times = spec.get("times", "auto")
    if isinstance(times, list):
        n_times = len(times)
    elif isinstance(times, dict):
        n_times = int(times.get("num", AUTO_TIMES))
    elif isinstance(times, str) and times.startswith("auto:"):
        n_times = int(times[5:])
    else:
        n_times = AUTO_TIMES
    columns = (size or {}).get("state_length", 1)
    rewards = spec.get("rewards")
    n_rewards = 1 if rewards is None else max(1, columns - 1 if rewards == "sfs" else columns)
    return n_theta, n_times, n_rewards


def estimate(step, vertices, edges, n_theta=1, n_times=0, n_rewards=1):
    """``{"mem_mb", "runtime"}`` of ``step`` (``record_trace`` or ``evaluate``) by the formula
    above (integers: MB and minutes)."""
    if step not in STEPS:
        raise ValueError(f"no sizes for the step {step!r}; known: {', '.join(STEPS)}")
    elements = vertices + edges
    if step == "evaluate":
        dist_rows, moment_rows, sweeps = n_theta * n_times, n_theta * n_rewards, n_theta
    else:
        dist_rows = moment_rows = 0
        sweeps = 1
    nbytes = (
        BYTES_PER_VERTEX[step] * vertices
        + BYTES_PER_EDGE[step] * edges
        + BYTES_PER_DISTRIBUTION_ROW * dist_rows
        + BYTES_PER_MOMENT_ROW * moment_rows
    )
    mem_mb = SAFETY * (BASE_MB[step] + nbytes / 2**20)
    seconds = (
        BASE_S
        + SECONDS_PER_ELEMENT[step] * elements * sweeps
        + SECONDS_PER_DISTRIBUTION_ROW * dist_rows
        + SECONDS_PER_MOMENT_ROW * moment_rows
    )
    runtime = SAFETY * seconds / 60
    return {
        "mem_mb": max(FLOOR["mem_mb"], math.ceil(mem_mb)),
        "runtime": max(FLOOR["runtime"], math.ceil(runtime)),
    }


def resources(step, spec, entry):
    """``{"mem_mb", "runtime"}`` of ``step`` for the model ``spec`` whose graph entry is at
    ``entry``: by :func:`estimate` once the entry exists, else the floor."""
    size = graph_size(entry)
    if size is None:
        return dict(FLOOR)
    counts = evaluation_size(spec, size) if step == "evaluate" else (1, 0, 1)
    return estimate(step, size["vertices"], size["edges"], *counts)
