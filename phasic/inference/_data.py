"""Observed site frequency spectra: arrays, dadi/moments ``.fs`` files; folding and masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from phasic.exceptions import ParameterError


def read_fs(path):
    """A dadi/moments ``.fs`` file: ``(counts, mask, folded)``.

    The format: comment lines start with ``#``; then a line with the dimensions (``n_1 + 1``
    ...), optionally followed by ``folded`` or ``unfolded``; a line of the entries in C order;
    optionally a line of 0/1 mask flags (1 = masked).
    """
    p = Path(path)
    if not p.is_file():
        raise ParameterError(f"SFS file {str(path)!r} not found")
    lines = [ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if len(lines) < 2:
        raise ParameterError(f"SFS file {str(path)!r} has no dimensions line and data line")
    head = lines[0].split()
    folded = "folded" in head and "unfolded" not in head
    try:
        dims = tuple(int(x) for x in head if x not in ("folded", "unfolded"))
        data = np.array([float(x) for x in lines[1].split()])
    except ValueError as exc:
        raise ParameterError(f"SFS file {str(path)!r} is malformed: {exc}") from None
    if not dims or data.size != int(np.prod(dims)):
        raise ParameterError(f"SFS file {str(path)!r}: {data.size} entries do not fill dimensions {dims}")
    mask = np.zeros(dims, bool)
    if len(lines) > 2:
        flags = np.array([int(x) for x in lines[2].split()])
        if flags.size != data.size:
            raise ParameterError(f"SFS file {str(path)!r}: the mask has {flags.size} entries, the data {data.size}")
        mask = flags.reshape(dims).astype(bool)
    return data.reshape(dims), mask, folded


def sfs_from_trees(ts, samples):
    """The polarised site SFS of a tskit tree sequence (or a ``.trees`` path), with one sample
    set per deme of `samples` (in its order): the sample nodes of the population of that name,
    whose number must match."""
    import tskit

    if isinstance(ts, (str, Path)):
        try:
            ts = tskit.load(str(ts))
        except (OSError, tskit.FileFormatError) as exc:
            raise ParameterError(f"cannot read the tree sequence {str(ts)!r}: {exc}") from None
    names = {
        pop.id: (pop.metadata or {}).get("name") if isinstance(pop.metadata, dict) else None for pop in ts.populations()
    }
    sets = []
    for deme, n in samples.items():
        ids = [k for k, v in names.items() if v == deme]
        if not ids:
            raise ParameterError(
                f"the tree sequence has no population named {deme!r} (names: {sorted(v for v in names.values() if v)})"
            )
        nodes = ts.samples(population=ids[0])
        if len(nodes) != n:
            raise ParameterError(
                f"population {deme!r} has {len(nodes)} sample genomes in the tree sequence; samples says {n}"
            )
        sets.append(nodes)
    return ts.allele_frequency_spectrum(sample_sets=sets, mode="site", polarised=True, span_normalise=False)


def observed_sfs(data, shape=None, samples=None):
    """``(counts, mask, folded)`` from an array, a list, a ``.fs`` path, or a tskit tree
    sequence (an object or a ``.trees`` path, with `samples` naming the demes); checks the
    shape against the model's (``(n_1 + 1, ...)``) when given."""
    if type(data).__name__ == "TreeSequence" or (isinstance(data, (str, Path)) and str(data).endswith(".trees")):
        counts, mask, folded = sfs_from_trees(data, samples or {}), None, False
        mask = np.zeros(counts.shape, bool)
    elif isinstance(data, (str, Path)):
        counts, mask, folded = read_fs(data)
    else:
        counts = np.asarray(data, dtype=np.float64)
        mask = np.zeros(counts.shape, bool)
        folded = False
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ParameterError("the observed SFS has negative or non-finite entries")
    if shape is not None and tuple(counts.shape) != tuple(shape):
        raise ParameterError(
            f"the observed SFS has shape {counts.shape}, the model's samples give {tuple(shape)} "
            "(n + 1 per sampled deme, in the order of `samples`)"
        )
    return counts, mask, folded


def corners_mask(shape):
    """Monomorphic cells: none and all of the samples derived."""
    m = np.zeros(shape, bool)
    m[(0,) * len(shape)] = True
    m[tuple(n - 1 for n in shape)] = True
    return m


def fold(a):
    """The folded spectrum: cell ``c`` plus cell ``n - c`` on the side with fewer derived
    copies in total (ties: kept once), the other side zero."""
    a = np.asarray(a, dtype=np.float64)
    shape = a.shape
    total = sum(shape) - len(shape)
    idx = np.indices(shape).sum(axis=0)
    flipped = a[tuple(slice(None, None, -1) for _ in shape)]
    out = np.where(idx < total / 2, a + flipped, 0.0)
    out = np.where(idx == total / 2, a, out)
    return out
