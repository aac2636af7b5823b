#!/usr/bin/env bash
# Lints, renders and validates the Helm chart offline (scripts/check_chart.py)
# in a cached virtualenv holding the Helm SDK (helm-python-sdk) and the
# Kubernetes schemas (kubernetes-validate); no helm binary, no cluster.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${PREWARM_CACHE:-$HOME/.cache/prewarm}"
VENV="$CACHE/chart-venv"
if ! "$VENV/bin/python" -c 'import helm_python, kubernetes_validate, yaml' 2>/dev/null; then
  echo "[chart] installing helm-python-sdk and kubernetes-validate into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'helm-python-sdk>=0.2,<0.3' 'kubernetes-validate>=1.30' 'pyyaml>=6'
fi
exec "$VENV/bin/python" "$ROOT/scripts/check_chart.py"
