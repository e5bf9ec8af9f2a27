# Stage 2: the graph's elimination trace, recorded into the store next to the graph.
#
# A trace's key is the hash of the graph's structure, known only once the graph exists, so the
# declared output is a small pointer, results/<model>/trace.json (graph key, trace key, entry
# paths, sizes, whether it was recorded now or found); the trace entry itself is written by
# `phasic trace record` as a side effect, atomically, and only when the store lacks it.
# ancient(): the graph entry's timestamp carries no information (phasic touches entries on
# use for LRU eviction), only its presence does.


rule record_trace:
    input:
        graph=ancient(graph_entry),
    output:
        pointer="results/{model}/trace.json",
    log:
        "logs/{model}/record_trace.log",
    benchmark:
        "logs/{model}/record_trace.benchmark.tsv"
    params:
        cache_dir=lambda wildcards, input: store_root(input.graph),
    threads: 1
    resources:
        mem_mb=sized_resource("record_trace", "mem_mb"),
        runtime=sized_resource("record_trace", "runtime"),
    conda:
        "../envs/phasic.yaml"
    shell:
        "phasic --cache-dir {params.cache_dir:q} trace record {input.graph:q}"
        " --out {output.pointer:q} --json > {log:q} 2>&1"
