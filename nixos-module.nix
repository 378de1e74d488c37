# services.llmhop: the router as a hardened systemd service, plus optional
# model workers whose routes are registered with it automatically:
#
#   llama-cpp  native system units under DynamicUser (one per model)
#   sglang     rootless Podman containers through quadlet-nix, run as
#   vllm       systemd *user* units of a dedicated lingering system user
#
# Every worker binds a loopback port; `settings.models.<name>.url` defaults to
# it, and a route the user sets wins. The sglang/vllm parts need quadlet-nix's
# NixOS module (the flake's `nixosModules.default` imports it).
{
  config,
  options,
  lib,
  pkgs,
  utils,
  ...
}:
let
  inherit (lib) mkOption types;

  cfg = config.services.llmhop;
  json = pkgs.formats.json { };

  # ─── Router config ─────────────────────────────────────────────────────

  configJSON = json.generate "llmhop.json" cfg.settings;

  # The rendered config, checked at build time by the binary itself
  # (SPEC §1: `--check --no-secrets` validates secret references for syntax
  # only, since credentials do not exist at build time).
  configFile =
    if cfg.checkConfig then
      pkgs.runCommand "llmhop-checked.json" { } ''
        ${lib.escapeShellArgs [
          (lib.getExe cfg.package)
          "--check"
          "--no-secrets"
          "--config"
          configJSON
        ]}
        cp ${configJSON} "$out"
      ''
    else
      configJSON;

  # The port of `listen` (":8080", "127.0.0.1:8080", "[::1]:8080"), if any.
  portOf =
    listen:
    let
      m = builtins.match ".*:([0-9]+)" listen;
    in
    if m == null then null else lib.toInt (lib.head m);
  routerPort = portOf cfg.settings.listen;

  # systemd.exec(5) hardening shared by the router and llama.cpp workers.
  hardening = {
    DynamicUser = true;
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateUsers = true;
    PrivateIPC = true;
    PrivateMounts = true;
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    ProtectProc = "invisible";
    ProcSubset = "pid";
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    RestrictAddressFamilies = [
      "AF_INET"
      "AF_INET6"
      "AF_UNIX"
    ];
    LockPersonality = true;
    MemoryDenyWriteExecute = true;
    NoNewPrivileges = true;
    RemoveIPC = true;
    KeyringMode = "private";
    CapabilityBoundingSet = "";
    AmbientCapabilities = "";
    SystemCallArchitectures = "native";
    SystemCallFilter = [
      "@system-service"
      "~@privileged"
      "~@resources"
    ];
    SystemCallErrorNumber = "EPERM";
    UMask = "0077";
    Restart = "on-failure";
    RestartSec = 2;
  };

  # Only this port may be bound (systemd.resource-control(5) SocketBind*).
  bindOnly = port: {
    SocketBindAllow = [ "tcp:${toString port}" ];
    SocketBindDeny = [ "any" ];
  };

  # ─── Workers ───────────────────────────────────────────────────────────

  # Route keys double as unit and container names.
  nameOk = name: builtins.match "[A-Za-z0-9][A-Za-z0-9._-]*" name != null;

  # llama-server flags: `k = true` → --k, `k = false` → --no-k, a list
  # repeats the flag, null drops it, anything else → --k VALUE.
  # Floats via toJSON: `toString 0.3` is "0.300000".
  flagString = x: if builtins.isFloat x then builtins.toJSON x else toString x;
  toFlags =
    settings:
    lib.concatLists (
      lib.mapAttrsToList (
        k: v:
        if v == null then
          [ ]
        else if v == true then
          [ "--${k}" ]
        else if v == false then
          [ "--no-${k}" ]
        else if lib.isList v then
          lib.concatMap (x: [
            "--${k}"
            (flagString x)
          ]) v
        else
          [
            "--${k}"
            (flagString v)
          ]
      ) settings
    );

  flagValue = types.nullOr (
    types.oneOf [
      types.bool
      types.int
      types.float
      types.str
      types.path
      (types.listOf (
        types.oneOf [
          types.int
          types.float
          types.str
          types.path
        ]
      ))
    ]
  );

  portOption = mkOption {
    type = types.port;
    description = "Loopback port the worker listens on; unique across all workers and the router.";
  };

  settingsOption =
    backend:
    mkOption {
      type = types.attrsOf flagValue;
      default = { };
      example = {
        ctx-size = 8192;
        mmap = false;
      };
      description = ''
        Extra ${backend} command-line flags: `true` → `--key`, `false` →
        `--no-key`, a list repeats the flag, `null` drops it, other values
        → `--key value`.
      '';
    };

  # The options of a rootless Podman backend (sglang, vllm).
  containerBackendOptions =
    {
      backend,
      image,
      uid,
      subUidStart,
    }:
    {
      enable = lib.mkEnableOption "${backend} workers (rootless Podman through quadlet-nix)";
      image = mkOption {
        type = types.str;
        default = image;
        description = "Container image for every ${backend} worker. Pin a tag or digest in production.";
      };
      user = mkOption {
        type = types.str;
        default = backend;
        description = ''
          Lingering system user whose systemd user manager runs the ${backend}
          containers. With the default, the module creates it (home, sub-UID/GID
          range, linger) and adds `${backend}-shell`; any other name must be
          declared by you with the same properties.
        '';
      };
      uid = mkOption {
        type = types.ints.between 1 65533;
        default = uid;
        description = "UID of `user` (quadlet-nix needs it at evaluation time to target that user's manager).";
      };
      subUidStart = mkOption {
        type = types.ints.unsigned;
        default = subUidStart;
        description = "First host UID/GID of the 65536 subordinate IDs mapped into the ${backend} containers.";
      };
      cacheDir = mkOption {
        type = types.str;
        default = "/var/cache/${backend}";
        description = "Hugging Face cache, owned by `user`, mounted at /root/.cache/huggingface in every container.";
      };
      devices = mkOption {
        type = types.listOf types.str;
        default = [ "nvidia.com/gpu=all" ];
        example = [ "nvidia.com/gpu=0" ];
        description = "CDI devices (Quadlet `AddDevice=`) given to every ${backend} container.";
      };
      environmentFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/run/secrets/hf-token.env";
        description = "`KEY=VALUE` file (e.g. `HF_TOKEN=...`) passed to every ${backend} container; readable by `user`.";
      };
      models = mkOption {
        default = { };
        description = "One container per model; the attribute name is the model name clients send.";
        type = types.attrsOf (
          types.submodule {
            options = {
              port = portOption;
              model = mkOption {
                type = types.str;
                example = "Qwen/Qwen2.5-7B-Instruct";
                description = "Hugging Face repository or path inside the container.";
              };
              settings = settingsOption backend;
            };
          }
        );
      };
    };

  llamaModels = lib.optionalAttrs cfg.llama-cpp.enable cfg.llama-cpp.models;
  sglangModels = lib.optionalAttrs cfg.sglang.enable cfg.sglang.models;
  vllmModels = lib.optionalAttrs cfg.vllm.enable cfg.vllm.models;

  # Every enabled worker, in a fixed order: { backend, name, port }.
  workers = lib.concatLists (
    lib.mapAttrsToList
      (
        backend: models:
        lib.mapAttrsToList (name: m: {
          inherit backend name;
          inherit (m) port;
        }) models
      )
      {
        llama-cpp = llamaModels;
        sglang = sglangModels;
        vllm = vllmModels;
      }
  );
  owner = w: "services.llmhop.${w.backend}.models.${w.name}";

  # Values claimed by more than one owner: { value = [ owners ]; }.
  clashes =
    pairs:
    lib.filterAttrs (_: owners: lib.length owners > 1) (
      lib.groupBy' (acc: p: acc ++ [ p.owner ]) [ ] (p: toString p.value) pairs
    );
  portClashes = clashes (
    map (w: {
      value = w.port;
      owner = owner w;
    }) workers
    ++ lib.optional (routerPort != null) {
      value = routerPort;
      owner = "services.llmhop.settings.listen";
    }
  );
  nameClashes = clashes (
    map (w: {
      value = w.name;
      owner = owner w;
    }) workers
  );
  describe =
    what: cl:
    lib.concatStringsSep "; " (
      lib.mapAttrsToList (v: owners: "${what} ${v} is used by ${lib.concatStringsSep " and " owners}") cl
    );

  # ─── sglang / vllm containers ──────────────────────────────────────────

  # Container-internal port; the host side is the model's loopback port.
  innerPort = 8000;

  containerBackend =
    backend: bcfg: models: exec:
    let
      defaultUser = bcfg.user == backend;
    in
    lib.mkIf bcfg.enable {
      virtualisation.quadlet = {
        enable = lib.mkDefault true;
        containers = lib.mapAttrs' (
          name: m:
          lib.nameValuePair "${backend}-${name}" {
            inherit (bcfg) uid;
            containerConfig = {
              Image = bcfg.image;
              Exec = lib.escapeShellArgs (exec name m);
              PublishPort = [ "127.0.0.1:${toString m.port}:${toString innerPort}" ];
              AddDevice = bcfg.devices;
              Volume = [ "${bcfg.cacheDir}:/root/.cache/huggingface" ];
              EnvironmentFile = lib.optional (bcfg.environmentFile != null) bcfg.environmentFile;
              ShmSize = "16g";
              NoNewPrivileges = true;
              DropCapability = "all";
            };
            # Model downloads and CUDA graph capture take long; an engine that
            # exits 0 after a crash must come back too.
            serviceConfig = {
              Restart = "always";
              TimeoutStartSec = 3600;
            };
          }
        ) models;
      };

      systemd.tmpfiles.rules = [ "d ${bcfg.cacheDir} 0700 ${bcfg.user} ${bcfg.user} -" ];

      users = lib.mkIf defaultUser {
        users.${backend} = {
          isSystemUser = true;
          inherit (bcfg) uid;
          group = backend;
          description = "${backend} model workers (rootless Podman)";
          home = "/var/lib/${backend}";
          createHome = true;
          # A real shell: `machinectl shell` and `systemctl --user` need one.
          shell = "/run/current-system/sw/bin/bash";
          extraGroups = [ "systemd-journal" ];
          linger = true;
          subUidRanges = [
            {
              startUid = bcfg.subUidStart;
              count = 65536;
            }
          ];
          subGidRanges = [
            {
              startGid = bcfg.subUidStart;
              count = 65536;
            }
          ];
        };
        groups.${backend}.gid = bcfg.uid;
      };

      environment.systemPackages = lib.mkIf defaultUser [
        (pkgs.writeShellApplication {
          name = "${backend}-shell";
          runtimeInputs = [ pkgs.systemd ];
          text = ''
            # Enter the ${backend} user's session (systemctl --user, journalctl
            # --user, podman), or run one command there. Needs root.
            if [ "$#" -eq 0 ]; then
              exec machinectl --quiet shell ${lib.escapeShellArg "${bcfg.user}@.host"}
            fi
            # shellcheck disable=SC2016 # "$@" expands in the login shell
            exec machinectl --quiet shell ${lib.escapeShellArg "${bcfg.user}@.host"} \
              /run/current-system/sw/bin/bash --login -c '"$@"' ${lib.escapeShellArg backend} "$@"
          '';
        })
      ];
    };

  # vllm/vllm-openai's entrypoint is `vllm serve`: give it the model + flags.
  vllmExec =
    name: m:
    [
      m.model
      "--served-model-name"
      name
      "--host"
      "0.0.0.0"
      "--port"
      (toString innerPort)
    ]
    ++ toFlags m.settings;

  # lmsysorg/sglang has no server entrypoint: start it explicitly.
  sglangExec =
    name: m:
    [
      "python3"
      "-m"
      "sglang.launch_server"
      "--model-path"
      m.model
      "--served-model-name"
      name
      "--host"
      "0.0.0.0"
      "--port"
      (toString innerPort)
    ]
    ++ toFlags m.settings;

  hasQuadlet = options ? virtualisation.quadlet.containers;
in
{
  options.services.llmhop = {
    enable = lib.mkEnableOption "llmhop, the router for OpenAI-compatible model servers";

    package = lib.mkPackageOption pkgs "llmhop" { };

    settings = mkOption {
      default = { };
      description = ''
        llmhop's JSON config (SPEC §2), rendered with `pkgs.formats.json` and
        validated at build time with `llmhop --check --no-secrets`. Secrets stay
        references: `''${file:NAME}` reads credential NAME (see `credentials`),
        `''${env:NAME}` a variable from `environmentFile`.
      '';
      example = lib.literalExpression ''
        {
          listen = ":8080";
          authTokens = [ "\''${file:client_token}" ];
          models.gpt-4o = {
            url = "https://api.openai.com";
            headers.Authorization = "Bearer \''${env:OPENAI_KEY}";
          };
        }
      '';
      type = types.submodule {
        freeformType = json.type;
        options = {
          listen = mkOption {
            type = types.str;
            default = ":8080";
            description = "`:PORT` (all interfaces), `HOST:PORT` or `[::1]:PORT`.";
          };
          models = mkOption {
            default = { };
            description = "Routes: model name → upstream. Workers add theirs; a route set here wins.";
            type = types.attrsOf (
              types.submodule {
                freeformType = json.type;
                options.url = mkOption {
                  type = types.str;
                  description = "`http://` or `https://` origin with an optional path prefix.";
                };
              }
            );
          };
        };
      };
    };

    checkConfig = mkOption {
      type = types.bool;
      default = true;
      description = "Run `llmhop --check --no-secrets` on the rendered config at build time (disable when cross-compiling).";
    };

    credentials = mkOption {
      type = types.attrsOf types.str;
      default = { };
      example = {
        client_token = "/run/secrets/llmhop-client-token";
      };
      description = ''
        `LoadCredential=` entries, name → file. llmhop reads them through
        `''${file:NAME}` (relative paths resolve against
        `$CREDENTIALS_DIRECTORY`); the files never enter the Nix store.
      '';
    };

    environmentFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/secrets/llmhop.env";
      description = "`EnvironmentFile=` with `KEY=VALUE` lines for `\${env:KEY}` references.";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the port of `settings.listen` in the firewall.";
    };

    llama-cpp = {
      enable = lib.mkEnableOption "llama.cpp workers (native hardened system units)";
      package = lib.mkPackageOption pkgs "llama-cpp" { };
      deviceAllow = mkOption {
        type = types.listOf types.str;
        default = [
          "char-nvidiactl"
          "char-nvidia-caps"
          "char-nvidia-frontend"
          "char-nvidia-uvm"
          "char-drm"
          "char-kfd"
        ];
        description = "`DeviceAllow=` for the workers (NVIDIA and AMD GPUs by default; `[ ]` for CPU only).";
      };
      models = mkOption {
        default = { };
        description = "One `llama-server` unit per model; the attribute name is the model name clients send.";
        example = lib.literalExpression ''
          {
            qwen-7b = {
              port = 18001;
              settings = { hf-repo = "Qwen/Qwen2.5-7B-Instruct-GGUF"; n-gpu-layers = 99; };
            };
          }
        '';
        type = types.attrsOf (
          types.submodule {
            options = {
              port = portOption;
              settings = settingsOption "llama-server";
            };
          }
        );
      };
    };

    sglang = containerBackendOptions {
      backend = "sglang";
      image = "docker.io/lmsysorg/sglang:latest";
      uid = 851;
      subUidStart = 1879048192;
    };

    vllm = containerBackendOptions {
      backend = "vllm";
      image = "docker.io/vllm/vllm-openai:latest";
      uid = 852;
      subUidStart = 1879113728;
    };
  };

  config = lib.mkMerge [
    {
      assertions = [
        {
          assertion = portClashes == { };
          message = "services.llmhop: port collision: ${describe "port" portClashes}.";
        }
        {
          assertion = nameClashes == { };
          message = "services.llmhop: model name collision: ${describe "model" nameClashes}.";
        }
        {
          assertion = lib.all (w: nameOk w.name) workers;
          message = "services.llmhop: worker model names must match [A-Za-z0-9][A-Za-z0-9._-]* (they name units): ${
            lib.concatMapStringsSep ", " owner (lib.filter (w: !nameOk w.name) workers)
          }.";
        }
        {
          assertion = (cfg.sglang.enable || cfg.vllm.enable) -> hasQuadlet;
          message = "services.llmhop.sglang/vllm need quadlet-nix's NixOS module (use this flake's nixosModules.default).";
        }
        {
          assertion = cfg.enable -> cfg.settings.models != { };
          message = "services.llmhop.settings.models is empty: add a route or enable a worker.";
        }
      ];

      warnings =
        lib.optional
          (
            (cfg.sglang.enable || cfg.vllm.enable)
            && lib.any (lib.hasPrefix "nvidia.com/") (cfg.sglang.devices ++ cfg.vllm.devices)
            && !config.hardware.nvidia-container-toolkit.enable
          )
          "services.llmhop: sglang/vllm request nvidia.com CDI devices but hardware.nvidia-container-toolkit.enable is off, so no CDI spec will exist.";

      # Worker routes; `mkDefault` so a route the user sets wins. On a name
      # clash listToAttrs keeps the first and the assertion above reports it.
      services.llmhop.settings.models = lib.mapAttrs (_: w: {
        url = lib.mkDefault "http://127.0.0.1:${toString w.port}";
      }) (lib.listToAttrs (map (w: lib.nameValuePair w.name w) workers));
    }

    (lib.mkIf cfg.enable {
      systemd.services.llmhop = {
        description = "llmhop model router";
        wantedBy = [ "multi-user.target" ];
        wants = [ "network-online.target" ];
        after = [ "network-online.target" ];
        restartTriggers = [ configFile ];
        serviceConfig =
          hardening
          // {
            Type = "notify";
            ExecStart = utils.escapeSystemdExecArgs [
              (lib.getExe cfg.package)
              "--config"
              configFile
            ];
            PrivateDevices = true;
            DevicePolicy = "closed";
            LoadCredential = lib.mapAttrsToList (name: path: "${name}:${path}") cfg.credentials;
            EnvironmentFile = lib.optional (cfg.environmentFile != null) cfg.environmentFile;
          }
          // lib.optionalAttrs (routerPort != null) (bindOnly routerPort);
      };

      networking.firewall.allowedTCPPorts = lib.optional (cfg.openFirewall && routerPort != null) routerPort;
    })

    (lib.mkIf cfg.llama-cpp.enable {
      systemd.services = lib.mapAttrs' (
        name: m:
        lib.nameValuePair "llama-cpp-${name}" {
          description = "llama.cpp worker for model ${name}";
          wantedBy = [ "multi-user.target" ];
          wants = [ "network-online.target" ];
          after = [ "network-online.target" ];
          # `-hf` downloads land in the unit's own cache directory.
          environment = {
            LLAMA_CACHE = "/var/cache/llama-cpp-${name}";
            HOME = "/var/cache/llama-cpp-${name}";
          };
          serviceConfig =
            hardening
            // {
              ExecStart = utils.escapeSystemdExecArgs (
                [
                  (lib.getExe' cfg.llama-cpp.package "llama-server")
                  "--host"
                  "127.0.0.1"
                  "--port"
                  (toString m.port)
                  "--alias"
                  name
                ]
                ++ toFlags m.settings
              );
              CacheDirectory = "llama-cpp-${name}";
              CacheDirectoryMode = "0700";
              PrivateDevices = cfg.llama-cpp.deviceAllow == [ ];
              DevicePolicy = "closed";
              DeviceAllow = cfg.llama-cpp.deviceAllow;
              TimeoutStartSec = 3600;
              # ggml/CUDA set thread affinity and memory policy (@resources).
              SystemCallFilter = [
                "@system-service"
                "~@privileged"
              ];
            }
            // bindOnly m.port;
        }
      ) cfg.llama-cpp.models;
    })

    (lib.optionalAttrs hasQuadlet (
      lib.mkMerge [
        (containerBackend "sglang" cfg.sglang sglangModels sglangExec)
        (containerBackend "vllm" cfg.vllm vllmModels vllmExec)
      ]
    ))
  ];
}
