# btrfs-rollback.sh DEVICE SUBVOLUME BLANK OLD_ROOTS
#
# The root reset of impermanence's README ("BTRFS subvolumes"), as NixOS
# users put it into stage 1: mount the top level, move the root subvolume
# into the old roots under its last modification time, delete old roots
# older than 30 days with their nested subvolumes, make the root again and
# unmount. The README makes an empty subvolume; here it is snapshotted
# from the read-only blank one, as lethe's btrfs rollback does.
set -u
device=$1 subvolume=$2 blank=$3 old_roots=$4
mkdir -p /btrfs_tmp
mount -t btrfs "$device" /btrfs_tmp
if [ -e "/btrfs_tmp/$subvolume" ]; then
  mkdir -p "/btrfs_tmp/$old_roots"
  timestamp=$(date -d "@$(stat -c %Y "/btrfs_tmp/$subvolume")" "+%Y-%m-%-d_%H:%M:%S")
  mv "/btrfs_tmp/$subvolume" "/btrfs_tmp/$old_roots/$timestamp"
fi

delete_subvolume_recursively() {
  IFS='
'
  for i in $(btrfs subvolume list -o "$1" | cut -f 9- -d ' '); do
    delete_subvolume_recursively "/btrfs_tmp/$i"
  done
  btrfs subvolume delete "$1"
}

for i in $(find "/btrfs_tmp/$old_roots/" -maxdepth 1 -mtime +30); do
  delete_subvolume_recursively "$i"
done

btrfs subvolume snapshot "/btrfs_tmp/$blank" "/btrfs_tmp/$subvolume"
umount /btrfs_tmp
