# Two rollback methods at once: which root would boot?
{
  expect = "set one of zfs, btrfs and tmpfs, not zfs and tmpfs";
  machine = {
    boot.initrd.lethe = {
      enable = true;
      rollback.zfs.dataset = "rpool/local/root";
      rollback.tmpfs = { };
    };
    fileSystems."/" = {
      device = "rpool/local/root";
      fsType = "zfs";
    };
  };
}
