"""The log-likelihood along each fitted parameter (Snakemake script of rule `scan_fit`).

Each parameter in turn takes `points` values over ``centre +- width x spread`` (the MLE and its
standard error; for SVGD the posterior median and the sd-equivalents of its 5% and 95%
quantiles, on either side), within the options file's bounds, with
the estimate itself among them; the other parameters stay at their estimates. Every value is
one ``phasic.inference.loglik`` call on the graph and trace the fit left in the store. A value
the model refuses (an invalid Demes graph, a broken constraint) is written as ``nan``.

loglik.tsv: ``parameter``, ``value``, ``loglik``, ``at_estimate`` (1 on the estimate's row).
"""

import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from tables import read_table


def centres(path):
    """``{name: (centre, spread below, spread above)}`` from estimates.tsv: the MLE and its
    standard error either way, or the posterior median and the sd-equivalents of its 5% and 95%
    quantiles' distances (``(median - q05) / 1.645``, ``(q95 - median) / 1.645``: a skewed
    posterior is scanned further on its long side)."""
    header, rows = read_table(path)
    out = {}
    for row in rows:
        v = {h: float(x) for h, x in zip(header[1:], row[1:])}
        if "estimate" in v:
            out[row[0]] = (v["estimate"], v["stderr"], v["stderr"])
        else:
            med = v["median"]
            out[row[0]] = (med, (med - v["q05"]) / 1.645, (v["q95"] - med) / 1.645)
    return out


def bounds(options_path):
    """``{name: (lower, upper)}`` of the options file (missing bounds: 0 and infinity)."""
    import yaml

    options = yaml.safe_load(Path(options_path).read_text())
    out = {}
    for p in options.get("parameters", []):
        lo = p.get("lower_bound", 0.0)
        hi = p.get("upper_bound", math.inf)
        out[p["name"]] = (float(lo if lo is not None else 0.0), float(hi if hi is not None else math.inf))
    return out


def grid(centre, below, above, lower, upper, points, width):
    """`points` values over ``centre - width x below`` to ``centre + width x above`` (itself
    included), within the bounds and above ``centre / 20``."""
    lo = centre - width * below if math.isfinite(below) and below > 0 else centre / 2.0
    hi = centre + width * above if math.isfinite(above) and above > 0 else centre * 2.0
    lo = max(lo, lower, centre / 20.0)
    hi = min(hi, upper)
    values = np.linspace(lo, hi, points)
    return np.unique(np.append(values, centre))


def observed_data(data, sfs_path):
    """What loglik reads: a .fs file as it is (its mask and folding); for a .trees or VCF file,
    the observed SFS the fit job computed (sfs.tsv), rather than reading the file once per value."""
    if not str(data).lower().endswith((".trees", ".vcf", ".vcf.gz", ".bcf")):
        return data
    header, rows = read_table(sfs_path)
    d = header.index("observed")
    cells = np.array([[int(x) for x in row[:d]] for row in rows], dtype=np.int64)
    counts = np.zeros(tuple(int(c) + 1 for c in cells.max(axis=0)))
    counts[tuple(cells.T)] = [float(row[d]) for row in rows]
    return counts


def main(smk):
    os.environ["PHASIC_CACHE_DIR"] = smk.params.cache_dir  # the workflow's store
    from phasic import inference
    from phasic.exceptions import PhasicError

    fit = dict(smk.params.fit)
    est = centres(smk.input.estimates)
    limits = bounds(smk.input.options)
    data = observed_data(smk.input.data, smk.input.sfs)
    kwargs = dict(
        samples=dict(fit["samples"]),
        mutation_rate=fit.get("mutation_rate"),
        sequence_length=fit.get("sequence_length"),
        folded=True if fit.get("folded") else None,
        state_space=fit.get("state_space"),
    )
    at = {name: c[0] for name, c in est.items()}
    rows = ["parameter\tvalue\tloglik\tat_estimate"]
    points, width = int(fit["scan"]["points"]), float(fit["scan"]["width"])
    for name, (centre, below, above) in est.items():
        lower, upper = limits.get(name, (0.0, math.inf))
        for value in grid(centre, below, above, lower, upper, points, width):
            try:
                ll = inference.loglik(
                    smk.input.model, smk.input.options, data, params={**at, name: float(value)}, **kwargs
                )
            except PhasicError as exc:
                print(f"{name} = {value!r}: {exc}")
                ll = math.nan
            rows.append(f"{name}\t{float(value)!r}\t{float(ll)!r}\t{int(value == centre)}")
    Path(smk.output.scan).write_text("\n".join(rows) + "\n")
    print(f"wrote {smk.output.scan}: {len(rows) - 1} log-likelihoods")


if __name__ == "__main__" or "snakemake" in globals():
    with open(snakemake.log[0], "w") as log:  # noqa: F821
        sys.stdout = sys.stderr = log
        main(snakemake)  # noqa: F821
