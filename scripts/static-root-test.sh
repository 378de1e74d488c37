#!/usr/bin/env bash
# Prove the static musl binary runs FROM scratch: no libc, no /etc, no CA
# bundle, no /proc, no /dev — a directory holding only the binary and its
# config, entered with chroot (as 65534:65534, like the Docker image's USER)
# when we are root, or with `unshare -r --root` otherwise. One chat request is
# routed through it to a loopback upstream, then SIGTERM must exit 0.
#
#   scripts/static-root-test.sh [--binary PATH] [--enter chroot|unshare]
#
# Without --binary it builds `cargo build --release --locked --target
# x86_64-unknown-linux-musl` (needs the rustup target and musl-gcc: Debian's
# musl-tools, for ring's C code). Needs python3 and curl. Network: loopback
# only. Everything it starts is stopped by PID on exit.
set -euo pipefail

target=x86_64-unknown-linux-musl
bin=""
enter_with=""
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) bin="$2"; shift 2 ;;
    --enter) enter_with="$2"; shift 2 ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

for tool in python3 curl ldd; do
  command -v "$tool" >/dev/null || fail "$tool is required"
done

if [ -z "$bin" ]; then
  step "build ($target)"
  if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
  fi
  command -v musl-gcc >/dev/null || fail "musl-gcc not found (apt-get install musl-tools)"
  (cd "$repo" && CC_x86_64_unknown_linux_musl=musl-gcc \
    cargo build --release --locked --target "$target")
  bin="$repo/target/$target/release/llmhop"
fi
[ -x "$bin" ] || fail "no executable at $bin"

step "static linking"
ldd_out="$(ldd "$bin" 2>&1 || true)"
echo "ldd: $ldd_out"
case "$ldd_out" in
  *"not a dynamic executable"* | *"statically linked"*) ;;
  *) fail "$bin is dynamically linked" ;;
esac
if command -v readelf >/dev/null && readelf -l "$bin" | grep -q INTERP; then
  fail "$bin has a program interpreter (PT_INTERP)"
fi
bytes="$(stat -c %s "$bin")"
echo "size: $bytes bytes ($(( (bytes + 1023) / 1024 )) KiB)"

work="$(mktemp -d /tmp/llmhop-static-root.XXXXXX)"
root="$work/root"
upstream_pid=""
router_pid=""
cleanup() {
  for pid in "$router_pid" "$upstream_pid"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

step "loopback upstream"
cat >"$work/upstream.py" <<'EOF'
import http.server, json, os, sys

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        reply = json.dumps({
            "object": "chat.completion",
            "upstream": "static-root-test",
            "model": json.loads(body).get("model"),
            "path": self.path,
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
server.serve_forever()
EOF
python3 "$work/upstream.py" "$work/upstream.port" &
upstream_pid=$!
for _ in $(seq 100); do [ -s "$work/upstream.port" ] && break; sleep 0.1; done
[ -s "$work/upstream.port" ] || fail "upstream did not start"
upstream_port="$(cat "$work/upstream.port")"
echo "upstream: 127.0.0.1:$upstream_port (pid $upstream_pid)"

step "empty root"
mkdir -m 0755 "$root"
install -m 0555 "$bin" "$root/llmhop"
printf '{"listen":"127.0.0.1:0","models":{"m":{"url":"http://127.0.0.1:%s"}}}\n' \
  "$upstream_port" >"$root/config.json"
chmod 0444 "$root/config.json"
(cd "$root" && find . | sort | sed 's/^/  /')
[ "$(find "$root" -mindepth 1 | wc -l)" -eq 2 ] || fail "root holds more than the binary and its config"

step "run llmhop inside it"
if [ -z "$enter_with" ]; then
  if [ "$(id -u)" -eq 0 ] && command -v chroot >/dev/null; then enter_with=chroot; else enter_with=unshare; fi
fi
if [ "$enter_with" = chroot ]; then
  enter=("$(command -v chroot)" --userspec=65534:65534 "$root")
else
  enter=("$(command -v unshare)" -r --root="$root")
fi
echo "${enter[*]} /llmhop --config /config.json   (empty environment)"
# chroot and unshare exec the binary, so $! is llmhop's own pid.
env -i "${enter[@]}" /llmhop --config /config.json 2>"$work/router.log" &
router_pid=$!

listen=""
for _ in $(seq 150); do
  line="$(grep -m1 'msg=listening' "$work/router.log" || true)"
  if [ -n "$line" ]; then
    listen="$(sed -E 's/.*listen="?([^ ",]+).*/\1/' <<<"$line")"
    break
  fi
  kill -0 "$router_pid" 2>/dev/null || { cat "$work/router.log"; fail "llmhop exited early"; }
  sleep 0.1
done
[ -n "$listen" ] || { cat "$work/router.log"; fail "no msg=listening line within 15 s"; }
echo "llmhop: $listen (pid $router_pid)"

step "route one request through it"
resp="$(curl -sS --max-time 15 -H 'Content-Type: application/json' \
  -d '{"model":"m","messages":[{"role":"user","content":"hi"}]}' \
  "http://$listen/v1/chat/completions")" || { cat "$work/router.log"; fail "curl failed"; }
echo "response: $resp"
python3 -c 'import json,sys; r=json.loads(sys.argv[1]); assert r["upstream"]=="static-root-test" and r["model"]=="m" and r["path"]=="/v1/chat/completions", r' "$resp" \
  || fail "unexpected response"

step "SIGTERM"
kill -TERM "$router_pid"
rc=0
wait "$router_pid" || rc=$?
router_pid=""
sed 's/^/  log: /' "$work/router.log"
[ "$rc" -eq 0 ] || fail "llmhop exited $rc after SIGTERM"

echo
echo "PASS: static binary ($bytes bytes) served a request from an empty root"
