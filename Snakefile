# phasic workflow: build phase-type graphs into the content-addressed store, record their
# elimination traces, evaluate moments and distributions over parameter grids, plot them.
#
#   snakemake --profile profiles/local                  # this machine, all cores
#   snakemake --profile profiles/slurm --default-resources slurm_partition=short
#   snakemake --configfile my_models.yaml --profile profiles/local
#   snakemake --report results/report.html
#
# Every graph and trace is a store entry: a workflow output whose path is its content-addressed
# key, so whatever is already in the cache (from an earlier run, another workflow or a library
# call with cache=True) is used as it is. See docs/workflow.md.

from snakemake.utils import min_version

min_version("8.0")


configfile: workflow.source_path("workflows/config/default.yaml")


# the image of every job under --sdm apptainer (config `container`: workflows/container/Dockerfile
# builds one); none by default
container: config.get("container")


include: "workflows/rules/common.smk"
include: "workflows/rules/graphs.smk"
include: "workflows/rules/traces.smk"
include: "workflows/rules/evaluate.smk"
include: "workflows/rules/plots.smk"
include: "workflows/rules/summary.smk"
include: "workflows/rules/fit.smk"


report: "workflows/report/workflow.rst"


localrules:
    all,
    summary,
    plot,
    plot_sfs,
    plot_demes_sfs,
    plot_demes,
    plot_fit,
    plot_posterior,


rule all:
    input:
        ["results/summary.tsv"] if MODEL_NAMES else [],
        expand("results/{model}/{plot}.png", model=MODEL_NAMES, plot=("pdf", "cdf", "moments")),
        expand("results/{model}/sfs.png", model=dict.fromkeys(SFS_MODELS + DEMES_MODELS)),
        expand("results/{model}/demes.png", model=DEMES_MODELS),
        # fits: estimates.tsv, fitted.yaml, sfs.tsv, loglik.tsv (and posterior.tsv) come with these
        expand("results/{fit}/{plot}.png", fit=FIT_NAMES, plot=("sfs", "loglik", "demes")),
        expand("results/{fit}/posterior.png", fit=SVGD_FITS),
    default_target: True


onsuccess:
    link_build_logs()
    print(f"phasic: results in {os.path.abspath(RESULTS_DIR)} (summary.tsv, <model>/*.tsv, *.png)")
    if FIT_NAMES:
        print(f"phasic: fits in {', '.join(f'{RESULTS_DIR}/{name}/' for name in FIT_NAMES)} (estimates.tsv, fitted.yaml, *.png)")
    print(f"phasic: graphs and traces in the store {CACHE_DIR}")
    print(f"phasic: HTML report: snakemake --report {RESULTS_DIR}/report.html")


onerror:
    link_build_logs()
    print("phasic: each model's logs are in logs/<model>/ (build_graph.log, record_trace.log, evaluate.log, plot*.log)")
    if FIT_NAMES:
        print("phasic: each fit's logs are in logs/<fit>/ (fit.log, scan_fit.log, plot_fit.log)")
