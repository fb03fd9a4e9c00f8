# A device timeout lethe cannot read is refused, not silently replaced by its default.
{
  expect = "fileSystems.\"/persist\" (1h30min): lethe reads N, Ns or Nmin";
  machine = {
    boot.initrd.lethe.enable = true;
    fileSystems."/".device = "/dev/vda1";
    fileSystems."/persist" = {
      device = "/dev/vda2";
      neededForBoot = true;
      options = [ "x-systemd.device-timeout=1h30min" ];
    };
  };
}
