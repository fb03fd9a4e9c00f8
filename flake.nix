# lethe's flake: the static package, the NixOS modules, and the NixOS VM tests
# of the scenarios vm-tests boots (each under systemd and scripted stage 1).
{
  description = "lethe: erase-your-darlings stage 1 for NixOS, in small static Rust binaries";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      system = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${system};
      lethe = pkgs.pkgsStatic.callPackage ./nix/package.nix { };
    in
    {
      packages.${system} = {
        default = lethe;
        inherit lethe;
      };

      # The module's package defaults to the static build from the user's own
      # pkgs, for the host's platform.
      nixosModules.default = ./nix/module.nix;

      checks.${system} =
        import ./nix/tests {
          inherit pkgs;
          module = self.nixosModules.default;
        }
        // {
          package = lethe;
          # The configs the module writes for the example machines pass check-config.
          fixtures = pkgs.runCommand "lethe-fixtures" { nativeBuildInputs = [ lethe ]; } ''
            for f in ${./nix/fixtures}/*.json; do
              initrd-tool check-config "$f"
            done
            touch $out
          '';
        };

      formatter.${system} = pkgs.nixfmt;

      devShells.${system}.default = pkgs.mkShell {
        packages = with pkgs; [
          cargo
          rustc
          clippy
          rustfmt
          cryptsetup
          btrfs-progs
          qemu
          nixfmt
        ];
      };
    };
}
