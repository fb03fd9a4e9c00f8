# dm-crypt: lethe's native activation (initrd-tool's crypt module, driven by
# lethe-dm-check) against cryptsetup's on the same volumes. The host made the
# volumes (vda LUKS2 aes-xts-plain64 with 512-byte sectors, vdb LUKS2 with
# 4096-byte sectors, vdc LUKS1 aes-cbc-essiv:sha256, vdd the data of a LUKS2
# volume whose header is /lethe/vdet.hdr), their volume keys (/lethe/NAME.vk,
# from luksDump --dump-volume-key), the key file /lethe/key, and set the
# variables LETHE_MODULES, REFERENCE_MODULES and V2_UUID, V4K_UUID, V1_UUID,
# VDET_UUID.
L=/lethe
# libdevmapper (dmsetup, cryptsetup) must not wait for a udev that is not there.
export DM_DISABLE_UDEV=1
mkdir -p /run/cryptsetup /mnt

# No module helper: what lethe's activation needs must be in LETHE_MODULES.
echo /nonexistent-modprobe >/proc/sys/kernel/modprobe
# ext4 checksums its metadata with crc32c.
modules virtio_pci virtio_blk crc32c_generic ext4 $LETHE_MODULES
for d in vda vdb vdc vdd; do wait_for /dev/$d; done

hex() { od -An -v -tx1 "$1" | tr -d ' \n'; }
# The table of mapping $1 with its key, and with the key replaced by KEY.
table() { dmsetup table --showkeys "$1"; }
key_word() { table "$1" | awk '{print $5}'; }
normalized() { table "$1" | awk '{$5 = "KEY"; print}'; }
# The device number of mapping $1 as MAJOR:MINOR.
devnum() { dmsetup info -c --noheadings -o major,minor --separator : "$1" | tr -d ' '; }
dm_uuid() { dmsetup info -c --noheadings -o uuid "$1" | tr -d ' '; }
nodash() { echo "$1" | tr -d -; }
# open NAME DEVICE ARGS...: lethe's activation; $out is its JSON line.
open() {
  run lethe-dm-check open "$@"
}
# json_has NAME TEXT: the last JSON line holds TEXT.
json_has() {
  case "$out" in
  *"$2"*) pass "$1" ;;
  *) fail "$1" "no $2 in: $out" ;;
  esac
}
# content NAME MAPPING TEXT: the mapping's ext4 holds /known with TEXT.
content() {
  if run mount -t ext4 -o ro "/dev/mapper/$2" /mnt; then
    same "$1" "$(cat /mnt/known 2>&1)" "$3"
    umount /mnt
  else
    fail "$1" "cannot mount /dev/mapper/$2: $out"
  fi
}
# gone NAME MAPPING MAJ:MIN: the mapping, its node, links and udev entry are gone.
gone() {
  local why=""
  dmsetup ls | grep -q "^$2[[:space:]]" && why="$why dmsetup ls still lists it;"
  { [ -e "/dev/mapper/$2" ] || [ -L "/dev/mapper/$2" ]; } && why="$why /dev/mapper/$2 is still there;"
  [ -L "/dev/disk/by-id/dm-name-$2" ] && why="$why /dev/disk/by-id/dm-name-$2 is still there;"
  [ -e "/run/udev/data/b$3" ] && why="$why /run/udev/data/b$3 is still there;"
  [ -e "/run/udev/tags/systemd/b$3" ] && why="$why its systemd tag is still there;"
  if [ -z "$why" ]; then pass "$1"; else fail "$1" "$why"; fi
}

# 1. With lethe's modules only, every volume activates and closes.
for v in v2:vda v4k:vdb v1:vdc vdet:vdd; do
  n=${v%%:*}
  d=${v#*:}
  hdr=""
  [ $n = vdet ] && hdr="--header $L/vdet.hdr"
  if open lethe-$n /dev/$d --volume-key-file $L/$n.vk $hdr && table lethe-$n | grep -q " crypt "; then
    run lethe-dm-check close lethe-$n
    pass "modules-$n"
  else
    fail "modules-$n" "activation with only [$LETHE_MODULES] loaded failed: $out"
    dmesg | tail -n 20 | sed 's/^/  dmesg| /'
  fi
done

# 2. cryptsetup (the reference, which also needs the kernel's crypto API for its
# keyslots) opens each volume and writes a file system; lethe opens it again: the
# same table as cryptsetup's but for the key, and the file reads back.
modules $REFERENCE_MODULES
# reference NAME DEVICE CRYPTSETUP-ARGS...: writes /known, keeps the table in $ref_table.
reference() {
  local n=$1 dev=$2
  shift 2
  must "$n-reference" cryptsetup open --key-file $L/key "$@" "$dev" ref-$n
  ref_table=$(normalized ref-$n)
  ref_key=$(key_word ref-$n)
  must "$n-reference" mkfs.ext4 -q -F /dev/mapper/ref-$n
  must "$n-reference" mount -t ext4 /dev/mapper/ref-$n /mnt
  echo "written through cryptsetup's mapping of $n" >/mnt/known
  must "$n-reference" umount /mnt
  must "$n-reference" cryptsetup close ref-$n
}

# 2a. LUKS2, aes-xts-plain64, 512-byte sectors, no flags.
reference v2 /dev/vda
if open lethe-v2 /dev/vda --volume-key-file $L/v2.vk; then
  json_has v2-created '"state":"created"'
  same v2-table "$(normalized lethe-v2)" "$ref_table"
  same v2-key-as-cryptsetups "$(key_word lethe-v2)" "$ref_key"
  same v2-key-in-keyring "$(key_word lethe-v2)" ":64:logon:cryptsetup:$V2_UUID-d0"
  json_has v2-reports-keyring '"key_in_keyring":true'
  case "$(table lethe-v2)" in
  *"$(hex $L/v2.vk)"*) fail v2-no-hex-key "dmsetup table --showkeys shows the volume key" ;;
  *) pass v2-no-hex-key ;;
  esac
  live=$(grep "cryptsetup:$V2_UUID" /proc/keys | awk '$2 !~ /R/')
  same v2-key-dropped "$live" ""
  same v2-dm-uuid "$(dm_uuid lethe-v2)" "CRYPT-LUKS2-$(nodash $V2_UUID)-lethe-v2"
  mm=$(devnum lethe-v2)
  same v2-node "$(readlink /dev/mapper/lethe-v2)" "../dm-${mm#*:}"
  same v2-by-id "$(readlink /dev/disk/by-id/dm-uuid-CRYPT-LUKS2-$(nodash $V2_UUID)-lethe-v2)" "../../dm-${mm#*:}"
  same v2-udev-mode "$(stat -c %a /run/udev/data/b$mm 2>&1)" 1644
  db=$(cat /run/udev/data/b$mm 2>&1 | tr '\n' '|')
  case "$db" in
  *"S:mapper/lethe-v2|"*"E:DM_UDEV_PRIMARY_SOURCE_FLAG=1|"*"E:DM_NAME=lethe-v2|"*"E:DM_UUID=CRYPT-LUKS2-"*"E:DM_SUSPENDED=0|G:systemd|Q:systemd|V:1|")
    pass v2-udev-entry
    ;;
  *) fail v2-udev-entry "/run/udev/data/b$mm: $db" ;;
  esac
  if [ -f /run/udev/tags/systemd/b$mm ]; then pass v2-udev-tag; else fail v2-udev-tag "no systemd tag"; fi
  run cryptsetup status lethe-v2
  case "$out" in
  *"type:    LUKS2"*"key location: keyring"*"sector size:  512"*) pass v2-cryptsetup-status ;;
  *) fail v2-cryptsetup-status "$out" ;;
  esac
  content v2-content lethe-v2 "written through cryptsetup's mapping of v2"
  # Again: found active, left as it is.
  open lethe-v2 /dev/vda --volume-key-file $L/v2.vk
  json_has v2-already-active '"state":"already-active"'
  # Another volume under the same name is refused, naming the mapping.
  if open lethe-v2 /dev/vdc --volume-key-file $L/v1.vk; then
    fail v2-name-taken "the LUKS1 volume opened as lethe-v2 too"
  else
    json_has v2-name-taken 'a mapping named "lethe-v2" already exists'
  fi
  run lethe-dm-check close lethe-v2
  same v2-close "$rc" 0
  gone v2-gone lethe-v2 "$mm"
else
  fail v2-created "$out"
fi
# A key dm-crypt refuses (33 bytes for aes-xts) fails the activation after the mapping was
# made: nothing of it may be left.
head -c 33 $L/v2.vk >/tmp/bad.vk
if open lethe-bad /dev/vda --volume-key-file /tmp/bad.vk; then
  fail failed-open-leaves-nothing "a 33-byte aes-xts key was accepted"
else
  left=""
  dmsetup ls | grep -q "^lethe-bad[[:space:]]" && left="$left the mapping;"
  { [ -e /dev/mapper/lethe-bad ] || [ -L /dev/mapper/lethe-bad ]; } && left="$left /dev/mapper/lethe-bad;"
  grep -ls "lethe-bad" /run/udev/data/* >/dev/null && left="$left a udev entry;"
  [ -n "$(grep "cryptsetup:$V2_UUID" /proc/keys | awk '$2 !~ /R/')" ] && left="$left a live key;"
  if [ -z "$left" ]; then pass failed-open-leaves-nothing; else fail failed-open-leaves-nothing "left:$left ($out)"; fi
  json_has failed-open-explained "dm-crypt refused the table for aes-xts-plain64 with a 33-byte key"
fi
# Closing what is not open, or not dm-crypt's, is refused.
run lethe-dm-check close lethe-v2
case "$rc:$out" in
1:*'there is no mapping named "lethe-v2"'*) pass close-absent ;;
*) fail close-absent "exit $rc: $out" ;;
esac
must close-linear dmsetup create lethe-linear --table "0 8 linear /dev/vdc 0"
run lethe-dm-check close lethe-linear
case "$rc:$out" in
1:*"not a dm-crypt mapping"*) pass close-linear ;;
*) fail close-linear "exit $rc: $out" ;;
esac
run dmsetup remove lethe-linear

# 2b. The same volume read-only, with the hex key, and unlocked natively.
if open lethe-v2 /dev/vda --volume-key-file $L/v2.vk --read-only; then
  json_has ro-reported '"read_only":true'
  same ro-blockdev "$(blockdev --getro /dev/mapper/lethe-v2)" 1
  if dd if=/dev/zero of=/dev/mapper/lethe-v2 bs=4096 count=1 conv=fsync 2>/dev/null; then
    fail ro-write "a write to the read-only mapping succeeded"
  else
    pass ro-write
  fi
  content ro-content lethe-v2 "written through cryptsetup's mapping of v2"
  run lethe-dm-check close lethe-v2
else
  fail ro-reported "$out"
fi
if open lethe-v2 /dev/vda --volume-key-file $L/v2.vk --no-keyring; then
  json_has hex-reported '"key_in_keyring":false'
  same hex-key "$(key_word lethe-v2)" "$(hex $L/v2.vk)"
  content hex-content lethe-v2 "written through cryptsetup's mapping of v2"
  run lethe-dm-check close lethe-v2
else
  fail hex-reported "$out"
fi
if open lethe-v2 /dev/vda --key-file $L/key; then
  content unlock-content lethe-v2 "written through cryptsetup's mapping of v2"
  run lethe-dm-check close lethe-v2
else
  fail unlock-content "$out"
fi

# 2c. LUKS2 with 4096-byte sectors and every flag, on both sides.
reference v4k /dev/vdb --allow-discards --perf-no_read_workqueue --perf-no_write_workqueue
if open lethe-v4k /dev/vdb --volume-key-file $L/v4k.vk --allow-discards --no-read-workqueue --no-write-workqueue; then
  same v4k-table "$(normalized lethe-v4k)" "$ref_table"
  case "$(table lethe-v4k)" in
  *" 4 allow_discards no_read_workqueue no_write_workqueue sector_size:4096") pass v4k-flags ;;
  *) fail v4k-flags "$(normalized lethe-v4k)" ;;
  esac
  content v4k-content lethe-v4k "written through cryptsetup's mapping of v4k"
  run lethe-dm-check close lethe-v4k
else
  fail v4k-table "$out"
fi

# 2d. LUKS1, aes-cbc-essiv:sha256 (cryptsetup puts LUKS1 keys in the table, lethe in the
# keyring); cryptsetup closes lethe's mapping.
reference v1 /dev/vdc
if open lethe-v1 /dev/vdc --volume-key-file $L/v1.vk; then
  same v1-table "$(normalized lethe-v1)" "$ref_table"
  same v1-key-in-keyring "$(key_word lethe-v1)" ":32:logon:cryptsetup:$V1_UUID-d0"
  same v1-dm-uuid "$(dm_uuid lethe-v1)" "CRYPT-LUKS1-$(nodash $V1_UUID)-lethe-v1"
  run cryptsetup status lethe-v1
  case "$out" in
  *"type:    LUKS1"*) pass v1-cryptsetup-status ;;
  *) fail v1-cryptsetup-status "$out" ;;
  esac
  content v1-content lethe-v1 "written through cryptsetup's mapping of v1"
  run cryptsetup close lethe-v1
  same v1-cryptsetup-close "$rc" 0
else
  fail v1-table "$out"
fi

# 2e. A detached header.
reference vdet /dev/vdd --header $L/vdet.hdr
if open lethe-vdet /dev/vdd --volume-key-file $L/vdet.vk --header $L/vdet.hdr; then
  same vdet-table "$(normalized lethe-vdet)" "$ref_table"
  same vdet-dm-uuid "$(dm_uuid lethe-vdet)" "CRYPT-LUKS2-$(nodash $VDET_UUID)-lethe-vdet"
  content vdet-content lethe-vdet "written through cryptsetup's mapping of vdet"
  run lethe-dm-check close lethe-vdet
else
  fail vdet-table "$out"
fi
finish
