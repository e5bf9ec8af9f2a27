"""Bar chart of the expected site frequency spectrum (Snakemake script of rule `plot_sfs`).

The moments table of a model with ``rewards: sfs`` holds E[L_i], the expected total length of
branches subtending i of the n sampled genes; the expected SFS is E[xi_i] = mu * E[L_i].
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from tables import pick, split_moments, theta_label


def main(smk):
    model = smk.wildcards.model
    names, table = split_moments(smk.input.moments)
    thetas = pick(list(table), int(smk.params.max_groups))
    rewards = [r for r in next(iter(table.values())) if r.startswith("xi_")]
    if not rewards:
        raise SystemExit(f"{smk.input.moments} has no xi_i rows; plot_sfs needs a model with rewards: sfs")
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    width = 0.8 / len(thetas)
    for j, theta in enumerate(thetas):
        x = [i + 1 + (j - (len(thetas) - 1) / 2) * width for i in range(len(rewards))]
        ax.bar(x, [table[theta][r]["moment_1"] for r in rewards], width=width, label=theta_label(names, theta))
    ax.set_xticks(range(1, len(rewards) + 1))
    ax.set_xlabel("i (number of sampled genes below the branch)")
    ax.set_ylabel("E[L_i]  (expected SFS / mutation rate)")
    ax.set_title(f"{model}: expected site frequency spectrum", fontsize=10)
    if names:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(smk.output.sfs, dpi=110)
    plt.close(fig)
    print(f"plotted {smk.output.sfs}")


if __name__ == "__main__" or "snakemake" in globals():
    with open(snakemake.log[0], "w") as log:  # noqa: F821
        sys.stdout = sys.stderr = log
        main(snakemake)  # noqa: F821
