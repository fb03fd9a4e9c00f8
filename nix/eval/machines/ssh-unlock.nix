# vm-tests' ssh-unlock, a server: btrfs-blank's machine inside LUKS2
# cryptroot, unlocked over SSH (the test client's key) or on the console;
# DHCP unless the command line's ip= says otherwise.
{
  imports = [ ./btrfs-blank.nix ];

  boot.initrd.lethe = {
    luks.devices.cryptroot = {
      device = "/dev/disk/by-uuid/4c455448-4500-4c55-4b53-00000055a4e1";
      tries = 5;
    };
    ssh = {
      enable = true;
      hostKeys = [ "/etc/secrets/initrd/ssh_host_ed25519_key" ];
      authorizedKeyFiles = [ ../../../vm-tests/keys/ssh-unlock-client.pub ];
    };
    network.timeout = 30;
  };
  boot.initrd.kernelModules = [
    "virtio_pci"
    "virtio_blk"
    "virtio_net"
    "dm_mod"
    "dm_crypt"
    "xts"
    "aesni_intel"
    "btrfs"
  ];
}
