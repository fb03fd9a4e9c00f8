# lethe's multi-call binary, built static (callPackage it from pkgsStatic):
# initrd-tool, with persist-bind and rollback as links to it.
{ lib, rustPlatform }:
rustPlatform.buildRustPackage {
  pname = "lethe";
  version = (lib.importTOML ../Cargo.toml).workspace.package.version;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../initrd-tool
      ../luks
      ../persist-bind
      ../rollback
      ../vm-tests
    ];
  };
  cargoLock.lockFile = ../Cargo.lock;

  cargoBuildFlags = [
    "-p"
    "initrd-tool"
  ];
  # The tests need root, loop devices and QEMU: scripts/test.sh runs them.
  doCheck = false;

  postInstall = ''
    ln -s initrd-tool $out/bin/persist-bind
    ln -s initrd-tool $out/bin/rollback
  '';

  meta = {
    description = "Erase-your-darlings stage 1 for NixOS: LUKS unlock, root rollback and persisted state in static binaries";
    license = with lib.licenses; [
      mit
      asl20
    ];
    mainProgram = "initrd-tool";
    platforms = lib.platforms.linux;
  };
}
