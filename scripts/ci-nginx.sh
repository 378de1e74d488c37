#!/usr/bin/env bash
# CI step for issue 3: installs what the https tests run against — Debian's
# nginx (the TLS server the project did not write) and the openssl CLI that
# makes their certificates — then runs the issue-3 tests on the default
# build and the minimal core (`--no-default-features`). A missing nginx
# makes tests/tls.rs fail; it never skips.
set -euo pipefail
cd "$(dirname "$0")/.."

have_nginx() { command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; }
if ! have_nginx || ! command -v openssl >/dev/null; then
  echo "ci-nginx.sh: installing nginx and openssl" >&2
  apt-get update -qq
  apt-get install -y -qq nginx openssl >/dev/null
fi

cargo test --test tls --test unix --test routing
cargo test --no-default-features --test no_tls --test unix --test routing
cargo clippy --no-default-features --all-targets -- -D warnings
