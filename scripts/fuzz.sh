#!/usr/bin/env bash
# Fuzzes the wire contract with cargo-fuzz (libFuzzer): every message decoder
# (fuzz/fuzz_targets/decode_messages.rs) and the atom, drone-name and arch parsers
# (parse_identifiers.rs), each for a bounded time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      (default 60)
#   scripts/fuzz.sh --merge [SECONDS]         also merge new coverage into the committed corpus
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); it runs on stable Rust without a sanitizer
# (`-s none`). Each run starts from the committed corpus in fuzz/corpus/<target>/ and grows a
# copy in a temp folder, so the repository stays clean unless --merge is given. A crash stops
# the script with status 1 after copying the input to fuzz/regressions/<target>/: fix the bug
# and commit that file, which `cargo test -p swarm-schemas` then replays for ever.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

merge=0
if [[ "${1:-}" == "--merge" ]]; then
    merge=1
    shift
fi
seconds=${1:-60}
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || ((seconds == 0)); then
    echo "usage: $0 [--merge] [SECONDS_PER_TARGET]" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: cargo-fuzz is not installed; run: cargo install cargo-fuzz" >&2
    exit 2
fi

declare -A max_len=([decode_messages]=600 [parse_identifiers]=200)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0
for target in decode_messages parse_identifiers; do
    echo "==> fuzzing $target for $seconds s" >&2
    mkdir -p "$scratch/$target" "fuzz/artifacts/$target"
    if ! cargo fuzz run -s none "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -max_len="${max_len[$target]}" -print_final_stats=1 \
        >"$scratch/$target.log" 2>&1; then
        status=1
        mkdir -p "fuzz/regressions/$target"
        for crash in fuzz/artifacts/"$target"/*; do
            [[ -f "$crash" ]] || continue
            cp "$crash" "fuzz/regressions/$target/"
            echo "fuzz: $target failed on $crash; kept as fuzz/regressions/$target/$(basename "$crash")" >&2
        done
        tail -n 40 "$scratch/$target.log" >&2
        continue
    fi
    grep -E '^(Done|stat::number_of_executed_units)' "$scratch/$target.log" >&2 || true
    if ((merge)); then
        cargo fuzz run -s none "$target" "fuzz/corpus/$target" "$scratch/$target" -- -merge=1 \
            >>"$scratch/$target.log" 2>&1
        echo "fuzz: merged new coverage into fuzz/corpus/$target" >&2
    fi
done
exit "$status"
