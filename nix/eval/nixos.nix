# lethe's NixOS modules beside NixOS's own: systemd stage 1, LUKS, LVM
# (device-mapper's udev rules), file systems and btrfs, the initrd network
# and SSH, initrd secrets and assertions, read from a NixOS source tree with
# lib/ and nixos/ ($LETHE_NIXPKGS; ../shared/nixpkgs beside the repository in
# CI). Only options those files read and do not declare have stand-ins
# (./nixos/options.nix, typed as NixOS declares them; the scripted stage 1's
# hooks apart in ./nixos/scripted-options.nix, since NixOS is dropping them);
# pkgs is ./nixos/pkgs.nix. Units are rendered by NixOS's own systemd-lib.
{
  nixpkgs ? (
    let
      dir = builtins.getEnv "LETHE_NIXPKGS";
    in
    if dir == "" then throw "set LETHE_NIXPKGS to a NixOS source tree (lib/ and nixos/)" else /. + dir
  ),
  # false: a NixOS without the scripted stage 1 (its hooks undeclared).
  scripted ? true,
}:
let
  # lib.mdDoc was the identity on a description; NixOS modules older than
  # lib 24.11 still call it.
  lib = (import (nixpkgs + "/lib")).extend (_: prev: { mdDoc = prev.mdDoc or (s: s); });
  nixos = nixpkgs + "/nixos";
  pkgs = import ./nixos/pkgs.nix { inherit lib; };
  modules =
    map (p: nixos + "/modules/${p}") (
      [
        "misc/assertions.nix"
        "system/boot/systemd/initrd.nix"
        "system/boot/systemd/initrd-secrets.nix"
        "tasks/filesystems.nix"
      ]
      # These define the scripted hooks too: without them the modules that
      # are left stand for a NixOS whose scripted stage 1 is gone.
      ++ lib.optionals scripted [
        "system/boot/luksroot.nix"
        "system/boot/initrd-network.nix"
        "system/boot/initrd-ssh.nix"
        "tasks/lvm.nix"
        "tasks/filesystems/btrfs.nix"
      ]
    )
    ++ lib.optional scripted ./nixos/scripted-options.nix
    ++ [
      ./nixos/options.nix
      ../lethe.nix
      ../persistence.nix
      (
        { config, ... }:
        {
          _module.args = {
            inherit pkgs;
            utils = import (nixos + "/lib/utils.nix") { inherit lib config pkgs; };
          };
          # A placeholder store path for the package.
          boot.initrd.lethe.package = lib.mkDefault (
            pkgs.drv "lethe" // { outPath = "/nix/store/00000000000000000000000000000000-lethe"; }
          );
        }
      )
    ];
in
{
  inherit lib pkgs modules;
  # The messages of the failed assertions; one that cannot be decided (NixOS's
  # own, about hooks a NixOS without the scripted stage 1 lacks) is left out.
  failedAssertions =
    config:
    map (a: a.message) (
      lib.filter (
        a:
        let
          r = builtins.tryEval a.assertion;
        in
        r.success && !r.value
      ) config.assertions
    );
  eval = extra: lib.evalModules { modules = modules ++ extra; };
}
