#!/usr/bin/env bash
# The fuzz tier: each libFuzzer target in fuzz/ runs for a bounded time
# over its committed corpus (fuzz/corpus/<target>/).
#
#   scripts/fuzz.sh                 every target, FUZZ_SECS each (default 600)
#   scripts/fuzz.sh cursor headers  only these
#
# cargo-fuzz needs nightly-only compiler flags (-Zsanitizer=address, the
# sancov passes); the installed stable toolchain accepts them with
# RUSTC_BOOTSTRAP=1, set here for these builds only (no nightly toolchain is
# fetched). cargo-fuzz itself is installed once (cargo install, cached in
# ~/.cargo/bin). A crash leaves its input in fuzz/artifacts/<target>/ and
# fails the run: turn it into a regression test (a unit test next to the
# code, and the input into fuzz/regressions/<target>/, which every run reads
# and no run rewrites) before fixing it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECS="${FUZZ_SECS:-600}"
export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "[fuzz] installing cargo-fuzz (once)"
  cargo install cargo-fuzz --locked >/dev/null
fi
cd "$ROOT/fuzz"
export RUSTC_BOOTSTRAP=1
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build -O
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  dirs=("corpus/$t")
  [[ -d "regressions/$t" ]] && dirs+=("regressions/$t")
  echo "[fuzz] $t for ${SECS}s"
  if cargo fuzz run -O "$t" "${dirs[@]}" -- -max_total_time="$SECS" -print_final_stats=1 2>"$ROOT/.run/fuzz-$t.log"; then
    grep -E "^stat::number_of_executed_units|^Done" "$ROOT/.run/fuzz-$t.log" | tail -2 | sed "s/^/[fuzz] $t: /"
  else
    echo "[fuzz] $t: CRASH, see .run/fuzz-$t.log and fuzz/artifacts/$t/" >&2
    status=1
  fi
done
exit "$status"
