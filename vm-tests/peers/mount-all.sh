# mount-all.sh ROOT: the needed-for-boot file systems of /lethe-bench/mounts
# (DEVICE FSTYPE OPTIONS TARGET per line, in order) beneath ROOT, each
# device waited for up to 30 s as stage 1 waits for the root's.
root=$1
set -f
while read -r device fstype options target; do
  [ -n "$device" ] || continue
  n=0
  while [ ! -b "$device" ] && [ "$n" -lt 300 ]; do
    sleep 0.1
    n=$((n + 1))
  done
  mkdir -p "$root$target"
  mount -t "$fstype" -o "$options" "$device" "$root$target" ||
    { echo "lethe-bench: cannot mount $device on $target" >&2; exit 1; }
done </lethe-bench/mounts
