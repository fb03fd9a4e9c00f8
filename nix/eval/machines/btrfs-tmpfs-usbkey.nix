# vm-tests' btrfs-tmpfs-usbkey, a laptop: cryptroot opened by 4 KiB of a key
# file on a vfat USB stick (waited for 5 s), else by the passphrase; a fresh
# 2G tmpfs root; BTRFS subvolumes inside cryptroot for /nix, /persist,
# /var/log and /home.
let
  btrfs = subvol: {
    device = "/dev/mapper/cryptroot";
    fsType = "btrfs";
    options = [ "subvol=${subvol}" ];
  };
in
{
  imports = [ ./common/system.nix ];

  boot.initrd.lethe = {
    enable = true;
    mode = "init";
    luks.devices.cryptroot = {
      device = "/dev/disk/by-uuid/4c455448-4500-4c55-4b53-0000000b7f5e";
      keyFile = "/keys/cryptroot.key";
      keyFileDevice = "/dev/disk/by-uuid/1A2B-3C4D";
      keyFileOffset = 512;
      keyFileSize = 4096;
      keyFileTimeout = 5;
      fallbackToPassword = true;
      allowDiscards = true;
    };
    rollback.tmpfs = {
      size = "2G";
      mode = "0755";
    };
  };
  boot.initrd.kernelModules = [
    "virtio_pci"
    "virtio_blk"
    "dm_mod"
    "dm_crypt"
    "xts"
    "aesni_intel"
    "btrfs"
    "vfat"
    "nls_cp437"
    "nls_ascii"
    "nls_utf8"
  ];

  fileSystems = {
    "/" = {
      device = "none";
      fsType = "tmpfs";
      options = [
        "size=2G"
        "mode=755"
      ];
    };
    "/nix" = btrfs "@system/nix";
    "/persist" = btrfs "@system/state" // {
      neededForBoot = true;
    };
    "/var/log" = btrfs "@system/logs";
    "/home" = btrfs "@user/home" // {
      neededForBoot = true;
    };
  };
}
