# ssh-unlock's disk: the reference cryptsetup opens the LUKS2 disk vda
# (the passphrase typed on the console) and the BTRFS made on the host
# (vdb) is copied into the mapping block for block; closed at the end.
modules virtio_pci virtio_blk dm_mod dm_crypt xts aesni_intel
wait_for /dev/vda
wait_for /dev/vdb
export DM_DISABLE_UDEV=1
mkdir -p /run/cryptsetup
# cryptsetup asks on the console (its stdin), not through `run`, whose
# output is captured: the harness types the passphrase at its prompt.
echo "+ cryptsetup open --type luks2 /dev/vda cryptroot"
if ! cryptsetup open --type luks2 /dev/vda cryptroot; then
  fail opened "the reference cryptsetup did not open /dev/vda with the typed passphrase"
  finish
fi
wait_for /dev/mapper/cryptroot
must copy dd if=/dev/vdb of=/dev/mapper/cryptroot bs=1M
sync
same copied "$(md5sum </dev/mapper/cryptroot)" "$(md5sum </dev/vdb)"
must close cryptsetup close cryptroot
pass setup
finish
