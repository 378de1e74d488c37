#!/usr/bin/env bash
# The proxy benchmark of issue 5, one command:
#   scripts/bench.sh           full run: llmhop, nginx, HAProxy and going
#                              direct, 3 interleaved runs, ~6-10 minutes
#   scripts/bench.sh --smoke   llmhop and direct only, a few seconds per
#                              scenario (CI); exits non-zero on any error
#   scripts/bench.sh --scan    the JSON scanner micro-benchmark only
# Other arguments go to benches/proxy (--runs N, --scenarios a,b).
# Builds llmhop in release, installs nginx and haproxy from Debian when
# missing (full run only), then runs benches/proxy/main.rs, which starts,
# pins (proxies on core 0, generator and upstream on core 1) and stops
# every process itself. Network: loopback only (ports 18080-18086,
# 19000-19002).
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  --scan) shift; exec cargo bench --bench scan -- "$@" ;;
esac

smoke=0
for a in "$@"; do [ "$a" = --smoke ] && smoke=1; done

if [ "$smoke" = 0 ]; then
  missing=()
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
  command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
  # ring's C code in the static binary (the idle row of what ships).
  command -v x86_64-linux-musl-gcc >/dev/null || command -v musl-gcc >/dev/null || missing+=(musl-tools)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "bench.sh: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    # Debian starts the packaged services; the benchmark runs its own.
    for s in nginx haproxy; do systemctl stop "$s" 2>/dev/null || true; done
  fi
fi
command -v taskset >/dev/null || echo "bench.sh: taskset missing (util-linux); nothing will be pinned" >&2

cargo build --release --bin llmhop
# The code llmhop runs at startup lies in one section (build.rs,
# src/startup.ld). Patterns that no longer match (functions renamed, a new
# symbol mangling) would quietly cost ~0.4 MiB of idle memory.
startup_hex=$(readelf -SW target/release/llmhop |
  sed -n 's/.*\.text\.llmhop\.startup  *PROGBITS  *[0-9a-f]*  *[0-9a-f]*  *\([0-9a-f]*\) .*/\1/p')
startup_kib=$(( 16#${startup_hex:-0} / 1024 ))
echo "bench.sh: startup code section ${startup_kib} KiB"
if [ "$startup_kib" -lt 128 ] && [ -z "${LLMHOP_NO_STARTUP_LD:-}" ]; then
  echo "bench.sh: src/startup.ld matches little of this build; run scripts/startup-order.sh" >&2
  exit 1
fi
if [ "$smoke" = 0 ]; then
  # The static binary the container ships, for the idle-memory row; the
  # rest of the run does not need it.
  if rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 &&
    cargo build --release --target x86_64-unknown-linux-musl --bin llmhop; then :
  else
    echo "bench.sh: no musl build (musl-tools missing?); the static idle row is skipped" >&2
  fi
  # A bare tokio accept loop built the same way, for the idle row: the
  # part of llmhop's idle memory any such server has.
  # (The build lists every executable it made or found fresh, in no fixed
  # order: pick the floor's by name.)
  LLMHOP_FLOOR_BIN=$(cargo bench --bench floor --no-run --message-format=json |
    sed -n 's/.*"executable":"\([^"]*\/floor-[^"/]*\)".*/\1/p' | tail -n 1)
  export LLMHOP_FLOOR_BIN
fi
ulimit -n 65536 2>/dev/null || true
exec cargo bench --bench proxy -- "$@"
