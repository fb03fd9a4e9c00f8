# zfs-luks-blank's disk: the reference cryptsetup opens the LUKS2
# partition vda1 with the passphrase the harness types on the console;
# inside it, pool rpool with local/root (/etc/lethe-blank, then @blank),
# local/nix and safe/persist filled from the ext4 images on vdb (nix) and
# vdc (persist), and an empty safe/home; exported and closed at the end.
modules virtio_pci virtio_blk ext4 dm_mod dm_crypt xts aesni_intel zfs
wait_for /dev/vda1
wait_for /dev/vdc
# No udev here: libdevmapper makes the /dev/mapper nodes itself.
export DM_DISABLE_UDEV=1
mkdir -p /run/cryptsetup
# cryptsetup asks on the console (its stdin), not through `run`, whose
# capture would hide the prompt.
echo "+ cryptsetup open --type luks2 /dev/vda1 cryptroot"
if cryptsetup open --type luks2 /dev/vda1 cryptroot; then
  pass opened
else
  fail opened "the reference cryptsetup did not open /dev/vda1 with the typed passphrase"
  finish
fi
wait_for /dev/mapper/cryptroot
must pool zpool create -f -o ashift=12 -O mountpoint=none -O atime=off -O acltype=posixacl -O xattr=sa rpool /dev/mapper/cryptroot
for ds in local/root local/nix safe/persist safe/home; do
  must datasets zfs create -p -o mountpoint=legacy rpool/$ds
done
mkdir -p /mnt/root /mnt/nix /mnt/persist /src/nix /src/persist
must root mount -t zfs rpool/local/root /mnt/root
mkdir -p /mnt/root/etc
echo blank >/mnt/root/etc/lethe-blank
must root umount /mnt/root
must blank zfs snapshot rpool/local/root@blank
value blank-guid "$(zfs get -H -o value guid rpool/local/root@blank)"
# copy NAME DEVICE DATASET: the ext4 image's tree, owners and modes kept.
copy() {
  must "$1" mount -t ext4 -o ro "$2" /src/$1
  must "$1" mount -t zfs "$3" /mnt/$1
  must "$1" cp -a /src/$1/. /mnt/$1/
  must "$1" rmdir /mnt/$1/lost+found
  same "$1-copied" "$(tree /mnt/$1)" "$(tree /src/$1)"
  must "$1" umount /mnt/$1 /src/$1
}
copy nix /dev/vdb rpool/local/nix
copy persist /dev/vdc rpool/safe/persist
must export zpool export rpool
must close cryptsetup close cryptroot
pass setup
finish
