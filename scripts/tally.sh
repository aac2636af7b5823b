# Sourced by scripts/test.sh and scripts/test-fast.sh: adds the offline
# artifact checks (chart, OpenAPI document, layers) to the cargo results in
# $LOG and ends the run with one line, "Total: N passed, M failed".
# Reads LOG, ROOT and status (0 unless a cargo run failed); exits.
tally() {
  local passed failed
  read -r passed failed < <(awk '/^test result:/ {
      for (i = 1; i <= NF; i++) {
        if ($(i+1) ~ /^passed/) p += $i
        if ($(i+1) ~ /^failed/) f += $i
      }
    } END { print p + 0, f + 0 }' "$LOG")
  if "$ROOT/scripts/check-artifacts.sh"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); status=1
  fi
  echo
  echo "Total: $passed passed, $failed failed${1:+ ($1)}"
  if [[ $status -eq 0 && $passed -eq 0 ]]; then
    echo "no test ran" >&2
    exit 1
  fi
  exit "$status"
}
