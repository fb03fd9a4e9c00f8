# lethe's NixOS modules: boot.initrd.lethe and environment.persistence.
{
  imports = [
    ./lethe.nix
    ./persistence.nix
  ];
}
