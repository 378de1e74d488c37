#!/usr/bin/env bash
# The whole test suite, as the README gives it: installs the real clients
# the tests drive (curl, the openai Python SDK) when they are missing, then
# runs every test. A missing client is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

# curl and the openai SDK are the real clients; nginx (with openssl for its
# test certificates) is the TLS server the https tests run against.
missing=()
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! python3 -c 'import openai' 2>/dev/null; then
  echo "test.sh: installing the openai Python SDK" >&2
  python3 -m pip install --quiet --disable-pip-version-check openai
fi

# Unit, integration and doc tests (benches and the soak are not run here).
cargo test "$@"
