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
# The Helm chart, the OpenAPI document and the layers, then the total.
source "$ROOT/scripts/tally.sh"
tally
