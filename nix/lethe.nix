# boot.initrd.lethe: LUKS unlock, root rollback and persisted state in stage 1,
# from lethe's static binary instead of shell snippets, under systemd stage 1,
# the scripted stage 1, or lethe's own PID 1.
{
  config,
  options,
  lib,
  pkgs,
  utils,
  ...
}:
let
  inherit (lib)
    mkOption
    mkEnableOption
    mkIf
    mkMerge
    mkAfter
    mkForce
    types
    literalExpression
    optional
    optionals
    optionalAttrs
    optionalString
    mapAttrs
    mapAttrs'
    nameValuePair
    filterAttrs
    attrNames
    attrValues
    hasPrefix
    removePrefix
    concatStringsSep
    concatMap
    concatMapStringsSep
    unique
    filter
    elem
    length
    head
    splitString
    ;

  cfg = config.boot.initrd.lethe;
  fs = config.fileSystems;

  # Where the config lives in the initrd, whatever the mode.
  configPath = "/etc/lethe/config.json";
  # Where NixOS's scripted stage 1 mounts the new root.
  scriptedRoot = "/mnt-root";

  # /dev/disk/by-* links need udev, which lethe's own PID 1 does without: give
  # the kernel's names (UUID=, LABEL=, PARTUUID=) that lethe probes for itself.
  deviceSpec =
    d:
    let
      by = kind: hasPrefix "/dev/disk/by-${kind}/" d;
      rest = kind: unescapeUdev (removePrefix "/dev/disk/by-${kind}/" d);
    in
    if by "uuid" then
      "UUID=${rest "uuid"}"
    else if by "label" then
      "LABEL=${rest "label"}"
    else if by "partuuid" then
      "PARTUUID=${rest "partuuid"}"
    else
      d;
  # udev writes a space in a label as \x20 (and / as \x2f).
  unescapeUdev = builtins.replaceStrings [ "\\x20" "\\x2f" ] [ " " "/" ];
  escapeUdev = builtins.replaceStrings [ " " "/" ] [ "\\x20" "\\x2f" ];

  # A file system's device: `label` wins as in NixOS.
  fsDevice = f: if f.label != null then "LABEL=${f.label}" else deviceSpec f.device;

  # Mount options lethe passes on: mount(8)'s no-op "defaults" dropped.
  # NixOS's own x-initrd.mount marks a needed-for-boot file system, which
  # lethe mounts anyway.
  fsOptions =
    f:
    filter (
      o: o != "defaults" && o != "x-initrd.mount" && !(hasPrefix "x-systemd.device-timeout=" o)
    ) f.options;
  # x-systemd.device-timeout= (what NixOS users set) becomes lethe's wait, in
  # seconds: N, Ns or Nmin; another form is refused by an assertion below.
  timeoutValue =
    f:
    let
      t = filter (hasPrefix "x-systemd.device-timeout=") f.options;
    in
    if t == [ ] then null else removePrefix "x-systemd.device-timeout=" (head t);
  parseTimeout =
    v:
    let
      secs = builtins.match "([0-9]+)(s|sec)?" v;
      mins = builtins.match "([0-9]+)min" v;
    in
    if secs != null then
      lib.toIntBase10 (head secs)
    else if mins != null then
      60 * lib.toIntBase10 (head mins)
    else
      null;
  fsTimeout = f: if timeoutValue f == null then null else parseTimeout (timeoutValue f);
  optionValue =
    prefix: f:
    let
      found = filter (hasPrefix prefix) f.options;
    in
    if found == [ ] then null else removePrefix prefix (head found);

  # The file systems stage 1 mounts below the root: those NixOS marks needed
  # for boot (its own list, and neededForBoot).
  pathsNeededForBoot = [
    "/"
    "/nix"
    "/nix/store"
    "/var"
    "/var/log"
    "/var/lib"
    "/var/lib/nixos"
    "/etc"
    "/usr"
  ];
  neededForBoot = f: f.neededForBoot || elem f.mountPoint pathsNeededForBoot;
  mountSection = f: {
    fsType = f.fsType;
  }
  // optionalAttrs (f.fsType != "tmpfs" && (f.device != null || f.label != null)) { device = fsDevice f; }
  // optionalAttrs (fsOptions f != [ ]) { options = fsOptions f; }
  // optionalAttrs (fsTimeout f != null) { timeout = fsTimeout f; };

  rootFs = fs."/" or null;
  rootSection =
    if cfg.rollback.tmpfs != null then
      { fsType = "tmpfs"; }
    else if rootFs.fsType == "tmpfs" then
      {
        fsType = "tmpfs";
      }
      // optionalAttrs (optionValue "size=" rootFs != null) { size = optionValue "size=" rootFs; }
      // optionalAttrs (optionValue "mode=" rootFs != null) { mode = normalMode (optionValue "mode=" rootFs); }
    else
      mountSection rootFs;
  # tmpfs takes 755; lethe's config wants the four-digit form.
  normalMode = m: if builtins.stringLength m == 3 then "0${m}" else m;

  mountsSection = lib.listToAttrs (
    map (f: nameValuePair f.mountPoint (mountSection f)) (
      filter (f: f.mountPoint != "/" && neededForBoot f) (attrValues fs)
    )
  );

  luksDevice =
    name: d:
    {
      device = deviceSpec d.device;
      tries = d.tries;
    }
    // optionalAttrs (d.keyFile != null) {
      keyFile = {
        path = d.keyFile;
      }
      // optionalAttrs (d.keyFileDevice != null) { device = deviceSpec d.keyFileDevice; }
      // optionalAttrs (d.keyFileOffset != null) { offset = d.keyFileOffset; }
      // optionalAttrs (d.keyFileSize != null) { size = d.keyFileSize; }
      // optionalAttrs (d.keyFileTimeout != null) { timeout = d.keyFileTimeout; };
    }
    // optionalAttrs d.fallbackToPassword { fallbackToPassword = true; }
    // optionalAttrs d.allowDiscards { allowDiscards = true; }
    // optionalAttrs d.bypassWorkqueues { bypassWorkqueues = true; }
    // optionalAttrs (d.header != null) { header = deviceSpec d.header; };

  # In the initrd, each host key sits under /etc/lethe by its own name.
  hostKeyPath = k: "/etc/lethe/${baseNameOf (toString k)}";
  authorizedKeys =
    cfg.ssh.authorizedKeys
    ++ concatMap (f: filter (l: l != "" && !(hasPrefix "#" l)) (splitString "\n" (builtins.readFile f))) cfg.ssh.authorizedKeyFiles;

  rollbackSection =
    let
      r = cfg.rollback;
    in
    if r.zfs != null then
      { zfs = { inherit (r.zfs) dataset snapshot; }; }
    else if r.btrfs != null then
      {
        btrfs = {
          device = deviceSpec r.btrfs.device;
          inherit (r.btrfs) subvolume blank;
        }
        // optionalAttrs r.btrfs.oldRoots.enable {
          oldRoots = { inherit (r.btrfs.oldRoots) path keepDays keepAtLeast; };
        };
      }
    else if r.tmpfs != null then
      { tmpfs = optionalAttrs (r.tmpfs.size != null) { inherit (r.tmpfs) size; } // { inherit (r.tmpfs) mode; }; }
    else
      null;

  # A zfs rollback imports the dataset's pool (in lethe's own PID 1; NixOS's
  # ZFS module does it otherwise).
  rollbackPool = if cfg.rollback.zfs != null then head (splitString "/" cfg.rollback.zfs.dataset) else null;
  pools = cfg.pools.zfs // optionalAttrs (rollbackPool != null && !(cfg.pools.zfs ? ${rollbackPool})) {
    ${rollbackPool} = { };
  };
  poolDefaults = {
    devNodes = "/dev";
    force = false;
    timeout = 30;
  };

  luksModules = optionals (cfg.luks.devices != { }) [
    "dm_mod"
    "dm_crypt"
  ];
  # The ciphers dm-crypt asks the kernel for (request_module): in the initrd,
  # as boot.initrd.luks puts them there.
  cryptoModules = optionals (cfg.luks.devices != { }) (
    [ "cryptd" ]
    ++ config.boot.initrd.luks.cryptoModules or [
      "aes"
      "aes_generic"
      "xts"
      "cbc"
      "sha256"
      "sha512"
    ]
  );

  # Every device lethe must find, with where it is set.
  devicesUsed =
    lib.mapAttrsToList (n: d: {
      at = "boot.initrd.lethe.luks.devices.${n}.device";
      dev = d.device;
    }) cfg.luks.devices
    ++ lib.concatLists (
      lib.mapAttrsToList (
        n: d:
        optional (d.keyFileDevice != null) {
          at = "boot.initrd.lethe.luks.devices.${n}.keyFileDevice";
          dev = d.keyFileDevice;
        }
      ) cfg.luks.devices
    )
    ++ map (f: {
      at = "fileSystems.\"${f.mountPoint}\".device";
      dev = if f.device == null then "" else f.device;
    }) (filter neededForBoot (attrValues fs))
    ++ optional (cfg.rollback.btrfs != null) {
      at = "boot.initrd.lethe.rollback.btrfs.device";
      dev = cfg.rollback.btrfs.device;
    };
  # Links only udev makes, which lethe's own PID 1 (no udev) never sees.
  udevOnly = filter (u: lib.any (k: hasPrefix "/dev/disk/${k}/" u.dev) [
    "by-id"
    "by-path"
    "by-diskseq"
    "by-partlabel"
  ]) devicesUsed;
  badTimeouts = filter (f: timeoutValue f != null && parseTimeout (timeoutValue f) == null) (
    filter neededForBoot (attrValues fs)
  );

  settings = {
    version = 1;
    modules = {
      load = unique (config.boot.initrd.kernelModules ++ luksModules);
      coldplug = true;
    };
    root = rootSection;
  }
  // optionalAttrs (mountsSection != { }) { mounts = mountsSection; }
  // optionalAttrs (cfg.luks.devices != { }) { luks.devices = mapAttrs luksDevice cfg.luks.devices; }
  // optionalAttrs cfg.ssh.enable {
    ssh = {
      inherit (cfg.ssh) port;
      hostKeys = map hostKeyPath cfg.ssh.hostKeys;
      authorizedKeys = authorizedKeys;
    };
  }
  // optionalAttrs (cfg.network.ip != [ ]) {
    network = {
      inherit (cfg.network) ip;
    }
    // optionalAttrs cfg.network.keepUp { keepUp = true; }
    // optionalAttrs (cfg.network.timeout != null) { inherit (cfg.network) timeout; };
  }
  // optionalAttrs (pools != { }) { pools.zfs = mapAttrs (_: p: poolDefaults // p) pools; }
  // optionalAttrs (rollbackSection != null) { rollback = rollbackSection; };

  tool = "${cfg.package}/bin/initrd-tool";

  inherit (utils) escapeSystemdPath;
  # zpool for lethe's own PID 1, as NixOS's ZFS module names it.
  zpool = "${config.boot.zfs.package or pkgs.zfs}/bin/zpool";
  # /etc/hostid as zgenhostid writes it: the hostid's 4 bytes, little-endian.
  hostId = config.networking.hostId or null;
  hostIdBytes = concatMapStringsSep "" (i: "\\x${builtins.substring (6 - 2 * i) 2 hostId}") [
    0
    1
    2
    3
  ];
  # The scripted stage 1's hooks exist only while NixOS has it.
  hasScripted = options.boot.initrd ? extraUtilsCommands;
  # NixOS's pool imports (zfs.nix) that lethe's unlock comes before.
  zfsImports = map (p: "zfs-import-${p}.service") (attrNames pools);
  # The device unit systemd makes for a lethe device name, under udev.
  deviceUnit =
    d:
    let
      path =
        if hasPrefix "UUID=" d then
          "/dev/disk/by-uuid/${removePrefix "UUID=" d}"
        else if hasPrefix "LABEL=" d then
          # The link udev makes, whose path systemd escapes in turn.
          "/dev/disk/by-label/${escapeUdev (removePrefix "LABEL=" d)}"
        else if hasPrefix "PARTUUID=" d then
          "/dev/disk/by-partuuid/${removePrefix "PARTUUID=" d}"
        else
          d;
    in
    "${escapeSystemdPath path}.device";

  oneshot = {
    Type = "oneshot";
    RemainAfterExit = true;
    StandardOutput = "journal+console";
    StandardError = "journal+console";
  };

  # The units of systemd stage 1: each step a oneshot without default
  # dependencies, ordered where the shell equivalents ran.
  units = {
    lethe-unlock = mkIf (cfg.luks.devices != { }) {
      description = "lethe: unlock LUKS devices";
      wantedBy = [ "cryptsetup.target" ];
      before = [ "cryptsetup.target" ] ++ zfsImports;
      after = [
        "systemd-udevd.service"
        "systemd-modules-load.service"
        # Key files and host keys given as boot.initrd.secrets.
        "initrd-nixos-copy-secrets.service"
      ];
      unitConfig.DefaultDependencies = false;
      serviceConfig = oneshot // {
        ExecStart = concatStringsSep " " ([ tool "unlock" "--config" configPath ]);
        # The passphrase prompt goes through systemd's ask-password agents.
        KeyringMode = "shared";
      };
    };
    lethe-rollback = mkIf (rollbackSection != null && cfg.rollback.tmpfs == null) {
      description = "lethe: roll back the root";
      wantedBy = [ "initrd.target" ];
      before = [ "sysroot.mount" ];
      after = [
        "cryptsetup.target"
      ]
      ++ optionals (cfg.rollback.zfs != null) ([ "zfs-import.target" ] ++ zfsImports)
      ++ optional (cfg.rollback.btrfs != null) (deviceUnit (deviceSpec cfg.rollback.btrfs.device));
      requires = optional (cfg.rollback.btrfs != null) (deviceUnit (deviceSpec cfg.rollback.btrfs.device));
      unitConfig.DefaultDependencies = false;
      serviceConfig = oneshot // {
        ExecStart = concatStringsSep " " ([ tool "rollback" "--config" configPath ]);
      };
    };
    lethe-persist-bind = mkIf (config.environment.persistence or { } != { }) {
      description = "lethe: bind-mount the persisted state";
      wantedBy = [ "initrd.target" ];
      after = [ "initrd-fs.target" ];
      # Finished before initrd.target, so initrd-cleanup's isolate never
      # stops it part-way; and before NixOS's activation in any case.
      before = [
        "initrd.target"
        "initrd-nixos-activation.service"
      ];
      unitConfig.DefaultDependencies = false;
      serviceConfig = oneshot // {
        ExecStart = concatStringsSep " " (
          [
            tool
            "persist-bind"
            "--root"
            "/sysroot"
            "--config"
            configPath
          ]
        );
      };
    };
  };

  luksDeviceOptions =
    { name, ... }:
    {
      options = {
        device = mkOption {
          type = types.str;
          example = "/dev/disk/by-uuid/430e9eff-d852-4f68-aa3b-2fa3599ebe08";
          description = "The LUKS device: a path (/dev/disk/by-uuid/... becomes UUID=...), UUID=, LABEL= or PARTUUID=.";
        };
        keyFile = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "/keys/cryptroot.key";
          description = ''
            The key file: a path in the initrd (put it there with
            boot.initrd.secrets), or on `keyFileDevice`'s file system.
            Without it (or when it cannot be read and fallbackToPassword is
            set) the passphrase is asked for.
          '';
        };
        keyFileDevice = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "/dev/disk/by-uuid/1A2B-3C4D";
          description = "The removable device (a USB stick) whose file system holds `keyFile`; mounted read-only for the read.";
        };
        keyFileSize = mkOption {
          type = types.nullOr types.ints.positive;
          default = null;
          description = "Bytes of the key file to use (cryptsetup's --keyfile-size); all of it when null.";
        };
        keyFileOffset = mkOption {
          type = types.nullOr types.ints.unsigned;
          default = null;
          description = "Bytes to skip at the start of the key file (cryptsetup's --keyfile-offset).";
        };
        keyFileTimeout = mkOption {
          type = types.nullOr types.ints.unsigned;
          default = null;
          description = "Seconds to wait for `keyFileDevice` before giving up on the key file.";
        };
        fallbackToPassword = mkOption {
          type = types.bool;
          default = false;
          description = "Ask for the passphrase when the key file is missing or does not open the device.";
        };
        allowDiscards = mkOption {
          type = types.bool;
          default = false;
          description = "Pass TRIM through to the device (a known information leak; faster SSDs).";
        };
        bypassWorkqueues = mkOption {
          type = types.bool;
          default = false;
          description = "dm-crypt's no_read_workqueue and no_write_workqueue (lower latency on fast SSDs).";
        };
        header = mkOption {
          type = types.nullOr types.str;
          default = null;
          description = "A detached LUKS header: a device, or a file in the initrd.";
        };
        tries = mkOption {
          type = types.ints.positive;
          default = 3;
          description = "Passphrase attempts before stage 1 stops with an error (lethe's own; NixOS asks forever).";
        };
      };
    };
in
{
  options.boot.initrd.lethe = {
    enable = mkEnableOption "lethe in stage 1: LUKS unlock, root rollback and persisted state, natively";

    package = mkOption {
      type = types.package;
      default = pkgs.pkgsStatic.callPackage ./package.nix { };
      defaultText = literalExpression "lethe's static package";
      description = "The lethe package; its static initrd-tool goes into the initrd.";
    };

    mode = mkOption {
      type = types.enum [
        "systemd"
        "scripted"
        "init"
      ];
      default = if config.boot.initrd.systemd.enable then "systemd" else "scripted";
      defaultText = literalExpression ''if config.boot.initrd.systemd.enable then "systemd" else "scripted"'';
      description = ''
        How lethe runs in stage 1: "systemd" adds oneshot units to systemd
        stage 1; "scripted" runs from the scripted stage 1's hooks; "init"
        makes `initrd-tool init` the initrd's PID 1 (lethe's own small
        initrd, no shell, no udev).
      '';
    };

    logLevel = mkOption {
      type = types.enum [
        "info"
        "debug"
      ];
      default = "info";
      description = "How much lethe logs to the console and /dev/kmsg (`lethe.log=debug` on the kernel command line too).";
    };

    rollback = {
      zfs = mkOption {
        default = null;
        description = "Roll a ZFS dataset back to a snapshot on every boot (newer snapshots and bookmarks destroyed).";
        type = types.nullOr (
          types.submodule {
            options = {
              dataset = mkOption {
                type = types.str;
                example = "rpool/local/root";
              };
              snapshot = mkOption {
                type = types.str;
                default = "blank";
              };
            };
          }
        );
      };
      btrfs = mkOption {
        default = null;
        description = "Re-create a BTRFS subvolume from a read-only blank snapshot on every boot.";
        type = types.nullOr (
          types.submodule {
            options = {
              device = mkOption {
                type = types.str;
                example = "/dev/mapper/cryptroot";
                description = "The BTRFS file system's device.";
              };
              subvolume = mkOption {
                type = types.str;
                example = "root";
                description = "The root subvolume, relative to the top level.";
              };
              blank = mkOption {
                type = types.str;
                example = "root-blank";
                description = "The read-only snapshot the root is made from.";
              };
              oldRoots = {
                enable = mkOption {
                  type = types.bool;
                  default = false;
                  description = "Keep each old root (under `path`, named by date) instead of deleting it.";
                };
                path = mkOption {
                  type = types.str;
                  default = "old_roots";
                };
                keepDays = mkOption {
                  type = types.ints.unsigned;
                  default = 30;
                };
                keepAtLeast = mkOption {
                  type = types.ints.unsigned;
                  default = 1;
                  description = "Old roots kept whatever their age (the newest ones).";
                };
              };
            };
          }
        );
      };
      tmpfs = mkOption {
        default = null;
        description = "A fresh tmpfs as the root on every boot.";
        type = types.nullOr (
          types.submodule {
            options = {
              size = mkOption {
                type = types.nullOr types.str;
                default = null;
                example = "2G";
              };
              mode = mkOption {
                type = types.str;
                default = "0755";
                description = "The root directory's mode (a 1777 root breaks sshd).";
              };
            };
          }
        );
      };
    };

    pools.zfs = mkOption {
      default = { };
      description = "ZFS pools lethe's own PID 1 imports (the rolled-back dataset's pool is added).";
      type = types.attrsOf (
        types.submodule {
          options = {
            devNodes = mkOption {
              type = types.str;
              default = "/dev";
            };
            force = mkOption {
              type = types.bool;
              default = false;
            };
            timeout = mkOption {
              type = types.ints.unsigned;
              default = 30;
            };
          };
        }
      );
    };

    luks.devices = mkOption {
      default = { };
      type = types.attrsOf (types.submodule luksDeviceOptions);
      description = ''
        LUKS devices lethe opens as /dev/mapper/‹name›, with the names and
        meanings of boot.initrd.luks.devices.‹name›, plus `keyFileDevice`.
      '';
    };

    ssh = {
      enable = mkEnableOption "SSH remote unlock: a passphrase prompt, no shell";
      port = mkOption {
        type = types.port;
        default = 22;
      };
      hostKeys = mkOption {
        type = types.listOf (types.either types.str types.path);
        default = [ ];
        example = [ "/etc/secrets/initrd/ssh_host_ed25519_key" ];
        description = ''
          ed25519 host keys (`initrd-tool ssh keygen -f FILE`), copied into
          the initrd as secrets under /etc/lethe. Give them as strings so
          they stay out of the Nix store.
        '';
      };
      authorizedKeys = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      authorizedKeyFiles = mkOption {
        type = types.listOf types.path;
        default = [ ];
      };
    };

    network = {
      ip = mkOption {
        type = types.listOf types.str;
        default = optionals (cfg.ssh.enable && cfg.mode == "init") [ "dhcp" ];
        defaultText = literalExpression ''[ "dhcp" ] with ssh in init mode, else [ ]'';
        description = "The kernel's ip= values lethe's own PID 1 brings up (ip= on the command line replaces them).";
      };
      keepUp = mkOption {
        type = types.bool;
        default = false;
      };
      timeout = mkOption {
        type = types.nullOr types.ints.positive;
        default = null;
      };
    };

    settings = mkOption {
      type = types.attrsOf types.anything;
      internal = true;
      description = "The JSON config, as the options make it (environment.persistence adds its part).";
    };

    configFile = mkOption {
      type = types.path;
      internal = true;
      readOnly = true;
      description = "The JSON config, checked by `initrd-tool check-config` in the build.";
    };
  };

  config = mkIf cfg.enable (mkMerge [
    {
      boot.initrd.lethe.settings = settings;

      boot.initrd.lethe.configFile =
        pkgs.runCommand "lethe-config.json"
          {
            nativeBuildInputs = [ cfg.package ];
            json = builtins.toJSON cfg.settings;
            passAsFile = [ "json" ];
          }
          ''
            initrd-tool check-config "$jsonPath"
            cp "$jsonPath" "$out"
          '';

      boot.initrd.kernelModules = luksModules;
      boot.initrd.availableKernelModules = cryptoModules;
      boot.kernelParams = optional (cfg.logLevel == "debug") "lethe.log=debug";

      boot.initrd.secrets = lib.listToAttrs (map (k: nameValuePair (hostKeyPath k) (toString k)) cfg.ssh.hostKeys);

      assertions =
        let
          methods = filter (m: cfg.rollback.${m} != null) [
            "zfs"
            "btrfs"
            "tmpfs"
          ];
          both = filter (n: config.boot.initrd.luks.devices or { } ? ${n}) (attrNames cfg.luks.devices);
          keyNames = map (k: baseNameOf (toString k)) cfg.ssh.hostKeys;
        in
        [
          {
            assertion = length methods <= 1;
            message = "boot.initrd.lethe.rollback: set one of zfs, btrfs and tmpfs, not ${concatStringsSep " and " methods}.";
          }
          {
            assertion = rootFs != null;
            message = "boot.initrd.lethe: fileSystems.\"/\" is not set; lethe needs to know the root.";
          }
          {
            assertion = both == [ ];
            message = "boot.initrd.lethe.luks.devices and boot.initrd.luks.devices both open ${concatStringsSep ", " both}; keep it in one of them.";
          }
          {
            assertion = cfg.rollback.tmpfs == null || rootFs == null || rootFs.fsType == "tmpfs";
            message = "boot.initrd.lethe.rollback.tmpfs makes the root a tmpfs, but fileSystems.\"/\".fsType is \"${rootFs.fsType or ""}\".";
          }
          {
            assertion = (cfg.mode == "systemd") == config.boot.initrd.systemd.enable;
            message =
              if cfg.mode == "systemd" then
                "boot.initrd.lethe.mode = \"systemd\" needs boot.initrd.systemd.enable = true."
              else
                "boot.initrd.lethe.mode = \"${cfg.mode}\" needs boot.initrd.systemd.enable = false.";
          }
          {
            assertion = !cfg.ssh.enable || (cfg.ssh.hostKeys != [ ] && authorizedKeys != [ ]);
            message = "boot.initrd.lethe.ssh: set hostKeys (make one with `initrd-tool ssh keygen -f FILE`) and authorizedKeys.";
          }
          {
            assertion = !cfg.ssh.enable || cfg.luks.devices != { };
            message = "boot.initrd.lethe.ssh asks for LUKS passphrases, but boot.initrd.lethe.luks.devices is empty.";
          }
          {
            assertion = cfg.mode != "init" || udevOnly == [ ];
            message = "boot.initrd.lethe.mode = \"init\" has no udev, so these links never appear: ${
              concatMapStringsSep ", " (u: "${u.at} = ${u.dev}") udevOnly
            }; use /dev/disk/by-uuid, by-label or by-partuuid (or UUID=, LABEL=, PARTUUID=).";
          }
          {
            assertion = badTimeouts == [ ];
            message = "x-systemd.device-timeout= on ${
              concatMapStringsSep ", " (f: "fileSystems.\"${f.mountPoint}\" (${timeoutValue f})") badTimeouts
            }: lethe reads N, Ns or Nmin.";
          }
          {
            assertion = cfg.mode != "scripted" || hasScripted;
            message = "boot.initrd.lethe.mode = \"scripted\": this NixOS has no scripted stage 1; use \"systemd\" or \"init\".";
          }
          {
            assertion = !cfg.ssh.enable || cfg.mode == "init" || config.boot.initrd.network.enable or false;
            message = "boot.initrd.lethe.ssh needs the initrd network: boot.initrd.network.enable = true.";
          }
          {
            assertion =
              !(
                cfg.ssh.enable
                && config.boot.initrd.network.ssh.enable or false
                && config.boot.initrd.network.ssh.port or null == cfg.ssh.port
              );
            message = "boot.initrd.lethe.ssh and boot.initrd.network.ssh both listen on port ${toString cfg.ssh.port}; give one another port.";
          }
          {
            assertion = unique keyNames == keyNames;
            message = "boot.initrd.lethe.ssh.hostKeys: two keys have the same file name; each goes to /etc/lethe/<name>.";
          }
        ];
    }

    (mkIf (cfg.mode == "systemd") {
      # What boot.initrd.luks brings with its devices: cryptsetup.target and
      # its kin among the initrd's units, and device-mapper's udev rules
      # (boot.initrd.services.lvm), without which /dev/mapper/NAME never
      # becomes a device unit.
    })
    (optionalAttrs (options.boot.initrd ? luks) (mkIf (cfg.mode == "systemd" && cfg.luks.devices != { }) {
      boot.initrd.luks.forceLuksSupportInInitrd = true;
    }))
    (mkIf (cfg.mode == "systemd") {
      boot.initrd.systemd.storePaths = [ tool ];
      boot.initrd.systemd.contents.${configPath}.source = cfg.configFile;
      boot.initrd.systemd.services = units;
    })

    (optionalAttrs hasScripted (mkIf (cfg.mode == "scripted") {
      boot.initrd.extraUtilsCommands = ''
        copy_bin_and_libs ${tool}
      '';
      boot.initrd.extraFiles.${configPath}.source = cfg.configFile;
      boot.initrd.preLVMCommands = mkIf (cfg.luks.devices != { }) ''
        initrd-tool unlock --config ${configPath}
      '';
      # After NixOS's pool import (also in postResumeCommands), before the root is mounted.
      boot.initrd.postResumeCommands = mkIf (rollbackSection != null && cfg.rollback.tmpfs == null) (mkAfter ''
        initrd-tool rollback --config ${configPath} || echo "lethe: rollback failed; booting the old root"
      '');
      boot.initrd.postMountCommands = mkIf (config.environment.persistence or { } != { }) (mkAfter ''
        initrd-tool persist-bind --root ${scriptedRoot} --config ${configPath}
      '');
    }))

    # SSH unlock under NixOS's stage 1 uses NixOS's initrd network.
    (optionalAttrs (options.boot.initrd ? network) (mkIf (cfg.ssh.enable && cfg.mode != "init") {
      boot.initrd.network.enable = lib.mkDefault true;
    }))

    (mkIf (cfg.mode == "init") {
      # lethe's own initrd: initrd-tool as /init, the config, the modules it
      # names; NixOS appends boot.initrd.secrets at install time as usual.
      system.build.initialRamdisk = mkForce (
        pkgs.runCommand "lethe-initrd"
          {
            nativeBuildInputs = [ cfg.package ] ++ optional (pools != { }) pkgs.glibc.bin;
            # The same module closure (and firmware) NixOS's own initrd gets.
            modules = pkgs.makeModulesClosure {
              rootModules = config.boot.initrd.availableKernelModules ++ config.boot.initrd.kernelModules;
              kernel = config.system.modulesTree;
              firmware = config.hardware.firmware;
              allowMissing = false;
              inherit (config.boot.initrd) extraFirmwarePaths;
            };
          }
          ''
            mkdir -p $out
            files=()
            # Firmware the kernel loads itself from /lib/firmware.
            if [ -d $modules/lib/firmware ]; then
              for f in $(cd $modules/lib/firmware && find . -type f -o -type l); do
                files+=(--file "$modules/lib/firmware/''${f#./}:/lib/firmware/''${f#./}")
              done
            fi
            ${optionalString (pools != { }) ''
              # zpool imports the pools: it and the libraries it loads.
              files+=(--file ${zpool}:/sbin/zpool)
              for l in $(ldd ${zpool} | grep -o '/nix/store/[^ ]*'); do
                files+=(--file "$l:$l")
              done
              ${optionalString (hostId != null) ''
                # The pools were last imported under this hostid (zgenhostid's bytes).
                printf '${hostIdBytes}' > hostid
                files+=(--file "$PWD/hostid:/etc/hostid")
              ''}
            ''}
            initrd-tool mkinitrd \
              --config ${cfg.configFile} \
              --kernel-modules "$(echo $modules/lib/modules/*)" \
              ${concatMapStringsSep " " (m: "--add-module ${m}") config.boot.initrd.availableKernelModules} \
              ${concatMapStringsSep " " (k: "--secret ${hostKeyPath k}") cfg.ssh.hostKeys} \
              "''${files[@]}" \
              --binary ${tool} \
              --out initrd
            # Early cpio archives (CPU microcode) go first, as in NixOS's own initrd.
            cat ${concatStringsSep " " config.boot.initrd.prepend} initrd > $out/initrd
          ''
      );
    })
  ]);
}
