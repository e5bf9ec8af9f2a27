"""pdf, cdf and moment plots of one model (Snakemake script of rule `plot`)."""

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from tables import pick, split_distribution, split_moments, theta_label


def curves(dist_path, out_path, which, model, max_curves):
    names, tcol, dcol, dist = split_distribution(dist_path)
    thetas = list(dist)
    shown = pick(thetas, max_curves)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for theta in shown:
        t, dens, cdf = dist[theta]
        y = dens if which == "density" else cdf
        if tcol == "k":
            ax.step(t, y, where="mid", label=theta_label(names, theta))
        else:
            ax.plot(t, y, label=theta_label(names, theta))
    ylabel = dcol if which == "density" else "cdf"
    ax.set_xlabel("time" if tcol == "t" else "steps")
    ax.set_ylabel(ylabel)
    title = f"{model}: {ylabel} of the time to absorption"
    if len(shown) < len(thetas):
        title += f" ({len(shown)} of {len(thetas)} parameter vectors)"
    ax.set_title(title, fontsize=10)
    if len(shown) > 1 or names:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)


def one_axis(thetas):
    """The index of the one parameter along which `thetas` are ordered (every other parameter
    the same in all of them), or None: only then are the points a curve worth joining."""
    if len(thetas) < 2 or not thetas[0]:
        return None
    varying = [i for i in range(len(thetas[0])) if len({th[i] for th in thetas}) > 1]
    if len(varying) != 1:
        return None
    values = [th[varying[0]] for th in thetas]
    return varying[0] if values in (sorted(values), sorted(values, reverse=True)) else None


def moments_plot(mom_path, out_path, model, max_curves):
    names, table = split_moments(mom_path)
    thetas = list(table)
    rewards = list(next(iter(table.values())))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    axis = one_axis(thetas)
    x = [th[axis] for th in thetas] if axis is not None else list(range(len(thetas)))
    for reward in pick(rewards, max_curves):
        mean = [table[th][reward]["moment_1"] for th in thetas]
        var = [table[th][reward].get("variance", float("nan")) for th in thetas]
        sd = [math.sqrt(v) if v == v and v >= 0 else 0.0 for v in var]
        # points of unordered parameter combinations are not joined: a line would suggest a trend
        style = "-" if axis is not None else "none"
        ax.errorbar(x, mean, yerr=sd, marker="o", capsize=3, linestyle=style, label=reward)
    if axis is not None:
        fixed = [f"{n}={v:g}" for i, (n, v) in enumerate(zip(names, thetas[0])) if i != axis]
        ax.set_xlabel(names[axis] + (f" ({', '.join(fixed)})" if fixed else ""))
    else:
        ax.set_xticks(x)
        ax.set_xticklabels([theta_label(names, th) for th in thetas], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("expectation (bars: one standard deviation)")
    ax.set_title(f"{model}: expectation per parameter vector", fontsize=10)
    if len(rewards) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)


def main(smk):
    model = smk.wildcards.model
    n = int(smk.params.max_curves)
    curves(smk.input.distribution, smk.output.pdf, "density", model, n)
    curves(smk.input.distribution, smk.output.cdf, "cdf", model, n)
    moments_plot(smk.input.moments, smk.output.moments, model, n)
    print(f"plotted {model}: {smk.output.pdf}, {smk.output.cdf}, {smk.output.moments}")


if __name__ == "__main__" or "snakemake" in globals():
    with open(snakemake.log[0], "w") as log:  # noqa: F821
        sys.stdout = sys.stderr = log
        main(snakemake)  # noqa: F821
