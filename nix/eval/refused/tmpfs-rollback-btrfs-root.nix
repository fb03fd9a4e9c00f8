# rollback.tmpfs makes the root a tmpfs; fileSystems."/" says otherwise.
{
  expect = "fileSystems.\"/\".fsType is \"btrfs\"";
  machine = {
    boot.initrd.lethe = {
      enable = true;
      rollback.tmpfs = { };
    };
    fileSystems."/" = {
      device = "/dev/vda1";
      fsType = "btrfs";
    };
  };
}
