# A server: LUKS2 with a passphrase, unlocked over SSH from a client VM
# (a prompt, no shell), BTRFS @root re-created from @blank.
{ pkgs, systemd }:
let
  keys = import "${pkgs.path}/nixos/tests/ssh-keys.nix" pkgs;
  # A throwaway ed25519 host key in the store: a test only, never a secret.
  hostKey = pkgs.runCommand "lethe-test-host-key" { nativeBuildInputs = [ pkgs.openssh ]; } ''
    mkdir $out
    ssh-keygen -q -t ed25519 -N "" -f $out/ssh_host_ed25519_key
  '';
in
{
  extraNodes.client =
    { ... }:
    {
      environment.etc."lethe-client-key" = {
        text = keys.snakeOilEd25519PrivateKey;
        mode = "0600";
      };
    };
  machine =
    { lib, ... }:
    {
      imports = [ ./common.nix ];
      # The test network has no DHCP server: the address the test driver
      # gives this node in stage 2 (nodes in name order: client .1, machine .2).
      boot.initrd.network.enable = true;
      boot.kernelParams = [ "ip=192.168.1.2::::machine:eth1:none" ];
      boot.initrd.lethe = {
        luks.devices.cryptroot.device = "/dev/vdb";
        ssh = {
          enable = true;
          hostKeys = [ "${hostKey}/ssh_host_ed25519_key" ];
          authorizedKeys = [ keys.snakeOilEd25519PublicKey ];
        };
        rollback.btrfs = {
          device = "/dev/mapper/cryptroot";
          subvolume = "@root";
          blank = "@blank";
        };
      };
      virtualisation.fileSystems."/" = lib.mkForce {
        device = "/dev/mapper/cryptroot";
        fsType = "btrfs";
        options = [ "subvol=@root" ];
      };
      virtualisation.fileSystems."/persist" = {
        device = "/dev/mapper/cryptroot";
        fsType = "btrfs";
        options = [ "subvol=@persist" ];
        neededForBoot = true;
      };
    };
  prepare = ''
    client.start()
    machine.succeed("echo -n 'lethe test passphrase' | cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --iter-time 1 /dev/vdb -")
    machine.succeed("echo -n 'lethe test passphrase' | cryptsetup open /dev/vdb cryptroot -")
    machine.succeed("mkfs.btrfs /dev/mapper/cryptroot && mkdir /mnt && mount /dev/mapper/cryptroot /mnt")
    machine.succeed("btrfs subvolume create /mnt/@root && btrfs subvolume create /mnt/@persist")
    machine.succeed("btrfs subvolume snapshot -r /mnt/@root /mnt/@blank")
    machine.succeed("umount /mnt && cryptsetup close cryptroot")
  '';
  # The passphrase arrives over SSH; the console is never answered.
  boot = ''
    client.wait_for_unit("network.target")
    client.wait_until_succeeds("echo 'lethe test passphrase' | ssh -i /etc/lethe-client-key -o StrictHostKeyChecking=no root@192.168.1.2 | grep -q 'all devices unlocked'", timeout=300)
  '';
}
