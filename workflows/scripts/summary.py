"""One row per model: keys, sizes and expectations (Snakemake script of rule `summary`)."""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tables import split_moments

COLUMNS = [
    "model",
    "graph_key",
    "trace_key",
    "vertices",
    "edges",
    "theta_dim",
    "n_theta",
    "rewards",
    "expectation_min",
    "expectation_max",
    "graph_entry",
    "trace_entry",
    "logs",
]


def main(smk):
    rows = []
    for model, pointer, moments, logs in zip(smk.params.models, smk.input.pointers, smk.input.moments, smk.params.logs):
        info = json.loads(Path(pointer).read_text())
        names, table = split_moments(moments)
        rewards = list(next(iter(table.values())))
        first = [row[rewards[0]]["moment_1"] for row in table.values()]
        rows.append(
            [
                model,
                info["graph_key"],
                info["trace_key"],
                info["vertices"],
                info["edges"],
                info["theta_dim"],
                len(table) if info["theta_dim"] and names else 0,  # a Demes model: no theta columns
                ",".join(rewards),
                repr(min(first)),
                repr(max(first)),
                info["graph_entry"],
                info["trace_entry"],
                logs,
            ]
        )
    tmp = f"{smk.output.table}.tmp.{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write("\t".join(COLUMNS) + "\n")
        for row in rows:
            fh.write("\t".join(str(x) for x in row) + "\n")
    os.replace(tmp, smk.output.table)
    print(f"wrote {smk.output.table} ({len(rows)} models)")


if __name__ == "__main__" or "snakemake" in globals():
    with open(snakemake.log[0], "w") as log:  # noqa: F821
        sys.stdout = sys.stderr = log
        main(snakemake)  # noqa: F821
