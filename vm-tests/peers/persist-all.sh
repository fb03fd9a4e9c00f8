# persist-all.sh ROOT: every entry of /lethe-bench/persist (one
# persist-entry.sh argument list per line), each in a shell process of its
# own as impermanence does; a failed entry is reported and the rest go on.
root=$1
set -f
failed=0
while read -r storage kind path user group mode home; do
  [ -n "$storage" ] || continue
  sh /lethe-bench/persist-entry.sh "$root" "$storage" "$kind" "$path" "$user" "$group" "$mode" $home ||
    { echo "lethe-bench: persisting $path failed" >&2; failed=$((failed + 1)); }
done </lethe-bench/persist
[ "$failed" = 0 ]
