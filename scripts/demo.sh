#!/usr/bin/env bash
# The demo: starts what it uses (PostgreSQL, Redis, moto for S3, and the
# workspace's dev-broker for Kafka: librdkafka's mock cluster, up in
# milliseconds), starts template-api and warmup-worker, runs the demo client
# against them, and stops the services and the broker again (the stack's
# servers stay up for the next run). No tansu and no hardened servers:
# `make test` and `make bench` bring those up.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
started=$SECONDS
RUN="$ROOT/.run"; mkdir -p "$RUN"
# The build (most of a first run) goes on while the stack installs and
# starts (moto's install is mostly waiting on the network).
cargo build -q --bin template-api --bin warmup-worker --bin recommender --bin demo --bin dev-broker \
  >"$RUN/demo-build.log" 2>&1 & BUILD=$!
trap 'kill "$BUILD" 2>/dev/null || true' EXIT
"$ROOT/scripts/stack.sh" demo

# The services read every PREWARM_* variable as a setting and refuse the
# ones they do not know, such as the scripts' own (PREWARM_CACHE,
# PREWARM_S3_PORT, ...): they start from config/dev.env alone.
for name in $(compgen -v PREWARM_); do unset "$name"; done
set -a; source "$ROOT/config/dev.env"; set +a
# The demo's database from a build before the baseline migration cannot be
# migrated (the services refuse it): it holds nothing but demo data.
if psql -h 127.0.0.1 -U postgres -d prewarm_dev -tAc \
  "SELECT 1 FROM __diesel_schema_migrations WHERE version < '20261209000001' LIMIT 1" 2>/dev/null | grep -q 1; then
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE prewarm_dev"
fi
psql -h 127.0.0.1 -U postgres -tc "SELECT 1 FROM pg_database WHERE datname = 'prewarm_dev'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE prewarm_dev"

wait "$BUILD" || { cat "$RUN/demo-build.log" >&2; exit 1; }
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
built=$SECONDS

# The services stop first, then the broker they talk to.
PIDS=(); BROKER=
stop() {
  if ((${#PIDS[@]})); then
    kill "${PIDS[@]}" 2>/dev/null || true
    wait "${PIDS[@]}" 2>/dev/null || true
  fi
  if [[ -n $BROKER ]]; then
    kill "$BROKER" 2>/dev/null || true
    wait "$BROKER" 2>/dev/null || true
  fi
}
trap stop EXIT
BOOTSTRAP_FILE="$RUN/dev-broker.bootstrap"
rm -f "$BOOTSTRAP_FILE"
DEV_BROKER_TOPIC="$PREWARM_KAFKA__TOPIC" DEV_BROKER_BOOTSTRAP_FILE="$BOOTSTRAP_FILE" \
  "$BIN"/dev-broker >"$RUN/dev-broker.log" 2>&1 & BROKER=$!
for _ in $(seq 1 100); do
  [[ -s "$BOOTSTRAP_FILE" ]] && break
  kill -0 "$BROKER" 2>/dev/null || { cat "$RUN/dev-broker.log"; exit 1; }
  sleep 0.1
done
[[ -s "$BOOTSTRAP_FILE" ]] || { echo "dev-broker wrote no address in 10 s" >&2; cat "$RUN/dev-broker.log" >&2; exit 1; }
export PREWARM_KAFKA__BROKERS; PREWARM_KAFKA__BROKERS=$(cat "$BOOTSTRAP_FILE")
# The mock cluster has the topic already and serves no CreateTopics.
export PREWARM_KAFKA__CREATE_TOPIC=false

"$BIN"/template-api >"$RUN/template-api.log" 2>&1 & PIDS+=($!); API=$!
"$BIN"/warmup-worker >"$RUN/warmup-worker.log" 2>&1 & PIDS+=($!)
# The stand-in recommendation service (900 ms a call), for similar templates.
RECOMMENDER_ADDR=127.0.0.1:9100 "$BIN"/recommender >"$RUN/recommender.log" 2>&1 & PIDS+=($!)

for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:${PREWARM_SERVER__PORT}/readyz" >/dev/null && break
  kill -0 $API 2>/dev/null || { cat "$RUN/template-api.log"; exit 1; }
  sleep 0.2
done
"$BIN"/demo "http://127.0.0.1:${PREWARM_SERVER__PORT}"
echo "(service logs: $RUN/template-api.log, $RUN/warmup-worker.log, $RUN/dev-broker.log)"
echo "(demo: $((SECONDS - started)) s in all, $((built - started)) s of them starting servers and building)"
