# /home is mounted after stage 1: it would hide alice's bound directory.
{
  expect = "set neededForBoot = true on: fileSystems.\"/home\"";
  machine = {
    boot.initrd.lethe.enable = true;
    fileSystems."/".device = "/dev/vda1";
    fileSystems."/home".device = "/dev/vda3";
    fileSystems."/persist" = {
      device = "/dev/vda2";
      neededForBoot = true;
    };
    users.users.alice.isNormalUser = true;
    environment.persistence."/persist".users.alice.directories = [ "Documents" ];
  };
}
