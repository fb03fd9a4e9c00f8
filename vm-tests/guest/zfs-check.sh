# zfs-blank's disk after the boots: the pool imports without -f (the same
# hostid), and its snapshots and persisted files are reported as values.
modules virtio_pci virtio_blk zfs
wait_for /dev/vda1
must import zpool import -N -d /dev rpool
value snapshots "$(zfs list -H -t snapshot,bookmark -o name -r rpool | sort | tr '\n' ' ')"
value blank-guid "$(zfs get -H -o value guid rpool/local/root@blank)"
mkdir -p /mnt/persist
must persist mount -t zfs -o ro rpool/safe/persist /mnt/persist
for f in /var/lib/nixos/lethe-boot-count /etc/machine-id /home/alice/.config/lethe-boots; do
  value "$f" "$(oneline /mnt/persist$f)"
done
must persist umount /mnt/persist
must export zpool export rpool
pass check
finish
