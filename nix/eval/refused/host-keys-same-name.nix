# Two host keys that would land on the same /etc/lethe/<name>.
{
  expect = "two keys have the same file name";
  machine = {
    boot.initrd.lethe = {
      enable = true;
      luks.devices.cryptroot.device = "/dev/vda2";
      ssh = {
        enable = true;
        hostKeys = [
          "/etc/secrets/a/ssh_host_ed25519_key"
          "/etc/secrets/b/ssh_host_ed25519_key"
        ];
        authorizedKeys = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHTc0JH1QGVaD7g6pEoAv7CYrisd/klVZAVrGcNijP5Y" ];
      };
    };
    fileSystems."/".device = "/dev/mapper/cryptroot";
  };
}
