# What every evaluation test loads: the NixOS option stubs, lethe's modules,
# and no pkgs (the modules need it only for what they build, never for the
# config), with a placeholder package path.
[
  ./stubs.nix
  ../lethe.nix
  ../persistence.nix
  {
    _module.args.pkgs = throw "evaluation tests have no pkgs: something forced a build";
    boot.initrd.lethe.package = "/nix/store/00000000000000000000000000000000-lethe";
  }
]
