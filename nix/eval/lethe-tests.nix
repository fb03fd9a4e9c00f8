# Evaluation tests of boot.initrd.lethe beyond the config: the systemd stage 1
# units and their order, the scripted stage 1 hooks, device names, secrets,
# defaults. Returns the failures (lib.runTests); [] is a pass.
{ lib }:
let
  eval =
    machine:
    (lib.evalModules {
      modules = import ./modules.nix ++ [ machine ];
    }).config;

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
in
lib.runTests {
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

  # Each step a oneshot without default dependencies, where DESIGN.md puts it.
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
  testPersistBindRunsBetweenInitrdFsAndActivation = {
    expr = {
      inherit (units.lethe-persist-bind) after before;
      inherit (units.lethe-persist-bind.serviceConfig) ExecStart;
    };
    expected = {
      after = [ "initrd-fs.target" ];
      before = [ "initrd-nixos-activation.service" ];
      ExecStart = "${tool} persist-bind --root /sysroot --config /etc/lethe/config.json";
    };
  };
  testTheBinaryIsInSystemdStage1 = {
    expr = systemd.boot.initrd.systemd.storePaths;
    expected = [ tool ];
  };
  testScriptedStage1HasNoUnits = {
    expr = scripted.boot.initrd.systemd.services;
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
        c.boot.initrd.systemd.services
        c.boot.initrd.kernelModules
        c.assertions
      ];
    expected = [
      { }
      [ ]
      [ ]
    ];
  };
}
