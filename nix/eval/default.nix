# Evaluates lethe's NixOS modules for each example machine in ./machines with
# nixpkgs' lib alone (no nixpkgs, no store) and returns, per machine, the
# JSON config it would boot with, its failed assertions and its warnings.
#
#   LETHE_NIXPKGS_LIB=/path/to/nixpkgs.lib \
#     nix-instantiate --eval --strict --json nix/eval -A machines.btrfs-blank.settings
{
  lib ? import (
    let
      dir = builtins.getEnv "LETHE_NIXPKGS_LIB";
    in
    if dir == "" then
      throw "set LETHE_NIXPKGS_LIB to a checkout of nixpkgs' lib (github:nix-community/nixpkgs.lib)"
    else
      /. + "${dir}/lib"
  ),
}:
let
  evaluate =
    machine:
    let
      inherit
        (lib.evalModules {
          modules = import ./modules.nix ++ [ machine ];
        })
        config
        ;
    in
    {
      inherit config;
      settings = config.boot.initrd.lethe.settings;
      failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
      inherit (config) warnings;
    };

  named =
    dir:
    lib.mapAttrs' (file: _: lib.nameValuePair (lib.removeSuffix ".nix" file) (evaluate (dir + "/${file}"))) (
      lib.filterAttrs (file: type: type == "regular" && lib.hasSuffix ".nix" file) (builtins.readDir dir)
    );
in
{
  # The scenarios' machines: each must evaluate without a failed assertion;
  # its settings are committed as nix/fixtures/<name>.json.
  machines = named ./machines;
  machineNames = builtins.attrNames (named ./machines);
  # Configurations the modules must refuse: each file is { expect; machine; },
  # `expect` a piece of the failed assertion's message.
  refused = lib.mapAttrs' (
    file: _:
    let
      r = import (./refused + "/${file}");
      failed = (evaluate r.machine).failedAssertions;
    in
    lib.nameValuePair (lib.removeSuffix ".nix" file) {
      inherit (r) expect;
      inherit failed;
      refused = lib.any (lib.hasInfix r.expect) failed;
    }
  ) (lib.filterAttrs (file: type: type == "regular" && lib.hasSuffix ".nix" file) (builtins.readDir ./refused));
  inherit evaluate;
}
