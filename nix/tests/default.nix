# The NixOS VM tests of the flake's checks: each vm-tests scenario's machine,
# under systemd stage 1 and under the scripted one.
{ pkgs, module }:
let
  mkTest = import ./lib.nix { inherit pkgs module; };
  scenarios = {
    zfs-luks-blank = import ./zfs-luks-blank.nix;
    btrfs-tmpfs-usbkey = import ./btrfs-tmpfs-usbkey.nix;
    btrfs-blank = import ./btrfs-blank.nix;
    ssh-unlock = import ./ssh-unlock.nix;
  };
  both =
    name: scenario:
    map (systemd: {
      name = "${name}-${if systemd then "systemd" else "scripted"}";
      value = mkTest (scenario { inherit pkgs systemd; } // { inherit name systemd; });
    }) [
      true
      false
    ];
in
builtins.listToAttrs (pkgs.lib.concatLists (pkgs.lib.mapAttrsToList both scenarios))
