# Stand-ins for the scripted stage 1's hooks (stage-1.nix), which NixOS
# removes with the scripted stage 1: evaluated without this file, lethe's
# modules must still evaluate.
{ lib, ... }:
let
  inherit (lib) mkOption types;
  lines = mkOption {
    type = types.lines;
    default = "";
  };
in
{
  options = {
    boot.initrd.preLVMCommands = lines;
    boot.initrd.preDeviceCommands = lines;
    boot.initrd.postDeviceCommands = lines;
    boot.initrd.postResumeCommands = lines;
    boot.initrd.postMountCommands = lines;
    boot.initrd.preFailCommands = lines;
    boot.initrd.extraUtilsCommands = lines;
    boot.initrd.extraUtilsCommandsTest = lines;
    boot.initrd.extraUdevRulesCommands = lines;
    boot.initrd.extraFiles = mkOption {
      type = types.attrsOf (
        types.submodule {
          options.source = mkOption { type = types.package; };
        }
      );
      default = { };
    };
  };
}
