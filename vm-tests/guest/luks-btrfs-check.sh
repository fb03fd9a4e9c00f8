# btrfs-tmpfs-usbkey's disk after the boots, through the reference:
# cryptsetup opens vda with the passphrase the harness types (no stick),
# and the subvolumes and persisted files are reported as values.
modules virtio_pci virtio_blk dm_mod dm_crypt xts aesni_intel btrfs
wait_for /dev/vda
export DM_DISABLE_UDEV=1
mkdir -p /run/cryptsetup /mnt/top
echo "+ cryptsetup open --type luks2 /dev/vda cryptroot"
if ! cryptsetup open --type luks2 /dev/vda cryptroot; then
  fail check "the reference cryptsetup did not open /dev/vda with the typed passphrase"
  finish
fi
wait_for /dev/mapper/cryptroot
must mount mount -t btrfs -o ro /dev/mapper/cryptroot /mnt/top
value subvolumes "$(btrfs subvolume list /mnt/top | sed 's/.* path //' | sort | tr '\n' ' ')"
for f in /var/lib/nixos/lethe-boot-count /etc/machine-id; do
  value "$f" "$(oneline /mnt/top/@system/state$f)"
done
value /home/alice/lethe-boots "$(oneline /mnt/top/@user/home/alice/lethe-boots)"
value home-alice "$(stat -c '%u:%g %a' /mnt/top/@user/home/alice)"
value state "$(ls -A /mnt/top/@system/state | tr '\n' ' ')"
must umount umount /mnt/top
must close cryptsetup close cryptroot
pass check
finish
