"""The plots of a fit (Snakemake script of rule `plot_fit`).

* sfs.png: the observed SFS against the one expected at the fit, with Anscombe residuals of
  the Poisson counts, ``1.5 (d^(2/3) - m^(2/3)) / m^(1/6)`` (about standard normal for a good
  fit, also for small counts). One sampled deme: points over bars, residuals below; two: heatmaps
  of the observed, expected (one logarithmic colour scale) and residual spectra; more: each
  deme's marginal spectrum (with Pearson residuals of the marginal counts). Cells the
  likelihood did not use (monomorphic, masked, folded away) are left out.
* loglik.png: the log-likelihood along each parameter (loglik.tsv, the others at the estimate),
  relative to its value at the estimate; the estimate, its interval (MLE +- 1.96 standard errors,
  or the posterior's 5% to 95% quantiles) and the 1.92 drop of a 95% likelihood interval.
* demes.png: the fitted Demes graph (demesdraw.tubes).
"""

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm, TwoSlopeNorm
from tables import read_table


def read_sfs(path):
    """``(deme names, observed, expected, used)`` arrays of a fit's sfs.tsv."""
    header, rows = read_table(path)
    k = header.index("observed")
    demes = header[:k]
    cells = np.array([[int(x) for x in row[:k]] for row in rows], dtype=np.int64).reshape(len(rows), k)
    shape = tuple(int(c) + 1 for c in cells.max(axis=0))
    out = []
    for col, dtype in (("observed", float), ("expected", float), ("used", int)):
        a = np.zeros(shape, dtype=dtype)
        a[tuple(cells.T)] = [dtype(row[header.index(col)]) for row in rows]
        out.append(a)
    return demes, out[0], out[1], out[2].astype(bool)


def anscombe(observed, expected):
    """Anscombe residuals of Poisson counts (nan where the expectation is not positive)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = 1.5 * (np.cbrt(observed) ** 2 - np.cbrt(expected) ** 2) / expected ** (1.0 / 6.0)
    return np.where(expected > 0, r, np.nan)


def pearson(observed, expected):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(expected > 0, (observed - expected) / np.sqrt(expected), np.nan)


def _residual_panel(ax, x, r, label):
    ax.bar(x, r, color=np.where(r >= 0, "tab:red", "tab:blue"), width=0.7)
    ax.axhline(0.0, color="black", lw=0.8)
    for y in (-2.0, 2.0):
        ax.axhline(y, color="grey", lw=0.8, ls="--")
    ax.set_ylabel(label)


def plot_sfs(path, fit, demes, observed, expected, used):
    if len(demes) == 1:
        fig, (top, bottom) = plt.subplots(
            2, 1, figsize=(6.4, 5.2), sharex=True, gridspec_kw={"height_ratios": [2.2, 1]}
        )
        x = np.flatnonzero(used)
        top.bar(x, expected[x], color="tab:orange", alpha=0.5, width=0.8, label="expected at the fit")
        top.plot(x, observed[x], "o", color="black", ms=4, label="observed")
        top.set_ylabel("sites")
        top.legend(fontsize=8)
        _residual_panel(bottom, x, anscombe(observed[x], expected[x]), "Anscombe residual")
        bottom.set_xlabel(f"derived copies among the {observed.shape[0] - 1} genomes of {demes[0]}")
        bottom.set_xticks(x)
    elif len(demes) == 2:
        fig, axes = plt.subplots(1, 3, figsize=(13.0, 4.2))
        obs = np.ma.masked_where(~used | (observed <= 0), observed)
        exp = np.ma.masked_where(~used | (expected <= 0), expected)
        res = np.ma.masked_where(~used, anscombe(observed, expected))
        values = np.concatenate([obs.compressed(), exp.compressed()])
        norm = LogNorm(vmin=values.min(), vmax=values.max()) if values.size else None
        for ax, data, title in ((axes[0], obs, "observed"), (axes[1], exp, "expected at the fit")):
            image = ax.imshow(data, origin="lower", cmap="viridis", norm=norm, aspect="auto")
            ax.set_title(title, fontsize=10)
        fig.colorbar(image, ax=axes[:2], label="sites (log scale)")
        bound = float(np.nanmax(np.abs(res.compressed()))) if res.count() else 1.0
        bound = bound if bound > 0 else 1.0
        image = axes[2].imshow(res, origin="lower", cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -bound, bound), aspect="auto")
        axes[2].set_title("Anscombe residuals", fontsize=10)
        fig.colorbar(image, ax=axes[2], label="residual")
        for ax in axes:
            ax.set_xlabel(f"derived copies in {demes[1]}")
            ax.set_ylabel(f"derived copies in {demes[0]}")
            ax.set_xticks(range(observed.shape[1]))
            ax.set_yticks(range(observed.shape[0]))
    else:
        fig, axes = plt.subplots(
            2, len(demes), figsize=(3.4 * len(demes), 5.0), squeeze=False, gridspec_kw={"height_ratios": [2.2, 1]}
        )
        for d, name in enumerate(demes):
            other = tuple(i for i in range(len(demes)) if i != d)
            o = np.where(used, observed, 0.0).sum(axis=other)
            e = np.where(used, expected, 0.0).sum(axis=other)
            x = np.arange(o.size)
            axes[0][d].bar(x, e, color="tab:orange", alpha=0.5, label="expected")
            axes[0][d].plot(x, o, "o", color="black", ms=4, label="observed")
            _residual_panel(axes[1][d], x, pearson(o, e), "Pearson residual" if d == 0 else "")
            axes[1][d].set_xlabel(f"derived copies in {name}")
        axes[0][0].set_ylabel("sites (marginal)")
        axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{fit}: observed and fitted site frequency spectrum", fontsize=10)
    if len(demes) != 2:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def read_estimates(path):
    """``{name: (estimate, lower, upper, label)}``: the MLE +- 1.96 standard errors, or the
    posterior median and its 5% and 95% quantiles."""
    header, rows = read_table(path)
    out = {}
    for row in rows:
        v = dict(zip(header, row))
        if "estimate" in v:
            est, se = float(v["estimate"]), float(v["stderr"])
            out[v["parameter"]] = (est, est - 1.96 * se, est + 1.96 * se, "estimate +- 1.96 SE")
        else:
            out[v["parameter"]] = (float(v["median"]), float(v["q05"]), float(v["q95"]), "median, 5%-95%")
    return out


def plot_scan(path, fit, scan_path, estimates):
    header, rows = read_table(scan_path)
    scans = {}
    for row in rows:
        v = dict(zip(header, row))
        scans.setdefault(v["parameter"], []).append((float(v["value"]), float(v["loglik"]), v["at_estimate"] == "1"))
    names = list(scans)
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        points = sorted(scans[name])
        x = np.array([p[0] for p in points])
        y = np.array([p[1] for p in points])
        top = [p[1] for p in points if p[2]]
        ref = top[0] if top and math.isfinite(top[0]) else np.nanmax(y)
        ax.plot(x, y - ref, "-o", ms=3, color="tab:blue")
        est, lo, hi, label = estimates[name]
        if math.isfinite(lo) and math.isfinite(hi):
            ax.axvspan(lo, hi, color="tab:orange", alpha=0.2, label=label)
        ax.axvline(est, color="tab:orange", lw=1.2)
        ax.axhline(-1.92, color="grey", lw=0.8, ls="--", label="-1.92 (95%)")
        ax.set_xlim(x.min(), x.max())
        ax.set_xlabel(name)
        ax.set_ylabel("log-likelihood - at estimate")
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{fit}: log-likelihood along each parameter (the others at the estimate)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_fitted_demes(path, fit, fitted, samples, summary):
    import demes
    import demesdraw

    graph = demes.load(fitted)
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    demesdraw.tubes(graph, ax=ax)
    text = ", ".join(f"{k}: {v}" for k, v in dict(samples).items() if v)
    ax.set_title(f"{fit}: the fitted model (samples {text}; log-likelihood {summary['loglik']:.6g})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(smk):
    fit = smk.wildcards.fit
    demes_, observed, expected, used = read_sfs(smk.input.sfs)
    plot_sfs(smk.output.sfs, fit, demes_, observed, expected, used)
    print(f"plotted {smk.output.sfs}")
    plot_scan(smk.output.scan, fit, smk.input.scan, read_estimates(smk.input.estimates))
    print(f"plotted {smk.output.scan}")
    summary = json.loads(Path(smk.input.summary).read_text())
    plot_fitted_demes(smk.output.demes, fit, smk.input.fitted, smk.params.samples, summary)
    print(f"plotted {smk.output.demes}")


if __name__ == "__main__" or "snakemake" in globals():
    with open(snakemake.log[0], "w") as log:  # noqa: F821
        sys.stdout = sys.stderr = log
        main(snakemake)  # noqa: F821
