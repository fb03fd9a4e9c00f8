# Stand-ins for the NixOS options that the NixOS modules evaluated beside
# lethe's read but do not declare (their own modules, such as stage-1.nix,
# udev.nix, zfs.nix, etc.nix and users-groups.nix, are not in the source tree
# the evaluation reads), each typed as the newest NixOS declares it.
{ lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  opt = type: default: mkOption { inherit type default; };
  strings = opt (types.listOf types.str) [ ];
  lines = opt types.lines "";
  bool = opt types.bool false;
  packages = opt (types.listOf types.package) [ ];
  attrs = opt (types.attrsOf types.anything) { };
in
{
  options = {
    # boot/kernel.nix
    boot.kernelParams = strings;
    boot.kernelModules = strings;
    boot.blacklistedKernelModules = strings;
    boot.extraModprobeConfig = lines;
    boot.kernelPackages = opt types.raw {
      kernel = pkgs.drv "linux" // {
        modDirVersion = "6.12.0";
      };
      kvdo = pkgs.drv "kvdo";
    };
    boot.extraModulePackages = packages;
    boot.initrd.kernelModules = strings;
    boot.initrd.availableKernelModules = strings;
    system.modulesTree = opt (types.listOf types.path) [ ];
    hardware.firmware = opt (types.listOf types.package) [ ];
    boot.isContainer = bool;
    boot.isNspawnContainer = bool;
    # system/boot/stage-1.nix
    boot.initrd.enable = opt types.bool true;
    boot.initrd.checkJournalingFS = opt types.bool true;
    boot.initrd.verbose = opt types.bool true;
    boot.initrd.prepend = strings;
    boot.initrd.extraFirmwarePaths = strings;
    # tasks/filesystems/zfs.nix
    boot.zfs.package = opt types.package pkgs.zfs;
    boot.initrd.compressor = opt (types.either types.str (types.functionTo types.str)) "zstd";
    boot.initrd.compressorArgs = opt (types.nullOr (types.listOf types.str)) null;
    boot.initrd.secrets = opt (types.attrsOf (types.nullOr types.path)) { };
    boot.initrd.supportedFilesystems = opt (types.attrsOf types.bool) { };
    boot.initrd.osRelease = opt types.package (pkgs.drv "initrd-release");
    fileSystems = mkOption {
      type = types.attrsOf (
        types.submodule {
          options.neededForBoot = opt types.bool false;
        }
      );
    };
    boot.initrd.includeDefaultModules = opt types.bool true;
    boot.loader.supportsInitrdSecrets = opt types.bool true;
    boot.resumeDevice = opt types.str "";
    boot.supportedFilesystems = opt (types.attrsOf types.bool) { };
    boot.devSize = opt types.str "5%";
    boot.devShmSize = opt types.str "50%";
    boot.runSize = opt types.str "25%";
    system.build = opt (types.lazyAttrsOf types.unspecified) { };
    system.fsPackages = packages;
    system.activationScripts = attrs;
    system.requiredKernelConfig = opt (types.listOf types.attrs) [ ];
    # system/boot/systemd.nix, udev.nix, tpm2.nix, clevis.nix, resolved.nix
    systemd.package = opt types.package pkgs.systemd;
    systemd.packages = packages;
    systemd.services = attrs;
    systemd.targets = attrs;
    systemd.tmpfiles = attrs;
    systemd.sockets = attrs;
    systemd.globalEnvironment = opt (types.attrsOf (types.nullOr (types.oneOf [ types.str types.path types.package ]))) { };
    systemd.mounts = opt (types.listOf types.attrs) [ ];
    systemd.generators = attrs;
    systemd.enableStrictShellChecks = bool;
    boot.initrd.services.udev.packages = packages;
    boot.initrd.services.udev.binPackages = packages;
    boot.initrd.services.udev.rules = lines;
    boot.initrd.services.resolved.enable = bool;
    boot.initrd.systemd.tpm2.enable = bool;
    boot.initrd.systemd.dbus.enable = bool;
    boot.initrd.clevis.enable = bool;
    boot.initrd.clevis.devices = attrs;
    boot.initrd.clevis.useTang = bool;
    services.udev.packages = packages;
    # services/networking/ssh/sshd.nix, as the initrd-ssh.nix read here has it.
    services.openssh = opt (types.attrsOf types.anything) {
      kexAlgorithms = [ "curve25519-sha256" ];
      ciphers = [ "chacha20-poly1305@openssh.com" ];
      macs = [ "hmac-sha2-512-etm@openssh.com" ];
      logLevel = "INFO";
      useDns = false;
    };
    # config/system-path.nix, etc.nix, networking.nix
    environment.systemPackages = packages;
    environment.etc = opt (types.attrsOf (
      types.submodule {
        options.text = mkOption {
          type = types.nullOr types.lines;
          default = null;
        };
        options.source = mkOption {
          type = types.nullOr types.path;
          default = null;
        };
      }
    )) { };
    networking.hostName = opt types.str "nixos";
    networking.hostId = opt (types.nullOr types.str) null;
    networking.useDHCP = opt types.bool true;
    networking.interfaces = attrs;
    # config/users-groups.nix, misc/ids.nix
    users.users = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule (
          { name, config, ... }:
          {
            options = {
              name = opt types.str name;
              uid = opt (types.nullOr types.int) null;
              group = opt types.str "";
              home = opt types.path "/var/empty";
              isNormalUser = bool;
              openssh.authorizedKeys.keys = strings;
              openssh.authorizedKeys.keyFiles = opt (types.listOf types.path) [ ];
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
              name = opt types.str name;
              gid = opt (types.nullOr types.int) null;
            };
          }
        )
      );
    };
    ids.gids = opt (types.attrsOf types.int) {
      keys = 96;
      tty = 3;
    };
    ids.uids = opt (types.attrsOf types.int) { };
    swapDevices = opt (types.listOf types.attrs) [ ];
    documentation.nixos.enable = bool;
    security.wrappers = attrs;
    systemd.timers = attrs;
  };
  # users-groups.nix's own root.
  config.users.users.root = {
    uid = 0;
    group = "root";
    home = "/root";
  };
  config.users.groups.root.gid = 0;
}
