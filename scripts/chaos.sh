#!/usr/bin/env bash
# The chaos soak's long form: tests/tests/chaos.rs on a 3-node NATS cluster with two
# coordinators, three drones, the dashboard and the binhost, every kind of component killed with
# -9 and started again at random moments for N minutes (more packages submitted in waves as the
# queue drains), then the invariant checker. Prints the seed and the table of faults injected and
# invariants held; exits non-zero when an invariant is broken.
#
#   scripts/chaos.sh --minutes N [--seed S]
#
# Needs nats-server (NATS_SERVER_BIN, or on PATH) and the built binaries
# (cargo build --workspace --bins, which this script runs).
set -euo pipefail

minutes=""
seed=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --minutes) minutes=${2:-}; shift 2 ;;
        --seed) seed=${2:-}; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "chaos.sh: unknown argument $1 (use --minutes N [--seed S])" >&2; exit 2 ;;
    esac
done
if ! [[ "$minutes" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
    echo "chaos.sh: --minutes needs a number of minutes, got '${minutes}'" >&2
    exit 2
fi
if [[ -n "$seed" && ! "$seed" =~ ^[0-9]+$ ]]; then
    echo "chaos.sh: --seed needs a whole number, got '${seed}'" >&2
    exit 2
fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --workspace --bins
export CHAOS_MINUTES="$minutes"
if [[ -n "$seed" ]]; then export CHAOS_SEED="$seed"; fi
exec cargo test -p swarm-tests --test chaos -- --ignored --nocapture
