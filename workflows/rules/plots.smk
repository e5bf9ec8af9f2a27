# Stage 4: figures (matplotlib, Agg backend), included in `snakemake --report`.


rule plot:
    input:
        moments="results/{model}/moments.tsv",
        distribution="results/{model}/distribution.tsv",
    output:
        pdf=report("results/{model}/pdf.png", category="{model}", subcategory="plots", caption="../report/pdf.rst"),
        cdf=report("results/{model}/cdf.png", category="{model}", subcategory="plots", caption="../report/cdf.rst"),
        moments=report(
            "results/{model}/moments.png",
            category="{model}",
            subcategory="plots",
            caption="../report/moments_plot.rst",
        ),
    log:
        "logs/{model}/plot.log",
    params:
        max_curves=12,
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/phasic.yaml"
    script:
        "../scripts/plot.py"


rule plot_sfs:
    input:
        moments="results/{model}/moments.tsv",
    output:
        sfs=report("results/{model}/sfs.png", category="{model}", subcategory="plots", caption="../report/sfs.rst"),
    log:
        "logs/{model}/plot_sfs.log",
    params:
        max_groups=4,
    wildcard_constraints:
        model=_model_regex([m for m in SFS_MODELS if m not in DEMES_MODELS]),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/phasic.yaml"
    script:
        "../scripts/plot_sfs.py"


# A Demes model: its expected SFS (sfs.tsv; bars for one sampled deme, a log-scaled heatmap
# for two, each deme's marginal SFS for more) and the model itself (demesdraw.tubes).


rule plot_demes_sfs:
    input:
        sfs="results/{model}/sfs.tsv",
    output:
        sfs=report(
            "results/{model}/sfs.png", category="{model}", subcategory="plots", caption="../report/demes_sfs.rst"
        ),
    log:
        "logs/{model}/plot_sfs.log",
    wildcard_constraints:
        model=_model_regex(DEMES_MODELS),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/phasic.yaml"
    script:
        "../scripts/plot_demes_sfs.py"


rule plot_demes:
    input:
        demes=lambda wildcards: MODELS[wildcards.model]["demes"],
    output:
        demes=report(
            "results/{model}/demes.png", category="{model}", subcategory="plots", caption="../report/demes.rst"
        ),
    log:
        "logs/{model}/plot_demes.log",
    params:
        samples=lambda wildcards: MODELS[wildcards.model]["samples"],
    wildcard_constraints:
        model=_model_regex(DEMES_MODELS),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/phasic.yaml"
    script:
        "../scripts/plot_demes.py"
