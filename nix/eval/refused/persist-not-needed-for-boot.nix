# The persistent storage is mounted only in stage 2: stage 1 would bind an
# empty directory of the erased root.
{
  expect = "set neededForBoot = true on: fileSystems.\"/persist\"";
  machine = {
    boot.initrd.lethe.enable = true;
    fileSystems."/".device = "/dev/vda1";
    fileSystems."/persist".device = "/dev/vda2";
    environment.persistence."/persist".directories = [ "/var/log" ];
  };
}
