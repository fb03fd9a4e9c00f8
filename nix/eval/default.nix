# Evaluates lethe's NixOS modules beside NixOS's own (./nixos.nix) for each
# example machine in ./machines and returns, per machine, the JSON config it
# would boot with, its failed assertions and warnings, and, per machine and
# mode, what its initrd gets: lethe's units as NixOS's systemd-lib renders
# them, the links generateUnits makes, the upstream units, crypttab, lethe's
# contents and store paths, or the scripted hooks.
#
#   LETHE_NIXPKGS=../shared/nixpkgs \
#     nix-instantiate --eval --strict --json nix/eval -A machines.btrfs-blank.settings
{
  nixpkgs ? (
    let
      dir = builtins.getEnv "LETHE_NIXPKGS";
    in
    if dir == "" then throw "set LETHE_NIXPKGS to a NixOS source tree (lib/ and nixos/)" else /. + dir
  ),
}:
let
  nixos = import ./nixos.nix { inherit nixpkgs; };
  inherit (nixos) lib;

  evaluate =
    machine: extra:
    let
      inherit (nixos.eval ([ machine ] ++ extra)) config;
      sd = config.boot.initrd.systemd;
      lethe = config.boot.initrd.lethe;
      # What generateUnits writes into the initrd's /etc/systemd/system: its
      # script (kept by the stand-in runCommand) lists the upstream units and
      # makes the wants/requires links.
      scriptLines = lib.splitString "\n" (sd.contents."/etc/systemd/system".source.script or "");
      upstream =
        let
          first = lib.findFirst (l: lib.hasPrefix "for i in " (lib.trim l)) "" scriptLines;
        in
        lib.filter (u: u != "") (
          lib.splitString " " (lib.removeSuffix "; do" (lib.removePrefix "for i in " (lib.trim first)))
        );
      links = lib.concatMap (
        l:
        let
          m = builtins.match "ln -sfn '\\.\\./([^']+)' \\$out/'([^']+)'/" (lib.trim l);
        in
        lib.optional (m != null) "${lib.elemAt m 1}/${lib.elemAt m 0}"
      ) scriptLines;
      letheUnits = lib.filterAttrs (n: u: lib.hasPrefix "lethe-" n && u.enable) sd.units;
    in
    {
      inherit config;
      settings = lethe.settings;
      failedAssertions = nixos.failedAssertions config;
      inherit (config) warnings;
      initrd =
        if lethe.mode == "systemd" then
          {
            mode = "systemd";
            units = lib.mapAttrs (_: u: u.text) letheUnits;
            upstreamUnits = lib.sort lib.lessThan upstream;
            links = lib.sort lib.lessThan links;
            deviceMapperRules = config.boot.initrd.services.lvm.enable;
            # NixOS's own crypttab: empty, since lethe opens the devices.
            crypttab = lib.attrNames config.boot.initrd.luks.devices;
            contents = lib.sort lib.lessThan (
              lib.attrNames (lib.filterAttrs (n: _: lib.hasPrefix "/etc/lethe" n) sd.contents)
            );
            storePaths = lib.filter (p: lib.hasInfix "lethe" p) (map (p: toString p.source) sd.storePaths);
          }
        else if lethe.mode == "scripted" then
          {
            mode = "scripted";
            inherit (config.boot.initrd) preLVMCommands postResumeCommands postMountCommands;
            extraUtilsCommands = config.boot.initrd.extraUtilsCommands;
            extraFiles = lib.attrNames config.boot.initrd.extraFiles;
          }
        else
          {
            mode = "init";
            secrets = lib.attrNames config.boot.initrd.secrets;
            # The build of lethe's own initrd (mkinitrd's arguments).
            build = config.system.build.initialRamdisk.script;
          };
    };

  modes = [
    "systemd"
    "init"
    "scripted"
  ];
  inMode = mode: {
    boot.initrd.lethe.mode = lib.mkForce mode;
    boot.initrd.systemd.enable = lib.mkForce (mode == "systemd");
  };
  named =
    dir:
    lib.mapAttrs' (file: _: lib.nameValuePair (lib.removeSuffix ".nix" file) (dir + "/${file}")) (
      lib.filterAttrs (file: type: type == "regular" && lib.hasSuffix ".nix" file) (builtins.readDir dir)
    );
  machines = lib.mapAttrs (_: m: evaluate m [ ]) (named ./machines);
in
{
  # The scenarios' machines as written: each must evaluate without a failed
  # assertion; its settings are committed as nix/fixtures/<name>.json.
  inherit machines modes;
  machineNames = lib.attrNames machines;
  # Each machine in each mode, "<machine>-<mode>": what its initrd gets,
  # committed as nix/fixtures/initrd/<machine>-<mode>.json.
  initrds = lib.listToAttrs (
    lib.concatMap (
      name:
      map (
        mode:
        let
          e = evaluate (named ./machines).${name} [ (inMode mode) ];
        in
        lib.nameValuePair "${name}-${mode}" {
          inherit (e) initrd settings;
          # The stored initrd-network.nix predates systemd stage 1 and always
          # defines the scripted hooks; the newest NixOS's does so only under
          # the scripted stage 1, so those assertions say nothing of lethe.
          failedAssertions = lib.filter (
            m: !(lib.hasInfix "systemd stage 1 does not support" m && lib.hasInfix "initrd-network.nix" m)
          ) e.failedAssertions;
        }
      ) modes
    ) (lib.attrNames machines)
  );
  # Configurations the modules must refuse: each file is { expect; machine; },
  # `expect` a piece of the failed assertion's message.
  refused = lib.mapAttrs (
    _: file:
    let
      r = import file;
      failed = (evaluate r.machine [ ]).failedAssertions;
    in
    {
      inherit (r) expect;
      inherit failed;
      refused = lib.any (lib.hasInfix r.expect) failed;
    }
  ) (named ./refused);
  inherit evaluate;
}
