#!/usr/bin/env bash
# Brings the stack up, starts template-api and warmup-worker, runs the demo
# client against them, and stops the two services again.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/stack.sh" up
RUN="$ROOT/.run"; mkdir -p "$RUN"

set -a; source "$ROOT/config/dev.env"; set +a
psql -h 127.0.0.1 -U postgres -tc "SELECT 1 FROM pg_database WHERE datname = 'prewarm_dev'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE prewarm_dev"

cargo build -q --bin template-api --bin warmup-worker --bin recommender --bin demo
./target/debug/template-api >"$RUN/template-api.log" 2>&1 & API=$!
./target/debug/warmup-worker >"$RUN/warmup-worker.log" 2>&1 & WORKER=$!
# The stand-in recommendation service (900 ms a call), for similar templates.
RECOMMENDER_ADDR=127.0.0.1:9100 ./target/debug/recommender >"$RUN/recommender.log" 2>&1 & REC=$!
trap 'kill $API $WORKER $REC 2>/dev/null; wait $API $WORKER $REC 2>/dev/null || true' EXIT

for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:${PREWARM_SERVER__PORT}/readyz" >/dev/null && break
  kill -0 $API 2>/dev/null || { cat "$RUN/template-api.log"; exit 1; }
  sleep 0.2
done
./target/debug/demo "http://127.0.0.1:${PREWARM_SERVER__PORT}"
echo "(service logs: $RUN/template-api.log, $RUN/warmup-worker.log)"
