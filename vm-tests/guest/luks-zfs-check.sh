# zfs-luks-blank's disk after the boots, through the reference: cryptsetup
# opens vda1 with the typed passphrase, the pool imports without -f (the
# same hostid), and its snapshots and persisted files (safe/persist with
# safe/home at its home/) are reported as values.
modules virtio_pci virtio_blk dm_mod dm_crypt xts aesni_intel zfs
wait_for /dev/vda1
export DM_DISABLE_UDEV=1
mkdir -p /run/cryptsetup
echo "+ cryptsetup open --type luks2 /dev/vda1 cryptroot"
if ! cryptsetup open --type luks2 /dev/vda1 cryptroot; then
  fail check "the reference cryptsetup did not open /dev/vda1 with the typed passphrase"
  finish
fi
wait_for /dev/mapper/cryptroot
must import zpool import -N -d /dev/mapper rpool
value snapshots "$(zfs list -H -t snapshot,bookmark -o name -r rpool | sort | tr '\n' ' ')"
value blank-guid "$(zfs get -H -o value guid rpool/local/root@blank)"
mkdir -p /mnt/persist
must persist mount -t zfs -o ro rpool/safe/persist /mnt/persist
must persist mount -t zfs -o ro rpool/safe/home /mnt/persist/home
for f in /var/lib/nixos/lethe-boot-count /etc/machine-id /home/alice/Documents/lethe-boots; do
  value "$f" "$(oneline /mnt/persist$f)"
done
value home-alice "$(stat -c '%u:%g %a' /mnt/persist/home/alice /mnt/persist/home/alice/Documents /mnt/persist/home/alice/.ssh | tr '\n' ' ')"
must persist umount /mnt/persist/home /mnt/persist
must export zpool export rpool
must close cryptsetup close cryptroot
pass check
finish
