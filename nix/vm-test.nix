# NixOS VM test of the router as the module deploys it: a fake upstream that
# echoes what it received, secrets from LoadCredential and EnvironmentFile.
# Run with `nix build .#checks.x86_64-linux.vm` (needs KVM).
{ pkgs, module }:
let
  clientToken = "client-secret-token";
  upstreamKey = "upstream-secret-key";

  # Answers every POST with the request's path and Authorization header.
  upstream = pkgs.writeText "fake-upstream.py" ''
    import http.server, json

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            reply = json.dumps({
                "path": self.path,
                "authorization": self.headers.get("Authorization"),
                "model": json.loads(body).get("model"),
            }).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    http.server.ThreadingHTTPServer(("127.0.0.1", 9000), Handler).serve_forever()
  '';
in
pkgs.testers.runNixOSTest {
  name = "llmhop";

  nodes.machine = {
    imports = [ module ];

    services.llmhop = {
      enable = true;
      # In the store only because this is a test; real secrets live outside it.
      credentials.client_token = "${pkgs.writeText "client-token" "${clientToken}\n"}";
      environmentFile = "${pkgs.writeText "llmhop.env" "UPSTREAM_KEY=${upstreamKey}\n"}";
      settings = {
        listen = ":8080";
        authTokens = [ "\${file:client_token}" ];
        models.echo = {
          url = "http://127.0.0.1:9000";
          headers.Authorization = "Bearer \${env:UPSTREAM_KEY}";
        };
      };
    };

    systemd.services.fake-upstream = {
      wantedBy = [ "multi-user.target" ];
      before = [ "llmhop.service" ];
      serviceConfig.ExecStart = "${pkgs.python3.interpreter} ${upstream}";
    };

    environment.systemPackages = [ pkgs.curl ];
  };

  testScript = ''
    import json
    import re

    machine.wait_for_unit("fake-upstream.service")
    machine.wait_for_unit("llmhop.service")
    machine.wait_for_open_port(8080)

    def chat(model, token=None):
        auth = f"-H 'Authorization: Bearer {token}'" if token else ""
        return machine.succeed(
            "curl -s -w '\\n%{http_code}' -H 'Content-Type: application/json' "
            f"{auth} -d '{{\"model\":\"{model}\",\"messages\":[]}}' "
            "http://127.0.0.1:8080/v1/chat/completions"
        ).rsplit("\n", 1)

    with subtest("Type=notify: the unit is active only after READY=1"):
        machine.succeed("systemctl show -p Type --value llmhop | grep -x notify")

    with subtest("auth rejected"):
        body, status = chat("echo")
        assert status == "401", (status, body)
        body, status = chat("echo", token="wrong")
        assert status == "401", (status, body)

    with subtest("auth accepted, upstream header injected"):
        body, status = chat("echo", token="${clientToken}")
        assert status == "200", (status, body)
        seen = json.loads(body)
        assert seen["authorization"] == "Bearer ${upstreamKey}", seen
        assert seen["path"] == "/v1/chat/completions", seen
        assert seen["model"] == "echo", seen

    with subtest("unknown model 404"):
        body, status = chat("nope", token="${clientToken}")
        assert status == "404", (status, body)
        assert json.loads(body)["error"]["code"] == "model_not_found", body

    with subtest("secrets from LoadCredential, not from the config"):
        unit = machine.succeed("systemctl cat llmhop")
        assert "LoadCredential=client_token:" in unit, unit
        config = re.search(r"/nix/store/[^\" ]*-llmhop-checked\.json", unit).group(0)
        machine.fail(f"grep -q ${clientToken} {config}")
        machine.succeed(f"grep -q 'file:client_token' {config}")

    with subtest("hardening"):
        machine.succeed("systemd-analyze security llmhop.service --threshold=20")

    with subtest("SIGTERM: clean stop"):
        machine.systemctl("stop llmhop")
        machine.succeed("systemctl show -p Result --value llmhop | grep -x success")
  '';
}
