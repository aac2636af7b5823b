#!/usr/bin/env bash
# Runs the whole test suite against the local stack and ends with one
# summary line over every test binary: "Total: N passed, M failed".
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$ROOT/.run"
LOG="$ROOT/.run/test.log"
cd "$ROOT"
# The crash tests run the real worker binary as a child process.
cargo build --workspace --bins 2>&1 | tail -1
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
read -r passed failed < <(awk '/^test result:/ {
    for (i = 1; i <= NF; i++) {
      if ($(i+1) ~ /^passed/) p += $i
      if ($(i+1) ~ /^failed/) f += $i
    }
  } END { print p + 0, f + 0 }' "$LOG")
# The Helm chart: lint, render, validate, settings in step.
if "$ROOT/scripts/check-artifacts.sh"; then
  passed=$(( ${passed:-0} + 1 ))
else
  failed=$(( ${failed:-0} + 1 )); status=1
fi
echo
echo "Total: ${passed:-0} passed, ${failed:-0} failed"
if [[ $status -eq 0 && ${passed:-0} -eq 0 ]]; then
  echo "no test ran" >&2
  exit 1
fi
exit "$status"
