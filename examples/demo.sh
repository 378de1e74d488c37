#!/usr/bin/env bash
# One-command demo: two OpenAI-compatible demo backends behind llmhop.
#
#   examples/demo.sh          build, start everything, stream one completion, stop
#   examples/demo.sh --keep   ... and keep running until Ctrl-C
#
# Ports: router 127.0.0.1:8080, backends 127.0.0.1:30001 (demo-small) and
# 127.0.0.1:30002 (demo-large), as in examples/demo-config.json. Every
# process this script starts is stopped by its PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

keep=false
case "${1:-}" in
  --keep) keep=true ;;
  "") ;;
  *) echo "usage: $0 [--keep]" >&2; exit 2 ;;
esac

cargo build --release --quiet --bin llmhop --example demo_upstream
bin=target/release

pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$bin/examples/demo_upstream" --port 30001 --model demo-small & pids+=($!)
"$bin/examples/demo_upstream" --port 30002 --model demo-large & pids+=($!)
"$bin/llmhop" --config examples/demo-config.json & pids+=($!)

# Ready when /health answers; bounded, never an open-ended wait.
for _ in $(seq 1 100); do
  if curl -fsS http://127.0.0.1:8080/health >/dev/null 2>&1; then break; fi
  sleep 0.1
done
curl -fsS http://127.0.0.1:8080/health >/dev/null || { echo "demo: llmhop did not come up" >&2; exit 1; }

echo "--- GET /v1/models"
curl -sS http://127.0.0.1:8080/v1/models; echo
echo "--- streamed chat completion from demo-large, token by token:"
curl -sS --no-buffer http://127.0.0.1:8080/v1/chat/completions \
  -H 'Content-Type: application/json' \
  -d '{"model":"demo-large","stream":true,"messages":[{"role":"user","content":"Hi"}]}'

if $keep; then
  echo "--- llmhop on http://127.0.0.1:8080 (models demo-small, demo-large); Ctrl-C to stop"
  wait "${pids[2]}"
fi
