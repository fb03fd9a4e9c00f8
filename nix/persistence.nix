# environment.persistence with impermanence's option schema, applied by
# lethe's persist-bind in stage 1 (before stage 2 starts) instead of
# impermanence's units, mounts and activation scripts.
{ config, lib, ... }:
let
  inherit (lib)
    mkOption
    mkIf
    mkMerge
    types
    filter
    filterAttrs
    mapAttrs
    attrValues
    attrNames
    concatMap
    concatStringsSep
    hasPrefix
    splitString
    unique
    optionalAttrs
    elem
    any
    mkRemovedOptionModule
    ;

  cfg = config.environment.persistence;
  users = config.users.users;

  # `a` and `b` joined with one slash, whatever slashes they bring.
  join =
    a: b:
    let
      parts = filter (p: p != "" && p != ".") (splitString "/" "${a}/${b}");
    in
    "/" + concatStringsSep "/" parts;
  # Every proper parent of an absolute path, outermost first: /a/b/c -> [ /a /a/b ].
  parentsOf =
    p:
    let
      parts = filter (x: x != "") (splitString "/" p);
      n = builtins.length parts;
    in
    builtins.genList (i: "/" + concatStringsSep "/" (lib.take (i + 1) parts)) (lib.max 0 (n - 1));
  hasDotDot = p: elem ".." (splitString "/" p);

  # mkRemovedOptionModule reports through the enclosing submodule's
  # `assertions`, which are gathered into the system's below.
  assertionsOption = {
    assertions = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
      internal = true;
    };
  };

  # Owner and mode of an entry (impermanence's user, group, mode), with the
  # defaults of where it lives: root's for the system, the user's in a home.
  permOptions = owner: {
    user = mkOption {
      type = types.str;
      default = owner.user;
      description = "Owner of the directory when lethe creates it on the persistent side.";
    };
    group = mkOption {
      type = types.nullOr types.str;
      default = owner.group;
      description = "Group of the directory when lethe creates it (null: the user's primary group).";
    };
    mode = mkOption {
      type = types.str;
      default = "0755";
      example = "0700";
      description = "Mode of the directory when lethe creates it (octal or u=rwx,g=rx,o= form).";
    };
  };

  dirType =
    storage: owner:
    types.submodule {
      imports = [
        (mkRemovedOptionModule [ "method" ] ''
          environment.persistence: directories are bind mounts; the `method` of a directory is gone (as in impermanence).
        '')
      ];
      options = permOptions owner // assertionsOption // {
        directory = mkOption {
          type = types.str;
          description = "The directory's path (relative to the home in users.<name>).";
        };
        hideMount = mkOption {
          type = types.bool;
          default = storage.hideMounts;
          description = "Hide the bind mount from file managers (x-gvfs-hide).";
        };
        allowTrash = mkOption {
          type = types.bool;
          default = storage.allowTrash;
          description = "Let GIO applications trash files in it (x-gvfs-trash).";
        };
        persistentStoragePath = mkOption {
          type = types.str;
          default = storage.persistentStoragePath;
          description = "Where the real directory lives.";
        };
      };
    };

  fileType =
    storage: owner:
    types.submodule {
      options = {
        file = mkOption {
          type = types.str;
          description = "The file's path (relative to the home in users.<name>).";
        };
        parentDirectory = permOptions owner;
        method = mkOption {
          type = types.enum [
            "auto"
            "symlink"
          ];
          default = "auto";
          description = "auto: a bind mount when the persistent file exists, else a symlink; symlink: always a symlink.";
        };
        persistentStoragePath = mkOption {
          type = types.str;
          default = storage.persistentStoragePath;
          description = "Where the real file lives.";
        };
      };
    };

  entryLists = storage: owner: {
    directories = mkOption {
      type = types.listOf (types.coercedTo types.str (d: { directory = d; }) (dirType storage owner));
      default = [ ];
      example = [
        "/var/log"
        "/var/lib/nixos"
      ];
      description = "Directories bind-mounted from persistent storage.";
    };
    files = mkOption {
      type = types.listOf (types.coercedTo types.str (f: { file = f; }) (fileType storage owner));
      default = [ ];
      example = [ "/etc/machine-id" ];
      description = "Files bind-mounted (or linked) from persistent storage.";
    };
  };

  storageType = types.submodule (
    { name, config, ... }:
    let
      storage = config;
    in
    {
      imports = [
        (mkRemovedOptionModule [ "allowOther" ] "environment.persistence: bind mounts need no allowOther (as in impermanence).")
        (mkRemovedOptionModule [ "removePrefixDirectory" ] "environment.persistence: prefix directories are gone (as in impermanence).")
        (mkRemovedOptionModule [ "defaultDirectoryMethod" ] "environment.persistence: directories are always bind mounts (as in impermanence).")
      ];
      options = entryLists storage {
        user = "root";
        group = "root";
      }
      // assertionsOption
      // {
        enable = mkOption {
          type = types.bool;
          default = true;
          description = "Whether to use this persistent storage location.";
        };
        persistentStoragePath = mkOption {
          type = types.str;
          default = name;
          description = "The persistent storage's path (the attribute name by default).";
        };
        hideMounts = mkOption {
          type = types.bool;
          default = false;
          description = "Hide every bind mount of this storage from file managers.";
        };
        allowTrash = mkOption {
          type = types.bool;
          default = false;
          description = "Let GIO applications trash files in this storage's directories.";
        };
        enableDebugging = mkOption {
          type = types.bool;
          default = false;
          internal = true;
          description = "Accepted for impermanence compatibility; lethe logs with lethe.log=debug.";
        };
        enableWarnings = mkOption {
          type = types.bool;
          default = true;
          description = "Warn about users and groups without fixed ids when /var/lib/nixos is not persisted.";
        };
        users = mkOption {
          default = { };
          description = "Per-user entries, relative to each user's home directory.";
          type = types.attrsOf (
            types.submodule (
              { name, ... }:
              {
                imports = [
                  (mkRemovedOptionModule [ "home" ] "environment.persistence: the home comes from users.users.<name>.home (as in impermanence).")
                ];
                options =
                  entryLists storage {
                    user = name;
                    group = users.${name}.group or null;
                  }
                  // assertionsOption;
              }
            )
          );
        };
      };
    }
  );

  enabled = filterAttrs (_: s: s.enable) cfg;

  # Every entry as the absolute path it lands on, with its storage.
  homeOf = name: users.${name}.home or "/home/${name}";
  listOf = kind: if kind == "directory" then "directories" else "files";
  systemEntries = s: kind: map (e: e // { path = e.${kind}; }) s.${listOf kind};
  userEntries =
    s: kind:
    concatMap (name: map (e: e // { path = join (homeOf name) e.${kind}; }) s.users.${name}.${listOf kind}) (
      attrNames s.users
    );
  entries =
    kind:
    concatMap (
      s:
      map (e: e // { storage = s.persistentStoragePath; }) (
        (map (e: e // { relative = false; }) (systemEntries s kind))
        ++ (map (e: e // { relative = true; }) (userEntries s kind))
      )
    ) (attrValues enabled);
  dirs = entries "directory";
  files = entries "file";
  allEntries = dirs ++ files;

  # A home's entries need the home and the owner: users.users must have the user.
  unknownUsers = unique (concatMap (s: filter (n: !(users ? ${n})) (attrNames s.users)) (attrValues enabled));

  duplicates =
    paths:
    unique (filter (p: builtins.length (filter (q: q == p) paths) > 1) paths);

  # A file system stage 1 mounts: NixOS's own list, or neededForBoot.
  fsNeededForBoot =
    mountPoint:
    let
      f = config.fileSystems.${mountPoint};
    in
    f.neededForBoot
    || elem mountPoint [
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
  # The mount points at `p` or above it that stage 1 would not mount.
  notMountedAt = p: filter (m: config.fileSystems ? ${m} && !fsNeededForBoot m) (parentsOf p ++ [ p ]);

  storagePaths = unique (map (e: e.persistentStoragePath) allEntries ++ map (s: s.persistentStoragePath) (attrValues enabled));
  badStorage = unique (concatMap notMountedAt storagePaths);
  badEphemeral = unique (concatMap (e: notMountedAt e.path) allEntries);
  badPaths = map (e: e.path) (
    filter (
      e: hasDotDot e.${if e ? directory then "directory" else "file"} || (!e.relative && !(hasPrefix "/" e.path))
    ) allEntries
  );
  systemNotAbsolute = concatMap (
    s:
    map (e: e.directory) (filter (e: !(hasPrefix "/" e.directory)) s.directories)
    ++ map (e: e.file) (filter (e: !(hasPrefix "/" e.file)) s.files)
  ) (attrValues enabled);

  # The JSON persist-bind reads: impermanence's shapes, defaults left out.
  permJSON =
    owner: e:
    optionalAttrs (e.user != owner.user) { inherit (e) user; }
    // optionalAttrs (e.group != owner.group) { inherit (e) group; }
    // optionalAttrs (e.mode != "0755") { inherit (e) mode; };
  dirJSON =
    s: owner: d:
    let
      extra =
        permJSON owner d
        // optionalAttrs (d.hideMount != s.hideMounts) { inherit (d) hideMount; }
        // optionalAttrs (d.allowTrash != s.allowTrash) { inherit (d) allowTrash; }
        // optionalAttrs (d.persistentStoragePath != s.persistentStoragePath) {
          inherit (d) persistentStoragePath;
        };
    in
    if extra == { } then d.directory else { inherit (d) directory; } // extra;
  fileJSON =
    s: owner: f:
    let
      parent = permJSON owner f.parentDirectory;
      extra =
        optionalAttrs (parent != { }) { parentDirectory = parent; }
        // optionalAttrs (f.method != "auto") { inherit (f) method; }
        // optionalAttrs (f.persistentStoragePath != s.persistentStoragePath) {
          inherit (f) persistentStoragePath;
        };
    in
    if extra == { } then f.file else { inherit (f) file; } // extra;
  storageJSON =
    s:
    let
      root = {
        user = "root";
        group = "root";
      };
      userJSON =
        name: u:
        let
          owner = {
            user = name;
            group = users.${name}.group or null;
          };
        in
        {
          home = homeOf name;
        }
        // optionalAttrs (owner.group != null && owner.group != "") { inherit (owner) group; }
        // optionalAttrs (u.directories != [ ]) { directories = map (dirJSON s owner) u.directories; }
        // optionalAttrs (u.files != [ ]) { files = map (fileJSON s owner) u.files; };
    in
    optionalAttrs (s.persistentStoragePath != s._name) { inherit (s) persistentStoragePath; }
    // optionalAttrs s.hideMounts { hideMounts = true; }
    // optionalAttrs s.allowTrash { allowTrash = true; }
    // optionalAttrs (s.directories != [ ]) { directories = map (dirJSON s root) s.directories; }
    // optionalAttrs (s.files != [ ]) { files = map (fileJSON s root) s.files; }
    // optionalAttrs (s.users != { }) { users = mapAttrs userJSON s.users; };

  varLibNixosKept =
    any (d: elem d.path (parentsOf "/var/lib/nixos" ++ [ "/var/lib/nixos" ])) dirs
    || any (m: config.fileSystems ? ${m}) (parentsOf "/var/lib/nixos" ++ [ "/var/lib/nixos" ]);
  noUid = attrNames (filterAttrs (_: u: u.uid == null) users);
  noGid = attrNames (filterAttrs (_: g: g.gid == null) config.users.groups);
  # Stage 1 reads owners from here: an erased root has no /etc/passwd yet.
  uids = mapAttrs (_: u: u.uid) (filterAttrs (_: u: u.uid != null) users);
  gids = mapAttrs (_: g: g.gid) (filterAttrs (_: g: g.gid != null) config.users.groups);
  machineIdPersisted = any (f: f.path == "/etc/machine-id") files;
in
{
  options.environment.persistence = mkOption {
    default = { };
    type = types.attrsOf storageType;
    description = ''
      Persistent storage locations (impermanence's option, same schema):
      each lists the directories and files bind-mounted from it onto the
      ephemeral root, by lethe's persist-bind in stage 1.
    '';
  };

  config = mkIf (enabled != { }) (mkMerge [
    {
      boot.initrd.lethe.settings = {
        persistence = mapAttrs (name: s: storageJSON (s // { _name = name; })) enabled;
      }
      // optionalAttrs (uids != { }) { inherit uids; }
      // optionalAttrs (gids != { }) { inherit gids; };

      assertions =
        concatMap (
          s:
          s.assertions
          ++ concatMap (d: d.assertions) s.directories
          ++ concatMap (u: u.assertions ++ concatMap (d: d.assertions) u.directories) (attrValues s.users)
        ) (attrValues cfg)
        ++ [
        {
          assertion = config.boot.initrd.lethe.enable;
          message = "environment.persistence is applied by lethe's persist-bind in stage 1: set boot.initrd.lethe.enable = true.";
        }
        {
          assertion = unknownUsers == [ ];
          message = "environment.persistence: users.<name> names no user in users.users: ${concatStringsSep ", " unknownUsers}";
        }
        {
          assertion = badStorage == [ ];
          message = ''
            environment.persistence: the persistent storage must be mounted in stage 1;
            set neededForBoot = true on: ${concatStringsSep ", " (map (m: "fileSystems.\"${m}\"") badStorage)}'';
        }
        {
          assertion = badEphemeral == [ ];
          message = ''
            environment.persistence: a file system mounted after stage 1 would hide what is bound under it;
            set neededForBoot = true on: ${concatStringsSep ", " (map (m: "fileSystems.\"${m}\"") badEphemeral)}'';
        }
        {
          assertion = duplicates (map (d: d.path) dirs) == [ ];
          message = "environment.persistence: directories persisted more than once: ${concatStringsSep ", " (duplicates (map (d: d.path) dirs))}";
        }
        {
          assertion = duplicates (map (f: f.path) files) == [ ];
          message = "environment.persistence: files persisted more than once: ${concatStringsSep ", " (duplicates (map (f: f.path) files))}";
        }
        {
          assertion = badPaths == [ ] && systemNotAbsolute == [ ];
          message = "environment.persistence: paths must be absolute (relative to the home only in users.<name>) and must not contain \"..\": ${concatStringsSep ", " (unique (badPaths ++ systemNotAbsolute))}";
        }
      ];

      warnings =
        lib.optional
          (any (s: s.enableWarnings) (attrValues enabled) && !varLibNixosKept && (noUid != [ ] || noGid != [ ]))
          "environment.persistence: /var/lib/nixos is not persisted, so users and groups without a fixed id get new ids on every boot: ${concatStringsSep ", " (noUid ++ noGid)}";
    }

    # A persisted /etc/machine-id is a bind mount when stage 2 starts, which
    # systemd-machine-id-commit cannot commit: let it run on a first boot only.
    (mkIf machineIdPersisted {
      boot.initrd.systemd.suppressedUnits = [ "systemd-machine-id-commit.service" ];
      systemd.services.systemd-machine-id-commit.unitConfig.ConditionFirstBoot = true;
    })
  ]);
}
