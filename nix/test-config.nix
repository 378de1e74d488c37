# A host running the router with all three worker backends, one hosted route
# and secrets from LoadCredential / EnvironmentFile. Evaluated by nix-verify
# (verify-module.sh) and by nix/checks.nix; imports nothing itself, so the
# caller supplies nixos-module.nix and quadlet-nix's module.
{
  hardware.nvidia-container-toolkit.enable = true;

  services.llmhop = {
    enable = true;
    openFirewall = true;
    credentials.client_token = "/run/secrets/llmhop-client-token";
    environmentFile = "/run/secrets/llmhop.env";
    settings = {
      listen = ":8080";
      authTokens = [ "\${file:client_token}" ];
      models = {
        gpt-4o = {
          url = "https://api.openai.com";
          headers.Authorization = "Bearer \${env:OPENAI_KEY}";
        };
        # A user-set route for a worker's model name wins over the worker's.
        llama-small.url = "http://127.0.0.1:19999";
      };
    };

    llama-cpp = {
      enable = true;
      models = {
        qwen-gguf = {
          port = 18001;
          settings = {
            hf-repo = "Qwen/Qwen2.5-7B-Instruct-GGUF";
            n-gpu-layers = 99;
            ctx-size = 8192;
            flash-attn = "on";
            mmap = false;
            jinja = true;
            lora = [
              "/var/lib/loras/a.gguf"
              "/var/lib/loras/b.gguf"
            ];
          };
        };
        llama-small = {
          port = 18002;
          settings.model = "/var/lib/models/llama-3.2-1b.gguf";
        };
      };
    };

    sglang = {
      enable = true;
      models.qwen-sglang = {
        port = 18011;
        model = "Qwen/Qwen2.5-7B-Instruct";
        settings = {
          mem-fraction-static = 0.8;
          enable-torch-compile = true;
        };
      };
    };

    vllm = {
      enable = true;
      environmentFile = "/run/secrets/hf-token.env";
      models = {
        llama-vllm = {
          port = 18021;
          model = "meta-llama/Llama-3.1-8B-Instruct";
          settings.max-model-len = 16384;
        };
        qwen-vllm = {
          port = 18022;
          model = "Qwen/Qwen2.5-1.5B-Instruct";
          settings = {
            gpu-memory-utilization = 0.3;
            enforce-eager = true;
          };
        };
      };
    };
  };
}
