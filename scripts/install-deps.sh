#!/usr/bin/env bash
# Installs what building and testing lethe needs on Debian 12, idempotently:
# Debian packages (the VM tests' QEMU and kernel too), the musl and nightly
# Rust toolchains, cargo-fuzz.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "install-deps: run as root (it installs Debian packages)" >&2; exit 1; }

# Debian packages: the mount/namespace tools the tests drive, and a C
# toolchain for linking.
packages=(util-linux mount coreutils findutils gcc libc6-dev binutils git xz-utils ca-certificates curl)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The VM tests (vm-tests/): QEMU, Debian's kernel and its modules to boot,
# and the tools that make the disk images (without recommends: no GUI, no
# firmware bundles).
vm_packages=(qemu-system-x86 linux-image-amd64 e2fsprogs btrfs-progs dosfstools cpio)
vm_missing=()
for p in "${vm_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || vm_missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] || [ ${#vm_missing[@]} -gt 0 ]; then
  apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ${#vm_missing[@]} -gt 0 ]; then
  echo "install-deps: apt-get install --no-install-recommends ${vm_missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${vm_missing[@]}" >/dev/null
fi

# Rust: rustup's stable toolchain with the static musl target, and nightly
# for cargo-fuzz.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v rustup >/dev/null 2>&1; then
  echo "install-deps: installing rustup"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  export PATH="$HOME/.cargo/bin:$PATH"
fi
rustup target list --installed | grep -qx x86_64-unknown-linux-musl || rustup target add x86_64-unknown-linux-musl
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/cargo-fuzz" ] || cargo install cargo-fuzz --locked
exit 0
