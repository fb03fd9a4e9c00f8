# The same directory from two storages: which one would win?
{
  expect = "directories persisted more than once: /var/lib/nixos";
  machine = {
    boot.initrd.lethe.enable = true;
    fileSystems."/".device = "/dev/vda1";
    environment.persistence."/persist".directories = [ "/var/lib/nixos" ];
    environment.persistence."/state".directories = [ "/var/lib/nixos" ];
  };
}
