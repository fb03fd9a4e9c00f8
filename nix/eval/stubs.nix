# The NixOS options lethe's modules read or set, declared minimally (same
# names, types and defaults as NixOS), so that the modules evaluate with
# nixpkgs' lib alone: no nixpkgs, no store, no builds.
{ lib, ... }:
let
  inherit (lib) mkOption types;
  anything = mkOption {
    type = types.lazyAttrsOf types.anything;
    default = { };
  };
  lines = mkOption {
    type = types.lines;
    default = "";
  };
  strings = mkOption {
    type = types.listOf types.str;
    default = [ ];
  };
in
{
  options = {
    assertions = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
    };
    warnings = strings;

    fileSystems = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule (
          { name, ... }:
          {
            options = {
              mountPoint = mkOption {
                type = types.str;
                default = name;
              };
              device = mkOption {
                type = types.nullOr types.str;
                default = null;
              };
              label = mkOption {
                type = types.nullOr types.str;
                default = null;
              };
              fsType = mkOption {
                type = types.str;
                default = "auto";
              };
              options = mkOption {
                type = types.nonEmptyListOf types.str;
                default = [ "defaults" ];
              };
              neededForBoot = mkOption {
                type = types.bool;
                default = false;
              };
            };
          }
        )
      );
    };

    users.users = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule (
          { name, config, ... }:
          {
            options = {
              name = mkOption {
                type = types.str;
                default = name;
              };
              uid = mkOption {
                type = types.nullOr types.int;
                default = null;
              };
              group = mkOption {
                type = types.str;
                default = "";
              };
              home = mkOption {
                type = types.str;
                default = "/var/empty";
              };
              isNormalUser = mkOption {
                type = types.bool;
                default = false;
              };
            };
            config = lib.mkIf config.isNormalUser {
              home = lib.mkDefault "/home/${config.name}";
              group = lib.mkDefault "users";
            };
          }
        )
      );
    };
    users.groups = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule (
          { name, ... }:
          {
            options = {
              name = mkOption {
                type = types.str;
                default = name;
              };
              gid = mkOption {
                type = types.nullOr types.int;
                default = null;
              };
            };
          }
        )
      );
    };

    boot.kernelParams = strings;
    boot.supportedFilesystems = mkOption {
      type = types.attrsOf types.bool;
      default = { };
    };
    boot.initrd = {
      kernelModules = strings;
      availableKernelModules = strings;
      supportedFilesystems = mkOption {
        type = types.attrsOf types.bool;
        default = { };
      };
      preLVMCommands = lines;
      postDeviceCommands = lines;
      postResumeCommands = lines;
      postMountCommands = lines;
      extraUtilsCommands = lines;
      secrets = mkOption {
        type = types.attrsOf (types.nullOr types.str);
        default = { };
      };
      extraFiles = anything;
      luks.devices = anything;
      network.enable = mkOption {
        type = types.bool;
        default = false;
      };
      network.ssh.enable = mkOption {
        type = types.bool;
        default = false;
      };
      systemd = {
        enable = mkOption {
          type = types.bool;
          default = false;
        };
        services = anything;
        targets = anything;
        suppressedUnits = strings;
        storePaths = mkOption {
          type = types.listOf types.unspecified;
          default = [ ];
        };
        contents = anything;
        network.enable = mkOption {
          type = types.bool;
          default = false;
        };
      };
    };
    system.build = anything;
    systemd.services = anything;
  };
}
