#!/usr/bin/env bash
# Runs every cargo-fuzz target for a short while (CI's fuzz step).
#
#   FUZZ_SECONDS=30 scripts/fuzz.sh          # all targets, 30 s each
#   scripts/fuzz.sh config planner           # only these targets
#
# Each target starts from a throwaway corpus seeded with fuzz/seeds/<target>
# (the committed seeds are never modified). A crash fails the run; its input
# is kept in fuzz/artifacts/<target>/ and the libFuzzer log names it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${FUZZ_SECONDS:-30}
toolchain=${FUZZ_TOOLCHAIN:-nightly}

if command -v rustup >/dev/null && ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing the $toolchain toolchain" >&2
    rustup toolchain install "$toolchain" --profile minimal
fi
if ! cargo +"$toolchain" fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +"$toolchain" fuzz list)
fi
if [ ${#targets[@]} -eq 0 ]; then
    echo "fuzz.sh: no fuzz targets found" >&2
    exit 1
fi

# Build all targets once (release with debug assertions, cargo-fuzz's default).
cargo +"$toolchain" fuzz build

work=$(mktemp -d "${TMPDIR:-/tmp}/lethe-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

failed=()
for t in "${targets[@]}"; do
    corpus="$work/$t"
    mkdir -p "$corpus"
    if [ -d "fuzz/seeds/$t" ]; then
        cp -R "fuzz/seeds/$t/." "$corpus/"
    fi
    echo "fuzz.sh: $t for ${seconds}s" >&2
    if ! cargo +"$toolchain" fuzz run "$t" "$corpus" -- \
        -max_total_time="$seconds" -print_final_stats=1; then
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz.sh: all ${#targets[@]} targets ran ${seconds}s without a failure" >&2
