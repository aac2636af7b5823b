#!/usr/bin/env bash
# Property-based API contract test with schemathesis (PyPI).
#
#   scripts/schemathesis.sh install         venv under $PREWARM_CACHE (default ~/.cache/prewarm),
#                                           schemathesis pinned; a no-op when already there
#   scripts/schemathesis.sh run BASE_URL    test the API at BASE_URL against its own /openapi.json
#
# `run` reads (the e2e test `api_contract` sets them):
#   PREWARM_ST_KEY_A, PREWARM_ST_KEY_B   two companies' API keys (required): every call is made as
#                                        A; the hooks replay what A could read as B
#   PREWARM_ST_ADMIN_TOKEN               the admin token, for /admin/* (optional: else they get A's key)
#   PREWARM_ST_TEMPLATE_PRIVATE          A's private template   } optional ids the hooks put into
#   PREWARM_ST_TEMPLATE_PUBLIC           B's public template    } paths and bodies, so that calls
#   PREWARM_ST_DESIGN                    A's design             } reach the 2xx paths
#   PREWARM_ST_SEED (default 20261124), PREWARM_ST_MAX_EXAMPLES (default 25), PREWARM_ST_WORKERS (1),
#   PREWARM_ST_TIMEOUT (default 300 s: the whole run is killed after it),
#   PREWARM_ST_CHECKS (default: the list below; `all` adds schemathesis' positive_data_acceptance and
#   negative_data_rejection: with the hooks' valid test data (current ETags, real images, policies
#   that fire, fresh idempotency keys) they pass but for one case the coverage phase builds itself,
#   an empty `metadata` part in a request it calls valid, which the API rightly answers 400)
# Extra arguments after BASE_URL go to `schemathesis run` as they are (e.g. --include-path /designs).
# A failure prints the seed and a curl line for each failing request.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${PREWARM_CACHE:-$HOME/.cache/prewarm}"
VENV="$CACHE/schemathesis-venv"
ST_VERSION="4.32.5"
# schemathesis' own, then the two of tests/schemathesis/hooks.py.
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance
CHECKS+=,response_headers_conformance,response_schema_conformance
CHECKS+=,tenant_isolation,opaque_server_errors
CHECKS="${PREWARM_ST_CHECKS:-$CHECKS}"

log() { printf '[schemathesis] %s\n' "$*" >&2; }

installed_version() {
  "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null || true
}

install() {
  if [[ "$(installed_version)" == "$ST_VERSION" ]]; then return; fi
  log "installing schemathesis $ST_VERSION into $VENV"
  mkdir -p "$CACHE"
  [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$ST_VERSION"
  [[ "$(installed_version)" == "$ST_VERSION" ]] || { log "install failed"; return 1; }
}

run() {
  local base=${1:?usage: $0 run BASE_URL [schemathesis options]}; shift
  base=${base%/}
  : "${PREWARM_ST_KEY_A:?PREWARM_ST_KEY_A (the API key of tenant A) is required}"
  : "${PREWARM_ST_KEY_B:?PREWARM_ST_KEY_B (the API key of tenant B) is required}"
  install
  local seed=${PREWARM_ST_SEED:-20261124}
  log "seed $seed (PREWARM_ST_SEED=$seed reproduces this run)"
  # A scratch working directory: no stray schemathesis.toml is picked up and
  # nothing is written into the work tree.
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  cd "$WORK"
  PREWARM_ST_BASE="$base" SCHEMATHESIS_HOOKS="$ROOT/tests/schemathesis/hooks.py" PYTHONDONTWRITEBYTECODE=1 \
    timeout --kill-after=10 "${PREWARM_ST_TIMEOUT:-300}" \
    "$VENV/bin/schemathesis" run "$base/openapi.json" \
    --url "$base" \
    --checks "$CHECKS" \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "${PREWARM_ST_MAX_EXAMPLES:-25}" \
    --seed "$seed" \
    --workers "${PREWARM_ST_WORKERS:-1}" \
    --request-timeout 20 \
    --generation-database none \
    --suppress-health-check all \
    --no-color \
    "$@"
}

case "${1:-}" in
  install) install ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 install | run BASE_URL [schemathesis options]" >&2; exit 2 ;;
esac
