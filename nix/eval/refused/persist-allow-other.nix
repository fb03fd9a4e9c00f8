# impermanence's removed options stay refused, with its reason.
{
  expect = "bind mounts need no allowOther";
  machine = {
    boot.initrd.lethe.enable = true;
    fileSystems."/".device = "/dev/vda1";
    environment.persistence."/persist" = {
      allowOther = true;
      directories = [ "/var/log" ];
    };
  };
}
