# A desktop: LUKS2 (passphrase) holding ZFS pool rpool; rpool/local/root
# rolled back to @blank on every boot; rpool/safe/persist kept.
{ pkgs, systemd }:
{
  machine =
    { lib, ... }:
    {
      imports = [ ./common.nix ];
      boot.supportedFilesystems = [ "zfs" ];
      networking.hostId = "6c657468";
      # The pool's device is lethe's mapping, which has no by-id link without dm's udev rules.
      boot.zfs.devNodes = "/dev/mapper";
      boot.initrd.lethe = {
        luks.devices.cryptroot.device = "/dev/vdb";
        rollback.zfs.dataset = "rpool/local/root";
      };
      virtualisation.fileSystems."/" = lib.mkForce {
        device = "rpool/local/root";
        fsType = "zfs";
      };
      virtualisation.fileSystems."/persist" = {
        device = "rpool/safe/persist";
        fsType = "zfs";
        neededForBoot = true;
      };
    };
  prepare = ''
    machine.succeed("echo -n 'lethe test passphrase' | cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --iter-time 1 /dev/vdb -")
    machine.succeed("echo -n 'lethe test passphrase' | cryptsetup open /dev/vdb cryptroot -")
    machine.succeed("zpool create -o cachefile=none -O mountpoint=legacy rpool /dev/mapper/cryptroot")
    machine.succeed("zfs create -p rpool/local/root && zfs create -p rpool/safe/persist")
    machine.succeed("zfs snapshot rpool/local/root@blank")
    machine.succeed("zpool export rpool && cryptsetup close cryptroot")
  '';
  boot = ''
    machine.wait_for_console_text("passphrase for disk cryptroot")
    machine.send_console("lethe test passphrase\n")
  '';
}
