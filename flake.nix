{
  description = "llmhop: one port, many models. A tiny HTTP/1.1 router for OpenAI-compatible LLM backends";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    quadlet-nix = {
      url = "github:mirkolenz/quadlet-nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs =
    {
      self,
      nixpkgs,
      quadlet-nix,
    }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      cargoToml = lib.importTOML ./Cargo.toml;

      # Only what cargo needs: editing the README or the module does not
      # rebuild the binary.
      src = lib.fileset.toSource {
        root = ./.;
        fileset = lib.fileset.unions [
          ./Cargo.toml
          ./Cargo.lock
          ./build.rs
          ./src
          (lib.fileset.maybeMissing ./tests)
          (lib.fileset.maybeMissing ./benches)
        ];
      };

      mkLlmhop =
        pkgs:
        pkgs.rustPlatform.buildRustPackage {
          pname = "llmhop";
          inherit (cargoToml.package) version;
          inherit src;
          cargoLock.lockFile = ./Cargo.lock;
          # Unit tests only: the integration tests spawn curl and the OpenAI
          # SDK (tests/sdk.rs), which the build sandbox lacks; the nixosTest
          # in `checks` exercises the built binary end to end.
          cargoTestFlags = [ "--lib" ];
          meta = {
            inherit (cargoToml.package) description;
            license = with lib.licenses; [
              mit
              asl20
            ];
            mainProgram = "llmhop";
            platforms = lib.platforms.linux;
          };
        };
    in
    {
      packages = forAllSystems (
        pkgs:
        let
          llmhop = mkLlmhop pkgs;
        in
        {
          default = llmhop;
          # Fully static (musl), as in the Dockerfile.
          static = mkLlmhop pkgs.pkgsStatic;
          docker = pkgs.dockerTools.streamLayeredImage {
            name = "llmhop";
            tag = llmhop.version;
            config = {
              Entrypoint = [ (lib.getExe llmhop) ];
              Cmd = [
                "--config"
                "/config.json"
              ];
              User = "65534:65534";
              ExposedPorts."8080/tcp" = { };
              StopSignal = "SIGTERM";
            };
          };
        }
      );

      # The module with quadlet-nix (for sglang/vllm) and this flake's package.
      nixosModules.default =
        { lib, pkgs, ... }:
        {
          imports = [
            ./nixos-module.nix
            quadlet-nix.nixosModules.quadlet
          ];
          services.llmhop.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        };

      checks = forAllSystems (pkgs: {
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        vm = import ./nix/vm-test.nix {
          inherit pkgs;
          module = self.nixosModules.default;
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt);

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.default ];
          packages = [
            pkgs.clippy
            pkgs.rustfmt
            pkgs.curl
          ];
        };
      });
    };
}
