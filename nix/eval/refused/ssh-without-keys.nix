# An SSH server nobody can log in to, with no host key.
{
  expect = "boot.initrd.lethe.ssh: set hostKeys";
  machine = {
    boot.initrd.lethe = {
      enable = true;
      luks.devices.cryptroot.device = "/dev/vda2";
      ssh.enable = true;
    };
    fileSystems."/".device = "/dev/mapper/cryptroot";
  };
}
