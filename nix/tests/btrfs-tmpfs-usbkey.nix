# A laptop: LUKS2 opened by a key file on a vfat USB stick, else the
# passphrase; a fresh tmpfs root; BTRFS subvolumes inside for /persist.
{ pkgs, systemd }:
{
  machine =
    { lib, ... }:
    {
      imports = [ ./common.nix ];
      boot.initrd.lethe = {
        luks.devices.cryptroot = {
          device = "/dev/vdb";
          keyFile = "/keys/cryptroot.key";
          keyFileDevice = "/dev/disk/by-label/LETHEKEY";
          keyFileOffset = 512;
          keyFileSize = 4096;
          keyFileTimeout = 5;
          fallbackToPassword = true;
        };
        rollback.tmpfs.size = "512M";
      };
      virtualisation.fileSystems."/" = lib.mkForce {
        device = "none";
        fsType = "tmpfs";
        options = [
          "size=512M"
          "mode=755"
        ];
      };
      virtualisation.fileSystems."/persist" = {
        device = "/dev/mapper/cryptroot";
        fsType = "btrfs";
        options = [ "subvol=@persist" ];
        neededForBoot = true;
      };
    };
  prepare = ''
    machine.succeed("head -c 8192 /dev/urandom > /tmp/key")
    machine.succeed("echo -n 'lethe test passphrase' | cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --iter-time 1 /dev/vdb -")
    machine.succeed("echo -n 'lethe test passphrase' | cryptsetup luksAddKey --pbkdf pbkdf2 --iter-time 1 --new-keyfile-offset 512 --new-keyfile-size 4096 /dev/vdb /tmp/key")
    machine.succeed("mkfs.vfat -n LETHEKEY /dev/vdc && mkdir /stick && mount /dev/vdc /stick && mkdir /stick/keys && cp /tmp/key /stick/keys/cryptroot.key && umount /stick")
    machine.succeed("echo -n 'lethe test passphrase' | cryptsetup open /dev/vdb cryptroot -")
    machine.succeed("mkfs.btrfs /dev/mapper/cryptroot && mkdir /mnt && mount /dev/mapper/cryptroot /mnt")
    machine.succeed("btrfs subvolume create /mnt/@persist && umount /mnt && cryptsetup close cryptroot")
  '';
  # The stick is there: no passphrase is asked.
  boot = ''
    machine.wait_for_console_text("unlocked")
  '';
}
