# A stand-in for nixpkgs' package set: every package NixOS's initrd modules
# and lethe's name is a derivation-shaped attrset with a store path, and the
# builders return one, so option values evaluate without a store. Nothing
# here builds; forcing a build's script is never needed for what is checked.
{ lib }:
let
  drv =
    name:
    lib.fix (self: {
      type = "derivation";
      inherit name;
      pname = name;
      version = "0";
      outPath = "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" name)}-${name}";
      drvPath = "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" "drv-${name}")}-${name}.drv";
      outputs = [ "out" ];
      out = self;
      bin = self;
      lib = self;
      dev = self;
      meta.mainProgram = name;
      passthru = { };
      # Packages NixOS reaches through another package.
      util-linux = drv "util-linux";
      kmod = drv "kmod";
      withCryptsetup = true;
      withEfi = true;
      withTpm2Tss = true;
      override = _: self;
      overrideAttrs = _: self;
      kernelAtLeast = _: true;
    });
  named = a: drv (a.name or a.pname or "unnamed");
  builder = name: _: _: drv name;
  packages = [
    "bash"
    "bashInteractive"
    "btrfs-progs"
    "chroot-realpath"
    "coreutils"
    "cryptsetup"
    "dosfstools"
    "fido2luks"
    "findutils"
    "glibc"
    "gnugrep"
    "gnupg"
    "gnused"
    "jq"
    "klibc"
    "kmod"
    "kmod-blacklist-ubuntu"
    "kmod-debian-aliases"
    "less"
    "lvm2"
    "lvm2_dmeventd"
    "lvm2_vdo"
    "openssh"
    "openssl"
    "systemd"
    "systemd-cryptsetup-generator"
    "thin-provisioning-tools"
    "util-linux"
    "vdo"
    "yubikey-personalization"
    "zfs"
  ];
in
lib.genAttrs packages drv
// {
  runtimeShell = "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" "bash")}-bash/bin/bash";
  runCommand = name: env: script: drv name // { inherit env script; };
  runCommandCC = builder "run-command-cc";
  runCommandLocal = builder "run-command-local";
  writeText = name: _: drv name;
  writeScript = name: _: drv name;
  writeScriptBin = name: _: drv name;
  writeShellScript = name: _: drv name;
  writeShellScriptBin = name: _: drv name;
  writeShellApplication = named;
  buildEnv = named;
  symlinkJoin = named;
  makeInitrdNG = _: drv "initrd";
  makeModulesClosure = _: drv "modules-closure";
  pkgsStatic.callPackage = _: _: drv "static";
  buildPackages = {
    xorg.lndir = drv "lndir";
  };
  inherit drv;
}
