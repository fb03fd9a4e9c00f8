# environment.persistence without lethe would persist nothing, silently.
{
  expect = "set boot.initrd.lethe.enable = true";
  machine = {
    fileSystems."/".device = "/dev/vda1";
    environment.persistence."/persist".files = [ "/etc/machine-id" ];
  };
}
