# vm-tests' btrfs-blank: @root re-created from @blank on every boot, old roots
# kept 30 days (at least 2), @nix and @persist on the same file system.
{
  imports = [ ./common/plain.nix ];

  boot.initrd.lethe = {
    enable = true;
    mode = "init";
    rollback.btrfs = {
      device = "/dev/disk/by-label/lethe-btrfs";
      subvolume = "@root";
      blank = "@blank";
      oldRoots = {
        enable = true;
        path = "@old_roots";
        keepDays = 30;
        keepAtLeast = 2;
      };
    };
  };
  boot.initrd.kernelModules = [
    "virtio_pci"
    "virtio_blk"
    "btrfs"
  ];

  fileSystems = {
    "/" = {
      device = "/dev/disk/by-label/lethe-btrfs";
      fsType = "btrfs";
      options = [ "subvol=@root" ];
    };
    "/nix" = {
      device = "/dev/disk/by-label/lethe-btrfs";
      fsType = "btrfs";
      options = [ "subvol=@nix" ];
    };
    "/persist" = {
      device = "/dev/disk/by-label/lethe-btrfs";
      fsType = "btrfs";
      options = [ "subvol=@persist" ];
      neededForBoot = true;
    };
  };
}
