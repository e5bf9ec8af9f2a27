"""A Demes model drawn with demesdraw.tubes (Snakemake script of rule `plot_demes`)."""

import sys

import matplotlib

matplotlib.use("Agg")
import demes
import demesdraw
import matplotlib.pyplot as plt


def main(smk):
    model = smk.wildcards.model
    graph = demes.load(smk.input.demes)
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    demesdraw.tubes(graph, ax=ax)
    samples = ", ".join(f"{k}: {v}" for k, v in dict(smk.params.samples).items() if v)
    ax.set_title(f"{model} (samples {samples})", fontsize=10)
    fig.tight_layout()
    fig.savefig(smk.output.demes, dpi=110)
    plt.close(fig)
    print(f"plotted {smk.output.demes}")


if __name__ == "__main__" or "snakemake" in globals():
    with open(snakemake.log[0], "w") as log:  # noqa: F821
        sys.stdout = sys.stderr = log
        main(snakemake)  # noqa: F821
