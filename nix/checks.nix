# Evaluation tests for nixos-module.nix, run by nix-verify's run-checks.nix:
# `{ lib, evalConfig }: lib.runTests { ... }` where `evalConfig modules`
# evaluates the modules (plus quadlet-nix) against NixOS option stubs.
{ lib, evalConfig }:
let
  module = ../nixos-module.nix;
  base = evalConfig [
    module
    ./test-config.nix
  ];
  inherit (base) config;
  router = config.systemd.services.llmhop.serviceConfig;
  llama = config.systemd.services.llama-cpp-qwen-gguf;
  containers = config.virtualisation.quadlet.containers;
  shells = lib.filter (p: p ? shellApplicationText) config.environment.systemPackages;

  # Failed assertion messages of the test config plus `extra`.
  failures =
    extra:
    (evalConfig [
      module
      ./test-config.nix
      extra
    ]).failedAssertions;
  mentions = needle: msgs: lib.any (lib.hasInfix needle) msgs;
in
lib.runTests {
  testNoAssertionFails = {
    expr = base.failedAssertions;
    expected = [ ];
  };

  testRouterHardening = {
    expr = {
      inherit (router)
        Type
        DynamicUser
        ProtectSystem
        ProtectHome
        PrivateTmp
        PrivateDevices
        PrivateUsers
        ProtectKernelTunables
        ProtectKernelModules
        ProtectKernelLogs
        ProtectControlGroups
        ProtectClock
        RestrictNamespaces
        RestrictAddressFamilies
        SystemCallFilter
        MemoryDenyWriteExecute
        NoNewPrivileges
        CapabilityBoundingSet
        UMask
        Restart
        SocketBindAllow
        ;
    };
    expected = {
      Type = "notify";
      DynamicUser = true;
      ProtectSystem = "strict";
      ProtectHome = true;
      PrivateTmp = true;
      PrivateDevices = true;
      PrivateUsers = true;
      ProtectKernelTunables = true;
      ProtectKernelModules = true;
      ProtectKernelLogs = true;
      ProtectControlGroups = true;
      ProtectClock = true;
      RestrictNamespaces = true;
      RestrictAddressFamilies = [
        "AF_INET"
        "AF_INET6"
        "AF_UNIX"
      ];
      SystemCallFilter = [
        "@system-service"
        "~@privileged"
        "~@resources"
      ];
      MemoryDenyWriteExecute = true;
      NoNewPrivileges = true;
      CapabilityBoundingSet = "";
      UMask = "0077";
      Restart = "on-failure";
      SocketBindAllow = [ "tcp:8080" ];
    };
  };

  testRouterSecrets = {
    expr = {
      inherit (router) LoadCredential EnvironmentFile;
      tokens = config.services.llmhop.settings.authTokens;
      header = config.services.llmhop.settings.models.gpt-4o.headers.Authorization;
    };
    expected = {
      LoadCredential = [ "client_token:/run/secrets/llmhop-client-token" ];
      EnvironmentFile = [ "/run/secrets/llmhop.env" ];
      tokens = [ "\${file:client_token}" ];
      header = "Bearer \${env:OPENAI_KEY}";
    };
  };

  testRouterExecStartUsesCheckedConfig = {
    expr = lib.hasInfix "--config" router.ExecStart && lib.hasInfix "llmhop-checked.json" router.ExecStart;
    expected = true;
  };

  testFirewall = {
    expr = config.networking.firewall.allowedTCPPorts;
    expected = [ 8080 ];
  };

  testRoutesRegisteredUserWins = {
    expr = lib.mapAttrs (_: m: m.url) config.services.llmhop.settings.models;
    expected = {
      gpt-4o = "https://api.openai.com";
      llama-small = "http://127.0.0.1:19999"; # user route wins over port 18002
      qwen-gguf = "http://127.0.0.1:18001";
      qwen-sglang = "http://127.0.0.1:18011";
      llama-vllm = "http://127.0.0.1:18021";
      qwen-vllm = "http://127.0.0.1:18022";
    };
  };

  testLlamaCppUnit = {
    expr = {
      inherit (llama.serviceConfig)
        DynamicUser
        CacheDirectory
        SocketBindAllow
        DevicePolicy
        ;
      inherit (llama.environment) LLAMA_CACHE;
      flags = lib.all (f: lib.hasInfix f llama.serviceConfig.ExecStart) [
        ''"--host" "127.0.0.1" "--port" "18001" "--alias" "qwen-gguf"''
        ''"--n-gpu-layers" "99"''
        ''"--no-mmap"''
        ''"--jinja"''
        ''"--lora" "/var/lib/loras/a.gguf" "--lora" "/var/lib/loras/b.gguf"''
      ];
    };
    expected = {
      DynamicUser = true;
      CacheDirectory = "llama-cpp-qwen-gguf";
      SocketBindAllow = [ "tcp:18001" ];
      DevicePolicy = "closed";
      LLAMA_CACHE = "/var/cache/llama-cpp-qwen-gguf";
      flags = true;
    };
  };

  testQuadletContainers = {
    expr = lib.mapAttrs (_: c: {
      inherit (c) uid;
      inherit (c.containerConfig) PublishPort AddDevice;
    }) containers;
    expected = {
      sglang-qwen-sglang = {
        uid = 851;
        PublishPort = [ "127.0.0.1:18011:8000" ];
        AddDevice = [ "nvidia.com/gpu=all" ];
      };
      vllm-llama-vllm = {
        uid = 852;
        PublishPort = [ "127.0.0.1:18021:8000" ];
        AddDevice = [ "nvidia.com/gpu=all" ];
      };
      vllm-qwen-vllm = {
        uid = 852;
        PublishPort = [ "127.0.0.1:18022:8000" ];
        AddDevice = [ "nvidia.com/gpu=all" ];
      };
    };
  };

  testQuadletExec = {
    expr = {
      vllm = containers.vllm-qwen-vllm.containerConfig.Exec;
      sglang = lib.hasPrefix "python3 -m sglang.launch_server --model-path Qwen/Qwen2.5-7B-Instruct --served-model-name qwen-sglang" containers.sglang-qwen-sglang.containerConfig.Exec;
      envFile = containers.vllm-llama-vllm.containerConfig.EnvironmentFile;
    };
    expected = {
      vllm = "Qwen/Qwen2.5-1.5B-Instruct --served-model-name qwen-vllm --host 0.0.0.0 --port 8000 --enforce-eager --gpu-memory-utilization 0.3";
      sglang = true;
      envFile = [ "/run/secrets/hf-token.env" ];
    };
  };

  testBackendUsers = {
    expr = lib.genAttrs [ "sglang" "vllm" ] (n: {
      inherit (config.users.users.${n})
        uid
        isSystemUser
        linger
        home
        subUidRanges
        ;
    });
    expected = {
      sglang = {
        uid = 851;
        isSystemUser = true;
        linger = true;
        home = "/var/lib/sglang";
        subUidRanges = [
          {
            startUid = 1879048192;
            count = 65536;
          }
        ];
      };
      vllm = {
        uid = 852;
        isSystemUser = true;
        linger = true;
        home = "/var/lib/vllm";
        subUidRanges = [
          {
            startUid = 1879113728;
            count = 65536;
          }
        ];
      };
    };
  };

  testCacheDirsOwned = {
    expr = config.systemd.tmpfiles.rules;
    expected = [
      "d /var/cache/sglang 0700 sglang sglang -"
      "d /var/cache/vllm 0700 vllm vllm -"
    ];
  };

  testShells = {
    expr = map (p: {
      name = p.meta.mainProgram;
      machinectl = lib.hasInfix "machinectl --quiet shell" p.shellApplicationText;
    }) shells;
    expected = [
      {
        name = "sglang-shell";
        machinectl = true;
      }
      {
        name = "vllm-shell";
        machinectl = true;
      }
    ];
  };

  testNoShellForExternalUser = {
    expr =
      map (p: p.meta.mainProgram)
        (lib.filter (p: p ? shellApplicationText)
          (evalConfig [
            module
            ./test-config.nix
            { services.llmhop.vllm.user = "ml"; }
          ]).config.environment.systemPackages
        );
    expected = [ "sglang-shell" ];
  };

  testPortCollisionRejected = {
    expr = mentions "port 18001 is used by services.llmhop.llama-cpp.models.qwen-gguf and services.llmhop.vllm.models.clash" (failures {
      services.llmhop.vllm.models.clash = {
        port = 18001;
        model = "x/y";
      };
    });
    expected = true;
  };

  testRouterPortCollisionRejected = {
    expr = mentions "port 8080" (failures {
      services.llmhop.sglang.models.on-router-port = {
        port = 8080;
        model = "x/y";
      };
    });
    expected = true;
  };

  testNameCollisionRejected = {
    expr = mentions "model qwen-gguf is used by services.llmhop.llama-cpp.models.qwen-gguf and services.llmhop.sglang.models.qwen-gguf" (failures {
      services.llmhop.sglang.models.qwen-gguf = {
        port = 18099;
        model = "x/y";
      };
    });
    expected = true;
  };

  testCollisionFailsEvaluation = {
    expr =
      (builtins.tryEval
        (evalConfig [
          module
          ./test-config.nix
          { services.llmhop.llama-cpp.models.clash.port = 18021; }
        ]).report
      ).success;
    expected = false;
  };
}
