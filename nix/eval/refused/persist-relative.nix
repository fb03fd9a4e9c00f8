# A system path must be absolute; ".." would climb out of the storage.
{
  expect = "must not contain \"..\": var/log, /etc/../root";
  machine = {
    boot.initrd.lethe.enable = true;
    fileSystems."/".device = "/dev/vda1";
    environment.persistence."/persist".directories = [
      "var/log"
      "/etc/../root"
    ];
  };
}
