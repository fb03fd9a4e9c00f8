# zfs-bench-rollback: the time of `initrd-tool rollback zfs` for a root of
# $FILES files against `rm -rf` of the same tree, on the guest's monotonic
# clock (lethe-guest-bench, nanoseconds). The harness prepends FILES= and
# RUNS=. `rm` is GNU coreutils', as in the BTRFS benchmark. Each timed step
# starts on a pool exported and imported again, as at boot: nothing of it
# in the ARC, and the root not mounted for the rollback.
ROOT=rpool/local/root
B=/bin/lethe-guest-bench

# step TEXT: a progress line with the guest's uptime.
step() {
  echo "[$(cut -d' ' -f1 /proc/uptime) s] $*"
}
# reimport: export and import the pool (not mounted), as a boot finds it.
reimport() {
  must reimport zpool export rpool
  must reimport zpool import -N -d /dev rpool
}
# populate: the tree in the root's data/.
populate() {
  must populate mount -t zfs $ROOT /mnt/root
  must populate $B tree /mnt/root/data "$FILES"
  must populate umount /mnt/root
}
# rollback NAME: times lethe's rollback of the unmounted root; its
# nanoseconds in $t. A rollback that fails or keeps the old root ends the run.
rollback() {
  if ! t=$($B time -- initrd-tool rollback zfs --dataset $ROOT --snapshot blank 2>/tmp/out); then
    fail "$1" "initrd-tool rollback zfs failed: $(oneline /tmp/out)"
    finish
  fi
  if grep -q "keeping the old root" /tmp/out; then
    fail "$1" "the rollback kept the old root: $(oneline /tmp/out)"
    finish
  fi
}
# is_blank NAME: the root holds @blank's file and no data/.
is_blank() {
  must "$1" mount -t zfs -o ro $ROOT /mnt/root
  if [ -e /mnt/root/data ] || [ "$(cat /mnt/root/etc/lethe-blank)" != blank ]; then
    fail "$1" "the root is not @blank's afterwards: $(ls /mnt/root | tr '\n' ' ')"
    finish
  fi
  must "$1" umount /mnt/root
}
# freeing: what the pool has yet to free in the background (bytes).
freeing() {
  zpool get -Hp -o value freeing rpool
}
# freed: waits until the pool has freed what a rollback left to free.
freed() {
  while f=$(freeing) && [ "$f" != 0 ]; do
    step "freeing: $f bytes left"
    sleep 0.05
  done
}

modules virtio_pci virtio_blk zfs
wait_for /dev/vda1
value kernel "$(uname -r)"
value zfs-version "$(cat /sys/module/zfs/version)"
value cpus "$(grep -c ^processor /proc/cpuinfo)"
value mem-kib "$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
value clocksource "$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
value clock-resolution-ns "$($B resolution)"
step "creating the pool"
must pool zpool create -f -o ashift=12 -O mountpoint=none -O atime=off -O compression=off rpool /dev/vda1
must datasets zfs create -p -o mountpoint=legacy $ROOT
mkdir -p /mnt/root
must blank mount -t zfs $ROOT /mnt/root
mkdir -p /mnt/root/etc
echo blank >/mnt/root/etc/lethe-blank
must blank umount /mnt/root
must blank zfs snapshot $ROOT@blank
pass setup

i=1
while [ $i -le "$RUNS" ]; do
  step "run $i of $RUNS: writing $FILES files"
  populate
  [ $i != 1 ] || value written-bytes "$(zfs get -Hp -o value written $ROOT)"
  reimport
  step "run $i of $RUNS: rollback"
  rollback rollback-resets-the-root
  value rollback.$i "$t"
  # What ZFS left to free after the rollback returned (it frees in the
  # txg the rollback waits for, then in the background).
  value freeing.$i "$(freeing)"
  freed
  [ $i != 1 ] || sed 's/^/  | /' /tmp/out
  is_blank rollback-resets-the-root

  reimport
  step "run $i of $RUNS: rollback with no change since @blank"
  rollback rollback-unchanged
  value unchanged.$i "$t"
  is_blank rollback-unchanged

  step "run $i of $RUNS: writing $FILES files"
  populate
  reimport
  must rm mount -t zfs $ROOT /mnt/root
  step "run $i of $RUNS: rm -rf"
  if ! t=$($B time --sync -- /usr/bin/rm -rf /mnt/root/data 2>/tmp/out); then
    fail rm-empties-the-tree "rm -rf failed: $(oneline /tmp/out)"
    finish
  fi
  value rm.$i "$t"
  if [ -e /mnt/root/data ]; then
    fail rm-empties-the-tree "/mnt/root/data is still there"
    finish
  fi
  must rm umount /mnt/root
  # Back to @blank for the next run (not timed).
  rollback rollback-resets-the-root
  freed
  i=$((i + 1))
done
step "done"
pass rollback-resets-the-root
pass rollback-unchanged
pass rm-empties-the-tree
must export zpool export rpool
finish
