#!/usr/bin/env bash
# The whole test suite, as root: formatting and lints, the Nix modules'
# evaluation (scripts/nix-check.sh), unit tests, the root
# integration tests (real mounts in private namespaces), a static musl build,
# a short run of every fuzz target, the VM scenarios (QEMU booting lethe's
# stage 1 on Debian's kernel), and the benchmarks (figures printed).
# With CI=true a missing capability fails instead of being skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "test: run as root (the tests mount file systems in private namespaces)" >&2; exit 1; }
bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
export CI="${CI:-false}"
log=$(mktemp)
vmlog=$(mktemp)
trap 'rm -f "$log" "$vmlog"' EXIT

section() { printf '\n==> %s\n' "$*"; }

section "format and lints"
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings

section "Nix: every .nix file parses; the modules evaluate to the committed fixtures"
bash scripts/nix-check.sh

section "tests (unit and root integration)"
cargo test --locked --workspace 2>&1 | tee "$log"

section "static build (x86_64-unknown-linux-musl, release)"
cargo build --locked --release --target x86_64-unknown-linux-musl --workspace
for b in persist-bind rollback initrd-tool lethe-stage2 lethe-dm-check; do
  f=target/x86_64-unknown-linux-musl/release/$b
  # A static binary asks for no program interpreter (no ld.so, no libc.so).
  if readelf -l "$f" | grep -q "program interpreter"; then echo "$b is dynamically linked" >&2; exit 1; fi
  printf '  %-13s %8d bytes, static\n' "$b" "$(stat -c %s "$f")"
done

section "fuzz (${FUZZ_SECONDS:-30} s per target)"
bash scripts/fuzz.sh

section "VM tests (QEMU, Debian's kernel, real disk images)"
cargo run --locked -p vm-tests --release -- run all 2>&1 | tee "$vmlog"

section "benchmarks"
cargo bench --locked -p persist-bind --bench apply -- --quick
cargo bench --locked -p rollback --bench rollback -- --quick
# Keyslot unlock against cryptsetup on the same headers (argon2id 1 GiB, pbkdf2-sha256 1M).
LETHE_INITRD_TOOL="$PWD/target/x86_64-unknown-linux-musl/release/initrd-tool" \
  cargo bench --locked -p luks --bench unlock
cargo run --locked -p vm-tests --release -- bench-rollback --quick
# Stage 1 against Debian's initramfs-tools and dracut on the same kernel, disks and work
# (one measured boot per machine and initramfs, no warm-up boot: the peers' shell per
# persisted entry takes minutes under emulation; the README's figures are from five).
cargo run --locked -p vm-tests --release -- bench --runs 1 --no-warm-up
# What the SSH unlock server (russh, tokio) adds to the static binary.
cargo build --locked --release --target x86_64-unknown-linux-musl -p initrd-tool --no-default-features \
  --target-dir target/no-default-features
printf '  initrd-tool %9d bytes with the ssh feature (default), %d bytes without\n' \
  "$(stat -c %s target/x86_64-unknown-linux-musl/release/initrd-tool)" \
  "$(stat -c %s target/no-default-features/x86_64-unknown-linux-musl/release/initrd-tool)"

passed=$(grep -Eo '^test result: [a-z]+\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
failed=$(grep '^test result' "$log" | grep -Eo '[0-9]+ failed' | awk '{s += $1} END {print s + 0}')
echo
echo "tests: $passed passed, $failed failed"
grep -E '^vm-tests: [0-9]+ passed' "$vmlog"
