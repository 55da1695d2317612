#!/usr/bin/env bash
# Prints the Markdown table of docs/reliability.md from artifacts/reliability.tsv, which every
# reliability test appends its figures to (time, fault, packages, succeeded, failed, builds,
# lost, built twice, wrong final state): the latest run of each fault.
#
#   scripts/reliability-table.sh [FILE]       (default artifacts/reliability.tsv)
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
file=${1:-$repo_root/artifacts/reliability.tsv}
if [[ ! -s "$file" ]]; then
    echo "reliability-table: $file is missing or empty; run the reliability suite first" >&2
    exit 1
fi

echo "| fault injected | packages | succeeded | failed | builds | lost | built twice | wrong final state |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
# The latest line of each fault (named by the text before its first colon, so that runs whose
# details differ count as one fault), in the order the faults first appear.
awk -F'\t' '
    { key = $2; sub(/:.*/, "", key); if (!(key in last)) order[++n] = key; last[key] = $0 }
    END {
        for (i = 1; i <= n; i++) {
            split(last[order[i]], f, "\t")
            printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9]
        }
    }' "$file"
