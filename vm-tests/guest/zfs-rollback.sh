# zfs-rollback: lethe's native ZFS rollback (`initrd-tool rollback zfs`)
# on a real pool: what it destroys, what it keeps, when it refuses.
ROOT=rpool/local/root

modules virtio_pci virtio_blk zfs
wait_for /dev/vda1
must pool zpool create -f -o ashift=12 -O mountpoint=none -O atime=off rpool /dev/vda1
for ds in local/root local/nix safe/persist; do
  must datasets zfs create -p -o mountpoint=legacy rpool/$ds
done
mkdir -p /mnt/root /mnt/nix /mnt/persist
must mounts mount -t zfs $ROOT /mnt/root
must mounts mount -t zfs rpool/local/nix /mnt/nix
must mounts mount -t zfs rpool/safe/persist /mnt/persist

# Older than blank: a snapshot and a bookmark that must survive.
echo older >/mnt/root/older-file
must snapshots zfs snapshot $ROOT@older
must snapshots zfs bookmark $ROOT@older $ROOT#older
mkdir -p /mnt/root/etc
echo blank >/mnt/root/etc/blank-file
echo nix >/mnt/nix/nix-file
echo persist >/mnt/persist/persist-file
sync
at_blank=$(tree /mnt/root)
must snapshots zfs snapshot $ROOT@blank

# Newer than blank: changes, snapshots and bookmarks (one whose snapshot
# is gone) that the rollback must destroy.
echo changed >/mnt/root/etc/blank-file
echo 1 >/mnt/root/after-blank-1
mkdir -p /mnt/root/var/log
echo log >/mnt/root/var/log/messages
must snapshots zfs snapshot $ROOT@s1
must snapshots zfs bookmark $ROOT@s1 $ROOT#s1
echo 2 >/mnt/root/after-blank-2
must snapshots zfs snapshot $ROOT@s2
must snapshots zfs snapshot $ROOT@s3
must snapshots zfs bookmark $ROOT@s3 $ROOT#s3-only
must snapshots zfs destroy $ROOT@s3
echo 3 >/mnt/root/after-blank-3
# The siblings change and get snapshots newer than blank too.
echo nix 2 >/mnt/nix/nix-file-2
must snapshots zfs snapshot rpool/local/nix@n1
must snapshots zfs snapshot rpool/safe/persist@p1
echo persist 2 >/mnt/persist/persist-file-2
sync
# As in stage 1, the root is not mounted during the rollback.
must mounts umount /mnt/root
pass setup

# listing: every dataset, snapshot and bookmark of the pool with its guid.
listing() {
  zfs list -H -t filesystem,volume,snapshot,bookmark -o name,guid -r rpool | sort | tr '\n' ' '
}
# names TYPE DATASET: the snapshots or bookmarks of DATASET.
names() {
  zfs list -H -t "$1" -o name -r "$2" | sort | tr '\n' ' '
}
siblings() {
  zfs list -H -t filesystem,snapshot,bookmark -o name,guid -r rpool/local/nix rpool/safe/persist |
    sort | tr '\n' ' '
  tree /mnt/nix
  tree /mnt/persist
}
root_tree() {
  mount -t zfs -o ro $ROOT /mnt/root && tree /mnt/root
  umount /mnt/root
}
# rollback NAME ARGS...: lethe's rollback, which exits 0 in every case here.
rollback() {
  name=$1
  shift
  run initrd-tool rollback zfs "$@"
  same "$name-exit" "$rc" 0
}
# warned NAME: the output says the old root is kept.
warned() {
  case "$out" in
  *"keeping the old root"*) pass "$1" ;;
  *) fail "$1" "no \"keeping the old root\" in the output" ;;
  esac
}
# unchanged NAME: the pool and the root exactly as before.
unchanged() {
  same "$1-pool" "$(listing)" "$before"
  same "$1-root" "$(root_tree)" "$before_root"
}
before=$(listing)
before_root=$(root_tree)
before_siblings=$(siblings)

# --dry-run names what it would destroy and changes nothing.
rollback dry-run --dataset $ROOT --snapshot blank --dry-run
case "$out" in
*"$ROOT@s2"*) pass dry-run-plan ;;
*) fail dry-run-plan "the output does not name $ROOT@s2" ;;
esac
unchanged dry-run

# A snapshot that does not exist: the old root is kept.
rollback missing-snapshot --dataset $ROOT --snapshot nosuch
warned missing-snapshot-warns
unchanged missing-snapshot

# A dataset that does not exist: the old root is kept.
rollback missing-dataset --dataset rpool/local/nosuch --snapshot blank
warned missing-dataset-warns
unchanged missing-dataset

# A clone of a snapshot newer than blank: refused, everything kept.
must clone zfs clone $ROOT@s1 rpool/local/clone
before_clone=$(listing)
rollback clone --dataset $ROOT --snapshot blank
warned clone-warns
case "$out" in
*rpool/local/clone*) pass clone-named ;;
*) fail clone-named "the output does not name the clone rpool/local/clone" ;;
esac
same clone-pool "$(listing)" "$before_clone"
same clone-root "$(root_tree)" "$before_root"
must clone zfs destroy rpool/local/clone

# The rollback itself.
blank_guid=$(zfs get -H -o value guid $ROOT@blank)
rollback rollback --dataset $ROOT --snapshot blank
case "$out" in
*"keeping the old root"*) fail rollback-no-warning "it kept the old root" ;;
*) pass rollback-no-warning ;;
esac
same newer-snapshots-destroyed "$(names snapshot $ROOT)" "$ROOT@blank $ROOT@older "
same newer-bookmarks-destroyed "$(names bookmark $ROOT)" "$ROOT#older "
same blank-kept "$(zfs get -H -o value guid $ROOT@blank)" "$blank_guid"
same root-is-blank "$(root_tree)" "$at_blank"
if mount -t zfs -o ro $ROOT /mnt/root; then
  left=""
  for f in after-blank-1 after-blank-2 after-blank-3 var/log/messages; do
    [ ! -e /mnt/root/$f ] || left="$left $f"
  done
  same files-after-blank-gone "$left" ""
  same blank-file-restored "$(cat /mnt/root/etc/blank-file)" blank
  umount /mnt/root
else
  fail files-after-blank-gone "cannot mount $ROOT after the rollback"
fi
same siblings-untouched "$(siblings)" "$before_siblings"

# Nothing newer is left: a second run succeeds and changes nothing.
after=$(listing)
rollback again --dataset $ROOT --snapshot blank
same again-pool "$(listing)" "$after"
finish
