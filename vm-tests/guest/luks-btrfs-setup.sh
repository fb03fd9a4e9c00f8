# btrfs-tmpfs-usbkey's disks: the key file goes onto the vfat stick (vdb),
# then the reference cryptsetup opens the LUKS2 disk vda with the key
# file read back from the stick (offset 512, 4096 bytes); inside it, a
# BTRFS with the subvolumes @system/nix and @system/state (filled from the
# ext4 images on vdc and vdd), @system/logs and @user/home (alice's home);
# closed at the end.
modules virtio_pci virtio_blk ext4 dm_mod dm_crypt xts aesni_intel btrfs vfat nls_cp437 nls_ascii nls_utf8
wait_for /dev/vda
wait_for /dev/vdd
export DM_DISABLE_UDEV=1
mkdir -p /run/cryptsetup /mnt/stick /mnt/top /src/nix /src/persist
must stick mount -t vfat /dev/vdb /mnt/stick
must stick mkdir -p /mnt/stick/keys
must stick cp /lethe-guest/cryptroot.key /mnt/stick/keys/cryptroot.key
must stick umount /mnt/stick
must stick mount -t vfat -o ro /dev/vdb /mnt/stick
same stick-key "$(md5sum </mnt/stick/keys/cryptroot.key)" "$(md5sum </lethe-guest/cryptroot.key)"
must opened cryptsetup open --type luks2 --key-file /mnt/stick/keys/cryptroot.key --keyfile-offset 512 --keyfile-size 4096 /dev/vda cryptroot
must stick umount /mnt/stick
wait_for /dev/mapper/cryptroot
must mkfs mkfs.btrfs -q -L lethe-laptop /dev/mapper/cryptroot
must mkfs mount -t btrfs /dev/mapper/cryptroot /mnt/top
mkdir -p /mnt/top/@system /mnt/top/@user
for s in @system/nix @system/state @system/logs @user/home; do
  must subvolumes btrfs subvolume create /mnt/top/$s
done
# copy NAME DEVICE SUBVOLUME: the ext4 image's tree, owners and modes kept.
copy() {
  must "$1" mount -t ext4 -o ro "$2" /src/$1
  must "$1" cp -a /src/$1/. /mnt/top/$3/
  must "$1" rmdir /mnt/top/$3/lost+found
  same "$1-copied" "$(tree /mnt/top/$3)" "$(tree /src/$1)"
  must "$1" umount /src/$1
}
copy nix /dev/vdc @system/nix
copy persist /dev/vdd @system/state
mkdir -p /mnt/top/@user/home/alice
chown 1000:100 /mnt/top/@user/home/alice
chmod 700 /mnt/top/@user/home/alice
must close umount /mnt/top
must close cryptsetup close cryptroot
pass setup
finish
