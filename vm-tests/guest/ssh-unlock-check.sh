# ssh-unlock's read-back: the reference cryptsetup opens the LUKS2 disk
# vda with the passphrase and the mapping is copied out to vdb, where the
# host mounts it; closed at the end.
modules virtio_pci virtio_blk dm_mod dm_crypt xts aesni_intel
wait_for /dev/vda
wait_for /dev/vdb
export DM_DISABLE_UDEV=1
mkdir -p /run/cryptsetup
# cryptsetup asks on the console (its stdin), not through `run`, whose
# output is captured: the harness types the passphrase at its prompt.
echo "+ cryptsetup open --type luks2 --readonly /dev/vda cryptroot"
if ! cryptsetup open --type luks2 --readonly /dev/vda cryptroot; then
  fail opened "the reference cryptsetup did not open /dev/vda with the typed passphrase"
  finish
fi
wait_for /dev/mapper/cryptroot
must copy dd if=/dev/mapper/cryptroot of=/dev/vdb bs=1M
sync
must close cryptsetup close cryptroot
pass check
finish
