#!/usr/bin/env bash
# Installs what building and testing lethe needs on Debian 12, idempotently:
# Debian packages (the VM tests' QEMU and kernel too), the musl and nightly
# Rust toolchains, cargo-fuzz.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "install-deps: run as root (it installs Debian packages)" >&2; exit 1; }

# Debian packages: the mount/namespace tools the tests drive, and a C
# toolchain for linking.
# cryptsetup is the oracle for the LUKS tests (luksFormat, luksDump
# --dump-volume-key); dmsetup and keyutils check mappings inside the guests.
# The SSH unlock is tested with the real OpenSSH client, and its DHCP client
# against dnsmasq in network namespaces (iproute2). musl-gcc compiles the C
# and assembly parts of ring (russh's AES-GCM) for the static build.
# nix-bin's nix-instantiate parses every .nix file and evaluates the NixOS
# modules (scripts/nix-check.sh); no Nix store build runs here.
packages=(util-linux mount coreutils findutils gcc libc6-dev binutils git xz-utils ca-certificates curl fdisk gdisk
  cryptsetup-bin dmsetup keyutils systemd tar openssh-client dnsmasq-base iproute2 musl-tools nix-bin python3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The VM tests (vm-tests/): QEMU, Debian's kernel and its modules to boot,
# and the tools that make the disk images (without recommends: no GUI, no
# firmware bundles).
# The boot benchmark's peers build their images for the same kernel: Debian's
# initramfs-tools with cryptsetup-initramfs, and dracut (dracut-core: the
# generator without the package that would replace initramfs-tools).
vm_packages=(qemu-system-x86 linux-image-amd64 e2fsprogs btrfs-progs dosfstools cpio
  initramfs-tools cryptsetup cryptsetup-initramfs dracut-core)
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

# ZFS for the VM tests (issue 4): the userland (zpool/zfs and libnvpair, which
# the nvlist tests compare against) from Debian's contrib component, and the
# kernel modules for the guest kernel built by zfs-dkms. The build takes
# minutes, so the built modules are cached in $LETHE_CACHE (default
# /var/cache/lethe), which survives between runs on the same machine, and
# installed from there into the guest kernel's module tree.
kver=$(basename "$(readlink -f /boot/vmlinuz)" | sed 's/^vmlinuz-//')
[ -n "$kver" ] && [ -d "/lib/modules/$kver" ] || kver=$(ls /lib/modules | grep -- '-amd64$' | sort -V | tail -n1)
# contrib is added beside the machine's own Debian sources (the same URIs
# and suites, deb822 or one-line format); no host is named here.
if [ ! -e /etc/apt/sources.list.d/lethe-contrib.list ] && ! grep -rqsE '^[^#]*\bcontrib\b' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "install-deps: enabling Debian's contrib component (zfs-dkms, zfsutils-linux) on the configured Debian sources"
  python3 - > /etc/apt/sources.list.d/lethe-contrib.list <<'PY'
import glob, re
seen = []
def add(uri, suite):
    if "debian" in uri and "security" not in uri and (uri, suite) not in seen:
        seen.append((uri, suite))
for f in glob.glob("/etc/apt/sources.list.d/*.sources"):
    for stanza in open(f).read().split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
        if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes") != "no":
            for uri in fields.get("URIs", "").split():
                for suite in fields.get("Suites", "").split():
                    add(uri, suite)
for f in ["/etc/apt/sources.list"] + glob.glob("/etc/apt/sources.list.d/*.list"):
    try:
        lines = open(f).read().splitlines()
    except OSError:
        continue
    for line in lines:
        w = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
        if len(w) >= 3 and w[0] == "deb":
            add(w[1], w[2])
for uri, suite in seen:
    print(f"deb {uri} {suite} contrib")
PY
  [ -s /etc/apt/sources.list.d/lethe-contrib.list ] || { rm -f /etc/apt/sources.list.d/lethe-contrib.list; echo "install-deps: no Debian source configured to add contrib to" >&2; exit 1; }
  apt-get update -qq
fi
zfs_packages=(zfsutils-linux libnvpair3linux busybox-static)
zfs_missing=()
for p in "${zfs_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || zfs_missing+=("$p")
done
if [ ${#zfs_missing[@]} -gt 0 ]; then
  echo "install-deps: apt-get install --no-install-recommends ${zfs_missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${zfs_missing[@]}" >/dev/null
fi
zfs_version=$(dpkg-query -W -f='${Version}' zfsutils-linux)
zfs_cache="${LETHE_CACHE:-/var/cache/lethe}/zfs-modules/$kver/$zfs_version"
if [ ! -s "$zfs_cache/zfs.ko" ]; then
  echo "install-deps: building the ZFS modules for $kver with zfs-dkms (once; cached in $zfs_cache)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "linux-headers-$kver" "zfs-dkms=$zfs_version" >/dev/null
  dkms_dir=/var/lib/dkms/zfs/${zfs_version%%-*}/$kver/x86_64/module
  [ -s "$dkms_dir/zfs.ko" ] || dkms build "zfs/${zfs_version%%-*}" -k "$kver" >/dev/null
  mkdir -p "$zfs_cache"
  cp "$dkms_dir"/*.ko "$zfs_cache/"
fi
if ! cmp -s "$zfs_cache/zfs.ko" "/lib/modules/$kver/updates/dkms/zfs.ko"; then
  echo "install-deps: installing the cached ZFS modules into /lib/modules/$kver"
  mkdir -p "/lib/modules/$kver/updates/dkms"
  cp "$zfs_cache"/*.ko "/lib/modules/$kver/updates/dkms/"
  depmod "$kver"
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
