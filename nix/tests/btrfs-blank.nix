# BTRFS @root re-created from the read-only @blank on every boot; old roots kept.
{ pkgs, systemd }:
let
  btrfs = subvol: {
    device = "/dev/disk/by-label/lethe";
    fsType = "btrfs";
    options = [ "subvol=${subvol}" ];
  };
in
{
  machine =
    { lib, ... }:
    {
      imports = [ ./common.nix ];
      boot.initrd.lethe.rollback.btrfs = {
        device = "/dev/disk/by-label/lethe";
        subvolume = "@root";
        blank = "@blank";
        oldRoots.enable = true;
        oldRoots.path = "@old_roots";
      };
      virtualisation.fileSystems."/" = lib.mkForce (btrfs "@root");
      virtualisation.fileSystems."/persist" = btrfs "@persist" // {
        neededForBoot = true;
      };
    };
  prepare = ''
    machine.succeed("mkfs.btrfs -L lethe /dev/vdb")
    machine.succeed("mkdir /mnt && mount /dev/vdb /mnt")
    machine.succeed("btrfs subvolume create /mnt/@root && btrfs subvolume create /mnt/@persist")
    machine.succeed("btrfs subvolume snapshot -r /mnt/@root /mnt/@blank")
    machine.succeed("umount /mnt")
  '';
  boot = ''
    machine.wait_for_console_text("lethe")
  '';
}
