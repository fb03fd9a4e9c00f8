#!/usr/bin/env bash
# The main job: build lethe (static musl, release), show persist-bind on the
# example config against a throwaway root (in a private mount namespace, so
# nothing touches this machine's mounts), then boot the laptop through
# lethe's own stage 1 in QEMU (Debian's kernel; the vm-tests demo, scenario
# btrfs-tmpfs-usbkey): a LUKS2 disk opened by a key file on a vfat USB
# stick found by UUID, BTRFS subvolumes for /nix, /persist, /var/log and
# /home, a fresh tmpfs root on every boot. Two boots with the stick, one
# without (the passphrase typed on the serial console after the stick's
# timeout), one with two wrong passphrases first; every console, how each
# boot unlocked, the persisted state read back through cryptsetup and the
# timing table.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo: run as root (it mounts a throwaway root and makes disk images with exact owners)" >&2; exit 1; }

if [ -z "${LETHE_DEMO_NS:-}" ]; then
  bash scripts/install-deps.sh
  export PATH="$HOME/.cargo/bin:$PATH"
  cargo build --release --locked --target x86_64-unknown-linux-musl --workspace
  printf '\n\033[1m== 1. persist-bind on a throwaway root\033[0m\n'
  env LETHE_DEMO_NS=1 unshare -m --propagation private bash "$0" "$@"
  printf '\n\033[1m== 2. booting lethe in QEMU (btrfs-tmpfs-usbkey): cargo run -p vm-tests --release -- demo\033[0m\n'
  exec cargo run --locked -p vm-tests --release -- demo
fi

bin="$PWD/target/x86_64-unknown-linux-musl/release"
config="$PWD/persist-bind/examples/config.json"
pb() { "$bin/persist-bind" --root "$root" --config "$config" --utab "$root/run/mount/utab" "$@"; }
step() { printf '\n\033[1m$ persist-bind %s\033[0m\n' "$*"; }

echo "static binaries:"
for b in persist-bind initrd-tool; do printf '  %-13s %7d bytes\n' "$b" "$(stat -c %s "$bin/$b")"; done

# A throwaway machine: a tmpfs root (as after a reset) with a persistent
# volume holding last boot's state.
base=$(mktemp -d /tmp/lethe-demo.XXXXXX)
trap 'umount -R "$base" 2>/dev/null; rmdir "$base" 2>/dev/null || true' EXIT
mount -t tmpfs -o mode=0755 demo-root "$base"
root="$base"
mkdir -p "$root/persist" "$root/run"
mount -t tmpfs -o mode=0755 demo-persist "$root/persist"
mkdir -p "$root/persist/etc/ssh" "$root/persist/var/log"
echo "ssh-ed25519 host key (persisted last boot)" > "$root/persist/etc/ssh/ssh_host_ed25519_key"
echo "boot log from the last boot" > "$root/persist/var/log/messages"

echo; echo "config: $config"
step --dry-run
pb --dry-run
step "(apply)"
pb
step check
pb check
echo; echo "mounts below the root (/proc/self/mountinfo):"
awk -v r="$root" '$5 ~ "^"r"/" {sub(r, "", $5); printf "  %-40s <- %s:%s\n", $5, $(NF-1), $4}' /proc/self/mountinfo
echo; echo "persisted state seen on the root:"
echo "  /etc/ssh/ssh_host_ed25519_key: $(cat "$root/etc/ssh/ssh_host_ed25519_key")"
echo "  /var/log/messages: $(cat "$root/var/log/messages")"
echo "  /etc/machine-id: $(cat "$root/etc/machine-id" | tr -d '\n') (systemd commits the generated id to /persist)"
echo "  /home/alice/.screenrc -> $(readlink "$root/home/alice/.screenrc")"
step "(apply again: idempotent)"
pb
echo "something the next boot would erase" > "$root/etc/adjtime"
step audit
pb audit
