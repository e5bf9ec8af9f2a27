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


def observed_sfs(data, shape=None):
    """``(counts, mask, folded)`` from an array, a list or a ``.fs`` path; checks the shape
    against the model's (``(n_1 + 1, ...)``) when given."""
    if isinstance(data, (str, Path)):
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
