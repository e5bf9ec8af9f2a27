"""Pair plot of an SVGD posterior sample (Snakemake script of rule `plot_posterior`).

posterior.tsv has one column per parameter and one row per particle. The diagonal shows each
parameter's histogram with its posterior median and 5% and 95% quantiles (estimates.tsv); below
it, every pair as a scatter plot. Axes are logarithmic for a parameter whose particles span more
than a factor of ten.
"""

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from tables import read_table


def read_posterior(path):
    header, rows = read_table(path)
    return header, np.array([[float(x) for x in row] for row in rows], dtype=np.float64).reshape(len(rows), len(header))


def main(smk):
    fit = smk.wildcards.fit
    names, sample = read_posterior(smk.input.posterior)
    header, rows = read_table(smk.input.estimates)
    summary = {row[0]: dict(zip(header[1:], map(float, row[1:]))) for row in rows}
    p = len(names)
    logs = [bool(np.all(sample[:, i] > 0) and sample[:, i].max() > 10 * sample[:, i].min()) for i in range(p)]
    size = max(2.2, min(3.2, 9.0 / p))
    fig, axes = plt.subplots(p, p, figsize=(size * p, size * p), squeeze=False)
    for i in range(p):
        for j in range(p):
            ax = axes[i][j]
            if j > i:
                ax.set_visible(False)
                continue
            if i == j:
                values = sample[:, i]
                bins = np.geomspace(values.min(), values.max(), 16) if logs[i] else 15
                ax.hist(values, bins=bins, color="tab:blue", alpha=0.7)
                s = summary.get(names[i], {})
                for key, style in (("median", "-"), ("q05", "--"), ("q95", "--")):
                    if key in s and math.isfinite(s[key]):
                        ax.axvline(s[key], color="tab:orange", ls=style, lw=1.0)
                ax.set_yticks([])
            else:
                ax.scatter(sample[:, j], sample[:, i], s=8, alpha=0.7, color="tab:blue")
                if logs[i]:
                    ax.set_yscale("log")
            if logs[j]:
                ax.set_xscale("log")
            if i == p - 1:
                ax.set_xlabel(names[j])
            if j == 0 and i > 0:
                ax.set_ylabel(names[i])
    fig.suptitle(f"{fit}: SVGD posterior sample ({sample.shape[0]} particles)", fontsize=10)
    fig.tight_layout()
    fig.savefig(smk.output.pairs, dpi=110)
    plt.close(fig)
    print(f"plotted {smk.output.pairs}")


if __name__ == "__main__" or "snakemake" in globals():
    with open(snakemake.log[0], "w") as log:  # noqa: F821
        sys.stdout = sys.stderr = log
        main(snakemake)  # noqa: F821
