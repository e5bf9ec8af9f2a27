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


report: "workflows/report/workflow.rst"


localrules:
    all,
    summary,
    plot,
    plot_sfs,
    plot_demes_sfs,
    plot_demes,


rule all:
    input:
        "results/summary.tsv",
        expand("results/{model}/{plot}.png", model=MODEL_NAMES, plot=("pdf", "cdf", "moments")),
        expand("results/{model}/sfs.png", model=dict.fromkeys(SFS_MODELS + DEMES_MODELS)),
        expand("results/{model}/demes.png", model=DEMES_MODELS),
    default_target: True


onsuccess:
    link_build_logs()
    print(f"phasic: results in {os.path.abspath(RESULTS_DIR)} (summary.tsv, <model>/*.tsv, *.png)")
    print(f"phasic: graphs and traces in the store {CACHE_DIR}")
    print(f"phasic: HTML report: snakemake --report {RESULTS_DIR}/report.html")


onerror:
    link_build_logs()
    print("phasic: each model's logs are in logs/<model>/ (build_graph.log, record_trace.log, evaluate.log, plot*.log)")
