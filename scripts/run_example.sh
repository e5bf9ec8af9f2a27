#!/usr/bin/env bash
# `make run`: the example Snakemake workflow on the embedded default config (profiles/local),
# then Snakemake's HTML report (rebuilt only when a result changed), and where things are.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
snakemake --profile profiles/local
if [ ! -f results/report.html ] || [ -n "$(find results -newer results/report.html ! -name report.html -print -quit)" ]; then
    snakemake --profile profiles/local --report results/report.html
fi
echo "results: $PWD/results (summary: results/summary.tsv)"
echo "report:  $PWD/results/report.html"
echo "cache:   ${PHASIC_CACHE_DIR:-$HOME/.phasic_cache}"
