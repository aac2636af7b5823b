#!/usr/bin/env bash
# The fast tier: no server at all. Every crate's unit and property tests
# (sizing, validation, the object-key scheme, error codes and their mapping,
# settings, pool policies and cron, the OpenAPI document, fair shares), the
# cross-crate settings checks (tests/fast), and the offline checks of the
# Helm chart and docs/openapi.json. Under 60 s once built; ends with one line
# "Total: N passed, M failed" like scripts/test.sh.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$ROOT/.run"
LOG="$ROOT/.run/test-fast.log"
cd "$ROOT"
started=$SECONDS
{
  cargo test --workspace --lib --bins --no-fail-fast "$@" 2>&1
  echo "cargo-status $?"
  cargo test -p prewarm-tests --test fast --no-fail-fast "$@" 2>&1
  echo "cargo-status $?"
} | tee "$LOG"
status=0
grep -q '^cargo-status [^0]' "$LOG" && status=1
source "$ROOT/scripts/tally.sh"
tally "$((SECONDS - started)) s"
