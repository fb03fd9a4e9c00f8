# lethe's own PID 1 and systemd stage 1 cannot both be the initrd's init.
{
  expect = "boot.initrd.lethe.mode = \"init\" needs boot.initrd.systemd.enable = false";
  machine = {
    boot.initrd.systemd.enable = true;
    boot.initrd.lethe = {
      enable = true;
      mode = "init";
    };
    fileSystems."/".device = "/dev/vda1";
  };
}
