# lethe's own PID 1 has no udev: a /dev/disk/by-id link would never appear.
{
  expect = "boot.initrd.lethe.luks.devices.cryptroot.device = /dev/disk/by-id/ata-disk-part2";
  machine = {
    boot.initrd.lethe = {
      enable = true;
      mode = "init";
      luks.devices.cryptroot.device = "/dev/disk/by-id/ata-disk-part2";
    };
    fileSystems."/".device = "/dev/mapper/cryptroot";
  };
}
