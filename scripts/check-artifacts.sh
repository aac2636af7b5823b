#!/usr/bin/env bash
# Offline checks of what ships besides the binaries, in a cached virtualenv:
# - the Helm chart: lint, render, validate (scripts/check_chart.py, with the
#   Helm SDK of helm-python-sdk and the schemas of kubernetes-validate; no
#   helm binary, no cluster);
# - docs/openapi.json: a valid OpenAPI 3.1 document (openapi-spec-validator;
#   the Rust tests keep it equal to what the code generates and serves);
# - the code's layers: no two modules of a crate import each other
#   (scripts/check_layers.py).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${PREWARM_CACHE:-$HOME/.cache/prewarm}"
VENV="$CACHE/check-venv"
if ! "$VENV/bin/python" -c 'import helm_python, kubernetes_validate, yaml, openapi_spec_validator' 2>/dev/null; then
  echo "[check] installing helm-python-sdk, kubernetes-validate, openapi-spec-validator into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'helm-python-sdk>=0.2,<0.3' 'kubernetes-validate>=1.30' 'pyyaml>=6' \
    'openapi-spec-validator>=0.7,<1'
fi
"$VENV/bin/python" "$ROOT/scripts/check_chart.py"
"$VENV/bin/openapi-spec-validator" "$ROOT/docs/openapi.json"
python3 "$ROOT/scripts/check_layers.py"
