#!/usr/bin/env bash
# Nix checks CI can run without fetching nixpkgs (standalone; .ci/run calls it):
#   1. nix-instantiate --parse on every .nix file (Debian's nix-bin): syntax
#      errors and unbound variables.
#   2. deadnix --fail: unused bindings and arguments.
#   3. the binary's own `--check --no-secrets` on the router settings of
#      nix/test-config.nix (a plain attrset: no nixpkgs lib needed), when a
#      built llmhop is available (LLMHOP_BIN, else target/{release,debug}).
#   4. the full module evaluation with nix-verify (real nixpkgs lib and
#      quadlet-nix, systemd-analyze verify/security, shellcheck, nix/checks.nix)
#      only when its inputs are present: NIX_VERIFY (the kit), NIXPKGS_LIB and
#      QUADLET_NIX. CI has none of them, so this stage says SKIP.
# Installs nix-bin with apt-get and deadnix with `cargo install --locked` when
# missing. Exit status: non-zero if any stage that ran failed.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
fail=0
step() { printf '\n== %s\n' "$*"; }
indent() { sed 's/^/  /'; }

mapfile -t nix_files < <(find . -name '*.nix' -not -path './.git/*' -not -path './target/*' \
  -not -path './fuzz/target/*' | sort)

step "nix-instantiate --parse (${#nix_files[@]} files)"
if ! command -v nix-instantiate >/dev/null; then
  if command -v apt-get >/dev/null; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nix-bin >/dev/null
  else
    echo "FAIL: nix-instantiate missing and no apt-get to install nix-bin"; exit 1
  fi
fi
for f in "${nix_files[@]}"; do
  if err="$(nix-instantiate --parse "$f" 2>&1 >/dev/null)"; then
    echo "ok   $f"
  else
    echo "FAIL $f"; indent <<<"$err"; fail=1
  fi
done

step "deadnix --fail"
if ! command -v deadnix >/dev/null; then
  cargo install --locked deadnix
fi
if deadnix --fail "${nix_files[@]}"; then echo "ok   no unused code"; else fail=1; fi

step "llmhop --check --no-secrets on nix/test-config.nix's settings"
bin="${LLMHOP_BIN:-}"
if [ -z "$bin" ]; then
  for b in target/release/llmhop target/debug/llmhop; do
    if [ -x "$b" ]; then bin="$b"; break; fi
  done
fi
if [ -z "$bin" ]; then
  echo "SKIP: no llmhop binary (build first or set LLMHOP_BIN)"
else
  tmp="$(mktemp /tmp/llmhop-test-config.XXXXXX.json)"
  nix-instantiate --eval --strict --json \
    -E '(import ./nix/test-config.nix).services.llmhop.settings' >"$tmp"
  if out="$("$bin" --check --no-secrets --config "$tmp" 2>&1)"; then
    echo "ok   $bin accepts it"; indent <<<"$out"
  else
    echo "FAIL $bin rejects it:"; indent <<<"$out"; fail=1
  fi
  rm -f "$tmp"
fi

step "systemd-analyze on the module's rendered units (nix/rendered)"
# nix/rendered holds the system units the module generates for
# nix/test-config.nix, as nix-verify rendered them (refresh: see README,
# "Verifying the module without a Nix machine"). Their /nix/store programs
# do not exist here, so ExecStart points at /usr/bin/true for `verify`.
if ! command -v systemd-analyze >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q systemd >/dev/null
fi
rendered="$(mktemp -d /tmp/llmhop-rendered.XXXXXX)"
for f in nix/rendered/*.service; do
  sed -E 's#"?/nix/store/[^" ]*/bin/[^" ]*"?#/usr/bin/true#' "$f" >"$rendered/$(basename "$f")"
done
for u in "$rendered"/*.service; do
  msg="$(cd /tmp && systemd-analyze verify --man=no "$u" 2>&1)" || true
  if [ -n "$msg" ]; then echo "FAIL verify $(basename "$u")"; indent <<<"$msg"; fail=1; else echo "ok   verify $(basename "$u")"; fi
  # Issue 6: exposure below 2.0 (the threshold is in tenths).
  if line="$(systemd-analyze security --offline=true --threshold=20 "$u" 2>&1 | tail -n1)" \
    && systemd-analyze security --offline=true --threshold=20 "$u" >/dev/null 2>&1; then
    echo "ok   $line"
  else
    echo "FAIL $line"; fail=1
  fi
done
rm -rf "$rendered"

step "module evaluation and unit checks (nix-verify)"
if [ -n "${NIX_VERIFY:-}" ] && [ -n "${NIXPKGS_LIB:-}" ] && [ -n "${QUADLET_NIX:-}" ] \
  && [ -x "$NIX_VERIFY/verify-module.sh" ]; then
  if NIXPKGS_LIB="$NIXPKGS_LIB" "$NIX_VERIFY/verify-module.sh" \
    --quadlet "$QUADLET_NIX/modules/nixos.nix" --checks nix/checks.nix \
    nixos-module.nix nix/test-config.nix; then :; else fail=1; fi
else
  echo "SKIP: needs NIX_VERIFY, NIXPKGS_LIB and QUADLET_NIX (the real nixpkgs lib and"
  echo "      quadlet-nix are not fetched in CI); run it before releasing, see README.md"
fi

step "result"
if [ "$fail" -eq 0 ]; then echo "PASS"; else echo "FAIL"; fi
exit "$fail"
