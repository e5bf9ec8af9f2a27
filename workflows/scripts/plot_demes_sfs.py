"""The expected SFS of a Demes model (Snakemake script of rule `plot_demes_sfs`).

sfs.tsv (``phasic evaluate --sfs-out``) has one column per sampled deme, the cell's index, and
``branch_length``; one sampled deme is drawn as bars, two as a heatmap with a logarithmic colour
scale (zero cells blank), more as each deme's marginal spectrum.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm
from tables import read_table


def read_sfs(path):
    """``(deme names, array)`` of an sfs.tsv table."""
    header, rows = read_table(path)
    demes = header[:-1]
    cells = np.array([[int(x) for x in row[:-1]] for row in rows], dtype=np.int64).reshape(len(rows), len(demes))
    shape = tuple(int(c) + 1 for c in cells.max(axis=0))
    sfs = np.zeros(shape)
    sfs[tuple(cells.T)] = [float(row[-1]) for row in rows]
    return demes, sfs


def main(smk):
    model = smk.wildcards.model
    demes, sfs = read_sfs(smk.input.sfs)
    units = "expected branch length"
    if len(demes) == 1:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        n = sfs.shape[0] - 1
        ax.bar(range(1, n), sfs[1:n])
        ax.set_xticks(range(1, n))
        ax.set_xlabel(f"genomes of {demes[0]} below the branch")
        ax.set_ylabel(units)
    elif len(demes) == 2:
        fig, ax = plt.subplots(figsize=(5.6, 4.8))
        data = np.ma.masked_less_equal(sfs, 0.0)
        norm = LogNorm(vmin=data.min(), vmax=data.max()) if data.count() else None
        image = ax.imshow(data, origin="lower", cmap="viridis", norm=norm, aspect="auto")
        ax.set_xlabel(f"genomes of {demes[1]} below the branch")
        ax.set_ylabel(f"genomes of {demes[0]} below the branch")
        ax.set_xticks(range(sfs.shape[1]))
        ax.set_yticks(range(sfs.shape[0]))
        fig.colorbar(image, ax=ax, label=f"{units} (log scale)")
    else:
        fig, axes = plt.subplots(1, len(demes), figsize=(3.2 * len(demes), 3.6), squeeze=False)
        for d, (ax, name) in enumerate(zip(axes[0], demes)):
            marginal = sfs.sum(axis=tuple(i for i in range(len(demes)) if i != d))
            ax.bar(range(len(marginal)), marginal)
            ax.set_xlabel(f"genomes of {name}")
        axes[0][0].set_ylabel(f"{units} (marginal)")
        ax = axes[0][0]
    fig.suptitle(f"{model}: expected site frequency spectrum", fontsize=10)
    fig.tight_layout()
    fig.savefig(smk.output.sfs, dpi=110)
    plt.close(fig)
    print(f"plotted {smk.output.sfs}")


if __name__ == "__main__" or "snakemake" in globals():
    with open(snakemake.log[0], "w") as log:  # noqa: F821
        sys.stdout = sys.stderr = log
        main(snakemake)  # noqa: F821
