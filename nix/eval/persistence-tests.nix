# Evaluation tests of environment.persistence: impermanence's README example
# gives the JSON persist-bind reads, with impermanence's defaults; users'
# entries, disabled storages, the machine-id workaround, the warning.
# Returns the failures (lib.runTests); [] is a pass.
{ nixpkgs }:
let
  nixos = import ./nixos.nix { inherit nixpkgs; };
  inherit (nixos) lib;
  eval =
    machine:
    (nixos.eval [
      {
          boot.initrd.lethe.enable = true;
          fileSystems."/".device = "/dev/vda1";
          fileSystems."/persistent" = {
            device = "/dev/vda2";
            neededForBoot = true;
          };
        }
      machine
    ]).config;

  # impermanence's README example, as a user has it.
  readme = eval {
    environment.persistence."/persistent" = {
      enable = true;
      hideMounts = true;
      directories = [
        "/var/log"
        "/var/lib/bluetooth"
        "/var/lib/nixos"
        "/var/lib/systemd/coredump"
        "/etc/NetworkManager/system-connections"
        {
          directory = "/var/lib/colord";
          user = "colord";
          group = "colord";
          mode = "u=rwx,g=rx,o=";
        }
      ];
      files = [
        "/etc/machine-id"
        {
          file = "/var/keys/secret_file";
          parentDirectory = {
            mode = "u=rwx,g=,o=";
          };
        }
      ];
      users.talyz = {
        directories = [
          "Downloads"
          "Music"
          {
            directory = ".gnupg";
            mode = "0700";
          }
          {
            directory = ".local/share/keyrings";
            mode = "0700";
          }
        ];
        files = [ ".screenrc" ];
      };
    };
    users.users.talyz = {
      isNormalUser = true;
      uid = 1000;
    };
    users.users.colord.uid = 997;
    users.groups.users.gid = 100;
    users.groups.colord.gid = 997;
  };
  failed = c: map (a: a.message) (lib.filter (a: !a.assertion) c.assertions);
in
lib.runTests {
  testReadmeExampleEvaluates = {
    expr = failed readme;
    expected = [ ];
  };

  # Defaults are left out, so the JSON reads like the user's config.
  testReadmeExampleGivesPersistBindsConfig = {
    expr = {
      inherit (readme.boot.initrd.lethe.settings) persistence uids gids;
    };
    expected = {
      persistence."/persistent" = {
        hideMounts = true;
        directories = [
          "/var/log"
          "/var/lib/bluetooth"
          "/var/lib/nixos"
          "/var/lib/systemd/coredump"
          "/etc/NetworkManager/system-connections"
          {
            directory = "/var/lib/colord";
            user = "colord";
            group = "colord";
            mode = "u=rwx,g=rx,o=";
          }
        ];
        files = [
          "/etc/machine-id"
          {
            file = "/var/keys/secret_file";
            parentDirectory.mode = "u=rwx,g=,o=";
          }
        ];
        users.talyz = {
          home = "/home/talyz";
          group = "users";
          directories = [
            "Downloads"
            "Music"
            {
              directory = ".gnupg";
              mode = "0700";
            }
            {
              directory = ".local/share/keyrings";
              mode = "0700";
            }
          ];
          files = [ ".screenrc" ];
        };
      };
      # NixOS always declares root.
      uids = {
        root = 0;
        talyz = 1000;
        colord = 997;
      };
      gids = {
        root = 0;
        users = 100;
        colord = 997;
      };
    };
  };

  # impermanence's defaults: root:root 0755 for the system, the user and
  # their primary group in a home; entries take the storage's hideMounts.
  testEntryDefaultsAreImpermanences = {
    expr =
      let
        p = readme.environment.persistence."/persistent";
        d = builtins.head p.directories;
        u = builtins.head p.users.talyz.directories;
      in
      [
        d.user
        d.group
        d.mode
        d.hideMount
        d.persistentStoragePath
        u.user
        u.group
        u.mode
      ];
    expected = [
      "root"
      "root"
      "0755"
      true
      "/persistent"
      "talyz"
      "users"
      "0755"
    ];
  };

  # An entry that differs from its storage says so, and nothing else.
  testAnEntryKeepsOnlyWhatDiffers = {
    expr =
      (eval {
        environment.persistence."/persistent" = {
          directories = [
            {
              directory = "/srv";
              hideMount = true;
              persistentStoragePath = "/persistent/other";
            }
          ];
          files = [
            {
              file = "/etc/resolv.conf";
              method = "symlink";
            }
          ];
        };
      }).boot.initrd.lethe.settings.persistence;
    expected."/persistent" = {
      directories = [
        {
          directory = "/srv";
          hideMount = true;
          persistentStoragePath = "/persistent/other";
        }
      ];
      files = [
        {
          file = "/etc/resolv.conf";
          method = "symlink";
        }
      ];
    };
  };

  testADisabledStorageIsLeftOut = {
    expr =
      (eval {
        environment.persistence."/persistent".directories = [ "/var/log" ];
        environment.persistence."/old" = {
          enable = false;
          directories = [ "/var/log" ];
        };
      }).boot.initrd.lethe.settings.persistence;
    expected."/persistent".directories = [ "/var/log" ];
  };

  # A bind-mounted /etc/machine-id cannot be committed: impermanence's workaround.
  testAPersistedMachineIdKeepsMachineIdCommitToFirstBoot = {
    expr = {
      inherit (readme.boot.initrd.systemd) suppressedUnits;
      condition = readme.systemd.services.systemd-machine-id-commit.unitConfig.ConditionFirstBoot;
    };
    expected = {
      suppressedUnits = [ "systemd-machine-id-commit.service" ];
      condition = true;
    };
  };

  testUsersWithoutIdsAreWarnedAboutWhenVarLibNixosIsNotKept = {
    expr =
      let
        c = eval {
          environment.persistence."/persistent".directories = [ "/var/log" ];
          users.users.bob.isNormalUser = true;
        };
      in
      map (lib.hasInfix "/var/lib/nixos is not persisted") c.warnings;
    expected = [ true ];
  };

  testNoWarningWhenVarLibNixosIsKept = {
    expr =
      (eval {
        environment.persistence."/persistent".directories = [ "/var/lib/nixos" ];
        users.users.bob.isNormalUser = true;
      }).warnings;
    expected = [ ];
  };
}
