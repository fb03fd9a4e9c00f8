# Evaluation tests of boot.initrd.lethe beyond the config: the systemd stage 1
# units and their order, the scripted stage 1 hooks, device names, secrets,
# defaults. Returns the failures (lib.runTests); [] is a pass.
{ nixpkgs }:
let
  nixos = import ./nixos.nix { inherit nixpkgs; };
  inherit (nixos) lib;
  eval = machine: (nixos.eval [ machine ]).config;

  tool = "/nix/store/00000000000000000000000000000000-lethe/bin/initrd-tool";

  # A BTRFS-on-LUKS machine with persisted state, in the given stage 1.
  laptop =
    systemd:
    eval {
      boot.initrd.systemd.enable = systemd;
      boot.initrd.lethe = {
        enable = true;
        luks.devices.cryptroot.device = "/dev/disk/by-uuid/0f7c1e2a-1111-2222-3333-444455556666";
        rollback.btrfs = {
          device = "/dev/disk/by-label/nixos";
          subvolume = "root";
          blank = "root-blank";
        };
      };
      fileSystems."/" = {
        device = "/dev/disk/by-label/nixos";
        fsType = "btrfs";
        options = [ "subvol=root" ];
      };
      fileSystems."/persist" = {
        device = "/dev/disk/by-label/nixos";
        fsType = "btrfs";
        options = [
          "subvol=persist"
          "x-systemd.device-timeout=10s"
        ];
        neededForBoot = true;
      };
      environment.persistence."/persist".directories = [ "/var/log" ];
    };
  systemd = laptop true;
  scripted = laptop false;
  units = systemd.boot.initrd.systemd.services;
  hasLine = line: text: lib.elem line (lib.splitString "\n" text);
  sdUnits = systemd.boot.initrd.systemd.units;
  # The NixOS modules without the scripted stage 1's hooks (NixOS after its removal).
  noScripted = import ./nixos.nix {
    inherit nixpkgs;
    scripted = false;
  };
  sshMachine = extra: eval (lib.recursiveUpdate {
    boot.initrd.systemd.enable = true;
    boot.initrd.lethe = {
      enable = true;
      luks.devices.cryptroot.device = "/dev/vda2";
      ssh = {
        enable = true;
        hostKeys = [ ./machines/common/system.nix ];
        authorizedKeys = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb0Jx3tVgYt5Y2m4yQj0y9f3S1Q2Q2Q2Q2Q2Q2Q2Q2Q test" ];
      };
    };
    fileSystems."/" = {
      device = "/dev/mapper/cryptroot";
      fsType = "ext4";
    };
  } extra);
  failed = nixos.failedAssertions;
in
lib.runTests {
  # With its LUKS devices only in lethe's module, NixOS's own units still have
  # cryptsetup.target (which lethe-unlock is wanted by) and device-mapper's
  # udev rules (without which /dev/mapper/NAME is never a device unit).
  testLuksUnderSystemdKeepsCryptsetupTargetAndDeviceMapperRules = {
    expr = {
      targets = lib.filter (u: lib.elem u systemd.boot.initrd.systemd.additionalUpstreamUnits) [
        "cryptsetup-pre.target"
        "cryptsetup.target"
      ];
      lvm = systemd.boot.initrd.services.lvm.enable;
      # NixOS's own crypttab stays empty: lethe opens the devices.
      devices = systemd.boot.initrd.luks.devices;
    };
    expected = {
      targets = [
        "cryptsetup-pre.target"
        "cryptsetup.target"
      ];
      lvm = true;
      devices = { };
    };
  };
  # Key files and host keys given as boot.initrd.secrets are in place first.
  testUnlockRunsAfterTheSecretsAreCopied = {
    expr = lib.elem "initrd-nixos-copy-secrets.service" units.lethe-unlock.after;
    expected = true;
  };
  # The rendered unit (NixOS's systemd-lib) says what the options say.
  testPersistBindUnitTextOrdersBeforeInitrdTarget = {
    expr = hasLine "Before=initrd.target initrd-nixos-activation.service" sdUnits."lethe-persist-bind.service".text;
    expected = true;
  };
  # A NixOS without the scripted stage 1 still evaluates lethe's modules.
  testEvaluatesWithoutScriptedStage1 = {
    expr =
      let
        c =
          (noScripted.eval [
            {
              boot.initrd.systemd.enable = true;
              boot.initrd.lethe.enable = true;
              boot.initrd.lethe.rollback.tmpfs = { };
              fileSystems."/" = {
                device = "none";
                fsType = "tmpfs";
              };
            }
          ]).config;
      in
      [
        (lib.attrNames (lib.filterAttrs (n: _: lib.hasPrefix "lethe" n) c.boot.initrd.systemd.services))
        (failed c)
      ];
    expected = [
      [ ]
      [ ]
    ];
  };
  testScriptedModeRefusedWithoutScriptedStage1 = {
    expr =
      lib.any (lib.hasInfix "this NixOS has no scripted stage 1") (failed
        (noScripted.eval [
          {
            boot.initrd.lethe.enable = true;
            boot.initrd.lethe.mode = "scripted";
            fileSystems."/".device = "/dev/vda1";
          }
        ]).config);
    expected = true;
  };
  # SSH unlock under NixOS's stage 1 brings up NixOS's initrd network.
  testSshUnlockEnablesTheInitrdNetwork = {
    expr = (sshMachine { }).boot.initrd.network.enable;
    expected = true;
  };
  testSshUnlockWithoutNetworkRefused = {
    expr = lib.any (lib.hasInfix "needs the initrd network") (failed (sshMachine {
      boot.initrd.network.enable = false;
    }));
    expected = true;
  };
  testSshPortClashWithInitrdSshRefused = {
    # Under the scripted stage 1: the stored initrd-ssh.nix, under systemd
    # stage 1, reads a test key the source tree here does not have.
    expr = lib.any (lib.hasInfix "both listen on port 22") (failed (sshMachine {
      boot.initrd.systemd.enable = false;
      boot.initrd.network.ssh = {
        enable = true;
        hostKeys = [ ./machines/common/system.nix ];
      };
    }));
    expected = true;
  };
  # Device units named as systemd and udev name them (\x20 in a label is escaped again).
  testRollbackDeviceUnitIsSystemdsEscaping = {
    expr =
      (eval {
        boot.initrd.systemd.enable = true;
        boot.initrd.lethe = {
          enable = true;
          rollback.btrfs = {
            device = "/dev/disk/by-label/my\\x20disk";
            subvolume = "root";
            blank = "root-blank";
          };
        };
        fileSystems."/" = {
          device = "/dev/disk/by-label/my\\x20disk";
          fsType = "btrfs";
        };
      }).boot.initrd.systemd.services.lethe-rollback.requires;
    expected = [ "dev-disk-by\\x2dlabel-my\\x5cx20disk.device" ];
  };
  # lethe's own PID 1 with ZFS: zpool with its libraries and /etc/hostid in
  # the image; microcode archives first; the firmware NixOS would ship.
  testInitModeImageHasZpoolHostidAndMicrocode =
    let
      c = eval {
        boot.initrd.lethe = {
          enable = true;
          mode = "init";
          rollback.zfs.dataset = "rpool/local/root";
        };
        networking.hostId = "8425e349";
        boot.initrd.prepend = [ "/nix/store/11111111111111111111111111111111-intel-ucode/intel-ucode.img" ];
        boot.initrd.extraFirmwarePaths = [ "rtl_nic/rtl8168h-2.fw" ];
        fileSystems."/" = {
          device = "rpool/local/root";
          fsType = "zfs";
        };
      };
      script = c.system.build.initialRamdisk.script;
      zpool = "${nixos.pkgs.zfs}/bin/zpool";
    in
    {
      expr = {
        zpool = lib.hasInfix "--file ${zpool}:/sbin/zpool" script;
        libraries = lib.hasInfix "ldd ${zpool}" script;
        hostid = lib.hasInfix "printf '\\x49\\xe3\\x25\\x84' > hostid" script;
        microcode = lib.hasInfix "cat /nix/store/11111111111111111111111111111111-intel-ucode/intel-ucode.img initrd > $out/initrd" script;
        firmware = lib.hasInfix "/lib/firmware" script;
      };
      expected = {
        zpool = true;
        libraries = true;
        hostid = true;
        microcode = true;
        firmware = true;
      };
    };
  # x-systemd.device-timeout=090 is 90 seconds, as systemd reads it.
  testZeroPaddedDeviceTimeout = {
    expr =
      (eval {
        boot.initrd.lethe.enable = true;
        fileSystems."/".device = "/dev/vda1";
        fileSystems."/persist" = {
          device = "/dev/vda2";
          neededForBoot = true;
          options = [ "x-systemd.device-timeout=090" ];
        };
      }).boot.initrd.lethe.settings.mounts."/persist".timeout;
    expected = 90;
  };
  testModeFollowsSystemdStage1 = {
    expr = [
      systemd.boot.initrd.lethe.mode
      scripted.boot.initrd.lethe.mode
    ];
    expected = [
      "systemd"
      "scripted"
    ];
  };

  # Each step a oneshot without default dependencies, where the shell equivalents ran.
  testUnlockRunsBeforeCryptsetupTarget = {
    expr = {
      inherit (units.lethe-unlock) before wantedBy;
      inherit (units.lethe-unlock.unitConfig) DefaultDependencies;
      inherit (units.lethe-unlock.serviceConfig) Type ExecStart;
    };
    expected = {
      before = [ "cryptsetup.target" ];
      wantedBy = [ "cryptsetup.target" ];
      DefaultDependencies = false;
      Type = "oneshot";
      ExecStart = "${tool} unlock --config /etc/lethe/config.json";
    };
  };
  testRollbackRunsAfterTheDeviceAndBeforeSysroot = {
    expr = {
      inherit (units.lethe-rollback) before after requires;
      inherit (units.lethe-rollback.unitConfig) DefaultDependencies;
      inherit (units.lethe-rollback.serviceConfig) ExecStart;
    };
    expected = {
      before = [ "sysroot.mount" ];
      after = [
        "cryptsetup.target"
        "dev-disk-by\\x2dlabel-nixos.device"
      ];
      requires = [ "dev-disk-by\\x2dlabel-nixos.device" ];
      DefaultDependencies = false;
      ExecStart = "${tool} rollback --config /etc/lethe/config.json";
    };
  };
  # Finished before initrd.target: initrd-cleanup's isolate would stop it part-way.
  testPersistBindFinishesBeforeInitrdTarget = {
    expr = {
      inherit (units.lethe-persist-bind) after before;
      inherit (units.lethe-persist-bind.serviceConfig) ExecStart;
    };
    expected = {
      after = [ "initrd-fs.target" ];
      before = [
        "initrd.target"
        "initrd-nixos-activation.service"
      ];
      ExecStart = "${tool} persist-bind --root /sysroot --config /etc/lethe/config.json";
    };
  };
  testTheBinaryIsInSystemdStage1 = {
    expr = lib.elem tool (map (p: p.source) systemd.boot.initrd.systemd.storePaths);
    expected = true;
  };
  testScriptedStage1HasNoUnits = {
    expr = lib.filterAttrs (n: _: lib.hasPrefix "lethe" n) scripted.boot.initrd.systemd.services;
    expected = { };
  };

  # Scripted stage 1: unlock before LVM, rollback after the pool import, persist-bind on /mnt-root.
  testScriptedHooks = {
    expr = [
      (hasLine "initrd-tool unlock --config /etc/lethe/config.json" scripted.boot.initrd.preLVMCommands)
      (lib.hasInfix "initrd-tool rollback --config /etc/lethe/config.json" scripted.boot.initrd.postResumeCommands)
      (hasLine "initrd-tool persist-bind --root /mnt-root --config /etc/lethe/config.json" scripted.boot.initrd.postMountCommands)
      (lib.hasInfix "copy_bin_and_libs ${tool}" scripted.boot.initrd.extraUtilsCommands)
    ];
    expected = [
      true
      true
      true
      true
    ];
  };

  # /dev/disk/by-* (udev's) becomes the kernel's names, which lethe probes itself.
  testDeviceNamesAndMountOptions = {
    expr = {
      luks = systemd.boot.initrd.lethe.settings.luks.devices.cryptroot.device;
      inherit (systemd.boot.initrd.lethe.settings.mounts) "/persist";
    };
    expected = {
      luks = "UUID=0f7c1e2a-1111-2222-3333-444455556666";
      "/persist" = {
        fsType = "btrfs";
        device = "LABEL=nixos";
        options = [ "subvol=persist" ];
        timeout = 10;
      };
    };
  };

  testDeviceTimeoutsInSecondsOrMinutes = {
    expr =
      map
        (
          t:
          (eval {
            boot.initrd.lethe.enable = true;
            fileSystems."/" = {
              device = "/dev/vda1";
              options = [ "x-systemd.device-timeout=${t}" ];
            };
          }).boot.initrd.lethe.settings.root.timeout
        )
        [
          "7"
          "7s"
          "7sec"
          "2min"
        ];
    expected = [
      7
      7
      7
      120
    ];
  };

  # dm-crypt asks the kernel for its cipher modules: they must be in the initrd.
  testLuksPutsTheCipherModulesInTheInitrd = {
    expr = lib.all (m: lib.elem m systemd.boot.initrd.availableKernelModules) [
      "cryptd"
      "aes"
      "xts"
    ];
    expected = true;
  };

  testLuksLoadsDeviceMapper = {
    expr = lib.all (m: lib.elem m systemd.boot.initrd.kernelModules) [
      "dm_mod"
      "dm_crypt"
    ];
    expected = true;
  };

  testHostKeysBecomeSecrets = {
    expr =
      let
        c = eval {
          boot.initrd.lethe = {
            enable = true;
            mode = "init";
            luks.devices.cryptroot.device = "/dev/vda2";
            ssh = {
              enable = true;
              hostKeys = [ "/etc/secrets/initrd/ssh_host_ed25519_key" ];
              authorizedKeys = [ "ssh-ed25519 AAAA test" ];
            };
          };
          fileSystems."/".device = "/dev/mapper/cryptroot";
        };
      in
      {
        inherit (c.boot.initrd) secrets;
        inherit (c.boot.initrd.lethe.settings) network;
        inherit (c.boot.initrd.lethe.settings.ssh) hostKeys;
      };
    expected = {
      secrets."/etc/lethe/ssh_host_ed25519_key" = "/etc/secrets/initrd/ssh_host_ed25519_key";
      network.ip = [ "dhcp" ];
      hostKeys = [ "/etc/lethe/ssh_host_ed25519_key" ];
    };
  };

  testDebugLogLevelGoesOnTheCommandLine = {
    expr =
      (eval {
        boot.initrd.lethe = {
          enable = true;
          logLevel = "debug";
        };
        fileSystems."/".device = "/dev/vda1";
      }).boot.kernelParams;
    expected = [ "lethe.log=debug" ];
  };

  testATmpfsRootKeepsItsSizeAndMode = {
    expr =
      (eval {
        boot.initrd.lethe.enable = true;
        fileSystems."/" = {
          device = "none";
          fsType = "tmpfs";
          options = [
            "defaults"
            "size=25%"
            "mode=755"
          ];
        };
      }).boot.initrd.lethe.settings.root;
    expected = {
      fsType = "tmpfs";
      size = "25%";
      mode = "0755";
    };
  };

  testDisabledChangesNothing = {
    expr =
      let
        c = eval { fileSystems."/".device = "/dev/vda1"; };
      in
      [
        (lib.filterAttrs (n: _: lib.hasPrefix "lethe" n) c.boot.initrd.systemd.services)
        c.boot.initrd.kernelModules
        (map (a: a.message) (lib.filter (a: !a.assertion) c.assertions))
      ];
    expected = [
      { }
      [ ]
      [ ]
    ];
  };
}
