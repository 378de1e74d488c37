#!/bin/sh
# Bounded soak of the release router against fake upstreams on loopback
# (issue 4, point 6). Not part of `cargo test`.
#
#   scripts/soak.sh [--requests N] [--concurrency C]
#
# Defaults: 200000 requests, concurrency 256; mixed small, 1 MiB and
# streamed requests, some clients hanging up mid-stream. Prints requests,
# failures (those the upstream answered must be 0), the router's fds before
# and after (leaked must be 0) and its VmRSS after warm-up and at the end.
# Exits non-zero when a request the upstream answered failed or an fd leaked.
set -eu
cd "$(dirname "$0")/.."
cargo build --release --bin llmhop
cargo build --release --example soak
# The soak opens a few thousand sockets; make sure the limit allows it.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec target/release/examples/soak --router target/release/llmhop "$@"
