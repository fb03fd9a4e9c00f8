#!/bin/busybox sh
# The start of every busybox guest script (run as PID 1 through rdinit=):
# busybox's applets, /proc, /sys, /dev, and the helpers that print the
# LETHE-GUEST lines the harness reads (src/guest.rs).
/bin/busybox mkdir -p /proc /sys /dev /tmp /mnt /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
ln -sf /proc/self/mounts /etc/mtab
# Kernel messages would break the result lines apart.
echo 1 >/proc/sys/kernel/printk

pass() { echo "LETHE-GUEST PASS $1"; }
fail() { echo "LETHE-GUEST FAIL $1: $2"; }
# value NAME TEXT: a value the harness compares (TEXT on one line)
value() { echo "LETHE-GUEST VALUE $1 $2"; }
finish() {
  sync
  echo "LETHE-GUEST DONE"
  poweroff -f
  sleep 600
}
# same NAME GOT EXPECTED
same() {
  if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "got [$2], expected [$3]"; fi
}
# run CMD...: runs CMD with its output indented on the console; sets $out and $rc.
run() {
  out=$("$@" 2>&1)
  rc=$?
  echo "+ $* (exit $rc)"
  [ -z "$out" ] || echo "$out" | sed 's/^/  | /'
  return $rc
}
# must NAME CMD...: a step the rest depends on; its failure ends the script.
must() {
  name=$1
  shift
  if ! run "$@"; then
    fail "$name" "\`$*\` failed (exit $rc)"
    dmesg | tail -n 30 | sed 's/^/  dmesg| /'
    finish
  fi
}
# tree DIR: every path beneath DIR (but lost+found) with its owner, mode
# and type, and every file's md5, on one line.
tree() {
  (cd "$1" && {
    find . ! -name lost+found | sort | xargs stat -c '%n %u:%g %a %F'
    find . -type f | sort | xargs -r md5sum
  }) | tr '\n' ' '
}
# oneline FILE: a file's content with its newlines as |.
oneline() {
  tr '\n' '|' <"$1"
}
# wait_for PATH: a device node, for up to 10 s.
wait_for() {
  i=0
  while [ ! -e "$1" ]; do
    i=$((i + 1))
    if [ $i -gt 100 ]; then
      fail devices "$1 did not appear within 10 s"
      finish
    fi
    sleep 0.1
  done
}
# modules NAME...: loads kernel modules (with their dependencies).
modules() {
  for m in "$@"; do must modules modprobe "$m"; done
}
