# vm-tests' zfs-luks-blank, a desktop: cryptroot opened with a passphrase,
# pool rpool imported from /dev/mapper, rpool/local/root rolled back to
# @blank on every boot, alice's Documents and .ssh kept on rpool/safe/home.
{
  imports = [
    ./common/system.nix
    ./common/alice.nix
  ];

  # The guests' hostid, under which the pool was last imported.
  networking.hostId = "6c657468";

  boot.initrd.lethe = {
    enable = true;
    mode = "init";
    luks.devices.cryptroot.device = "/dev/disk/by-uuid/4c455448-4500-4c55-4b53-00000000d35c";
    rollback.zfs.dataset = "rpool/local/root";
    pools.zfs.rpool.devNodes = "/dev/mapper";
  };
  boot.initrd.kernelModules = [
    "virtio_pci"
    "virtio_blk"
    "dm_mod"
    "dm_crypt"
    "xts"
    "aesni_intel"
    "zfs"
  ];

  fileSystems = {
    "/" = {
      device = "rpool/local/root";
      fsType = "zfs";
    };
    "/nix" = {
      device = "rpool/local/nix";
      fsType = "zfs";
    };
    "/persist" = {
      device = "rpool/safe/persist";
      fsType = "zfs";
      neededForBoot = true;
    };
    "/persist/home" = {
      device = "rpool/safe/home";
      fsType = "zfs";
      neededForBoot = true;
    };
  };

  environment.persistence."/persist".users.alice.directories = [
    "Documents"
    {
      directory = ".ssh";
      mode = "0700";
    }
  ];
}
