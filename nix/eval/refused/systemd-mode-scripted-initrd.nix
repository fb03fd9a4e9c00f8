# mode = "systemd" on the scripted stage 1: the units would never run.
{
  expect = "needs boot.initrd.systemd.enable = true";
  machine = {
    boot.initrd.lethe = {
      enable = true;
      mode = "systemd";
    };
    fileSystems."/".device = "/dev/vda1";
  };
}
