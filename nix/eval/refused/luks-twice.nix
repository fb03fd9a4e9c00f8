# The same device in NixOS's LUKS options and lethe's: both would open it.
{
  expect = "boot.initrd.luks.devices both open cryptroot";
  machine = {
    boot.initrd.lethe = {
      enable = true;
      luks.devices.cryptroot.device = "/dev/vda2";
    };
    boot.initrd.luks.devices.cryptroot.device = "/dev/vda2";
    fileSystems."/".device = "/dev/mapper/cryptroot";
  };
}
