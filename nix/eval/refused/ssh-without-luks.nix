# An SSH unlock with nothing to unlock.
{
  expect = "but boot.initrd.lethe.luks.devices is empty";
  machine = {
    boot.initrd.lethe = {
      enable = true;
      ssh = {
        enable = true;
        hostKeys = [ "/etc/secrets/initrd/ssh_host_ed25519_key" ];
        authorizedKeys = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHTc0JH1QGVaD7g6pEoAv7CYrisd/klVZAVrGcNijP5Y" ];
      };
    };
    fileSystems."/".device = "/dev/vda1";
  };
}
