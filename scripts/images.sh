#!/usr/bin/env bash
# Builds both services' container images with a real Docker engine, runs
# them against the local stack and smoke-tests them (`make images`).
#
#   1. installs Debian's docker.io and debootstrap if missing, and starts a
#      dockerd of its own (own data root and socket, --bridge=none
#      --iptables=false; containers run with --network host);
#   2. makes the runtime base image from Debian packages (debootstrap
#      --variant=minbase bookworm, then `docker import`), since no image
#      registry is reachable here; cached in the engine's data root;
#   3. builds the release binaries on the host and the images from
#      deploy/docker/Dockerfile (target `runtime`, BINARY_FROM=prebuilt,
#      RUNTIME_BASE=the local base);
#   4. runs template-api and warmup-worker as containers against the local
#      stack (`make up`) on a database, bucket, topic and key prefix of their
#      own, waits for /readyz, runs the demo client through them (a warm
#      design must be served from the pool), waits for Docker's HEALTHCHECK
#      to report both healthy, checks they run as uid 10001, and reports the
#      image sizes (also in .run/images-report.txt).
#
# The `build` stage (compiling inside the engine from a rust image) is not
# exercised here: it needs the rust:bookworm image from a registry.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${PREWARM_CACHE:-$HOME/.cache/prewarm}"
RUN="$ROOT/.run"
DATA_ROOT="$CACHE/docker"
SOCK="$RUN/docker.sock"
BASE_IMAGE="prewarm/debian-base:bookworm-2"
REPORT="$RUN/images-report.txt"
API_PORT="${PREWARM_IMAGES_API_PORT:-18080}"
WORKER_PORT="${PREWARM_IMAGES_WORKER_PORT:-19091}"
REC_PORT="${PREWARM_IMAGES_RECOMMENDER_PORT:-19100}"
SUFFIX="images"
mkdir -p "$RUN" "$CACHE"

log() { printf '[images] %s\n' "$*" >&2; }
# Debian's client (20.10) speaks to Debian's engine; BuildKit is built in.
docker_() { DOCKER_BUILDKIT=1 /usr/bin/docker -H "unix://$SOCK" "$@"; }

install() {
  local missing=()
  [[ -x /usr/sbin/dockerd ]] || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

start_engine() {
  if docker_ info >/dev/null 2>&1; then log "dockerd is up"; return; fi
  log "starting dockerd (data root $DATA_ROOT)"
  mkdir -p "$DATA_ROOT" "$CACHE/docker-exec"
  nohup /usr/sbin/dockerd --data-root "$DATA_ROOT" --exec-root "$CACHE/docker-exec" \
    --host "unix://$SOCK" --pidfile "$RUN/dockerd.pid" \
    --bridge=none --iptables=false --ip-masq=false >"$RUN/dockerd.log" 2>&1 &
  for _ in $(seq 1 120); do
    docker_ info >/dev/null 2>&1 && { log "dockerd is up"; return; }
    sleep 0.5
  done
  tail -20 "$RUN/dockerd.log" >&2
  return 1
}

# The apt mirror this machine uses (deb.debian.org unless configured otherwise).
mirror() {
  local uri
  uri=$(grep -rhoE '^URIs: \S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | cut -d' ' -f2 || true)
  [[ -n "$uri" ]] || uri=$(grep -hoE '^deb \S+' /etc/apt/sources.list 2>/dev/null | head -1 | cut -d' ' -f2 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

make_base() {
  if docker_ image inspect "$BASE_IMAGE" >/dev/null 2>&1; then log "base image $BASE_IMAGE cached"; return; fi
  local rootfs="$CACHE/rootfs-bookworm"
  rm -rf "$rootfs"
  log "debootstrap bookworm (minbase) from $(mirror)"
  debootstrap --variant=minbase --include=ca-certificates,zlib1g,libssl3 bookworm "$rootfs" "$(mirror)" \
    >"$RUN/debootstrap.log" 2>&1 || { tail -20 "$RUN/debootstrap.log" >&2; return 1; }
  # What a slim image leaves out: apt lists, docs, man pages, caches.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
  tar -C "$rootfs" -c . | docker_ import - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  log "base image $BASE_IMAGE made"
}

build_images() {
  log "building release binaries"
  (cd "$ROOT" && cargo build --release --locked -p template-api -p warmup-worker 2>&1 | tail -1)
  for svc in template-api warmup-worker; do
    log "building image prewarm/$svc:local"
    docker_ build --network host -f "$ROOT/deploy/docker/Dockerfile" --target runtime \
      --build-arg SERVICE="$svc" --build-arg BINARY_FROM=prebuilt \
      --build-arg RUNTIME_BASE="$BASE_IMAGE" -t "prewarm/$svc:local" "$ROOT" >"$RUN/image-$svc.log" 2>&1 \
      || { tail -30 "$RUN/image-$svc.log" >&2; return 1; }
  done
}

env_args() {
  cat <<EOF
-e PREWARM_ADMIN_TOKEN=images-admin-token-not-a-secret
-e PREWARM_DATABASE__URL=postgres://postgres@127.0.0.1:5432/prewarm_$SUFFIX
-e PREWARM_REDIS__URL=redis://127.0.0.1:6379
-e PREWARM_REDIS__KEY_PREFIX=prewarm:$SUFFIX:
-e PREWARM_KAFKA__BROKERS=127.0.0.1:9092
-e PREWARM_KAFKA__TOPIC=prewarm.$SUFFIX
-e PREWARM_KAFKA__CREATE_TOPIC=true
-e PREWARM_S3__ENDPOINT=http://127.0.0.1:9000
-e PREWARM_S3__BUCKET=prewarm-$SUFFIX
-e PREWARM_S3__ACCESS_KEY_ID=images
-e PREWARM_S3__SECRET_ACCESS_KEY=images
-e PREWARM_SERVER__HOST=127.0.0.1
-e PREWARM_SERVER__PORT=$API_PORT
-e PREWARM_SERVER__METRICS_PORT=0
-e PREWARM_WORKER__HTTP_HOST=127.0.0.1
-e PREWARM_WORKER__HTTP_PORT=$WORKER_PORT
-e PREWARM_WORKER__GROUP_ID=prewarm-$SUFFIX
-e PREWARM_SIMILAR__UPSTREAM_URL=http://127.0.0.1:$REC_PORT
EOF
}

cleanup() {
  docker_ rm -f prewarm-images-api prewarm-images-worker >/dev/null 2>&1 || true
  [[ -n "${REC_PID:-}" ]] && kill "$REC_PID" 2>/dev/null || true
}

smoke() {
  "$ROOT/scripts/stack.sh" up
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS prewarm_$SUFFIX WITH (FORCE)"
  psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE prewarm_$SUFFIX"
  curl -sf -X PUT "http://127.0.0.1:9000/prewarm-$SUFFIX" >/dev/null || true
  (cd "$ROOT" && cargo build -q --bin demo --bin recommender)
  trap cleanup EXIT
  cleanup
  PREWARM_DATABASE__URL="postgres://postgres@127.0.0.1:5432/prewarm_$SUFFIX" RECOMMENDER_ADDR="127.0.0.1:$REC_PORT" \
    "$ROOT/target/debug/recommender" >"$RUN/images-recommender.log" 2>&1 &
  REC_PID=$!
  # shellcheck disable=SC2046
  docker_ run -d --name prewarm-images-api --network host $(env_args) prewarm/template-api:local >/dev/null
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$API_PORT/readyz" >/dev/null && break
    sleep 0.3
  done
  curl -sf "http://127.0.0.1:$API_PORT/readyz" >/dev/null \
    || { docker_ logs prewarm-images-api | tail -20 >&2; return 1; }
  log "template-api container is ready"
  # The API migrated the database; the worker need not.
  # shellcheck disable=SC2046
  docker_ run -d --name prewarm-images-worker --network host $(env_args) \
    -e PREWARM_DATABASE__MIGRATE=false prewarm/warmup-worker:local >/dev/null
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$WORKER_PORT/readyz" >/dev/null && break
    sleep 0.3
  done
  curl -sf "http://127.0.0.1:$WORKER_PORT/readyz" >/dev/null \
    || { docker_ logs prewarm-images-worker | tail -20 >&2; return 1; }
  log "warmup-worker container is ready"

  PREWARM_ADMIN_TOKEN=images-admin-token-not-a-secret "$ROOT/target/debug/demo" "http://127.0.0.1:$API_PORT" | tee "$RUN/images-demo.txt"
  grep -qE '^[0-9]+ +pool ' "$RUN/images-demo.txt" || { log "no design was served from the pool"; return 1; }

  log "waiting for Docker's HEALTHCHECK (interval 15 s)"
  local api_health worker_health
  for _ in $(seq 1 60); do
    api_health=$(docker_ inspect -f '{{.State.Health.Status}}' prewarm-images-api)
    worker_health=$(docker_ inspect -f '{{.State.Health.Status}}' prewarm-images-worker)
    [[ "$api_health" == healthy && "$worker_health" == healthy ]] && break
    sleep 1
  done
  [[ "$api_health" == healthy && "$worker_health" == healthy ]] \
    || { log "health: api $api_health, worker $worker_health"; return 1; }

  {
    echo "images built and smoke-tested on $(date -u +%Y-%m-%dT%H:%M:%SZ) ($(uname -m), Docker engine $(docker_ version -f '{{.Server.Version}}'))"
    for svc in template-api warmup-worker; do
      local name=prewarm-images-api bytes uid health binary
      [[ $svc == warmup-worker ]] && name=prewarm-images-worker
      bytes=$(docker_ image inspect -f '{{.Size}}' "prewarm/$svc:local")
      uid=$(docker_ exec "$name" id -u)
      health=$(docker_ inspect -f '{{.State.Health.Status}}' "$name")
      binary=$(docker_ exec "$name" stat -c %s /usr/local/bin/service)
      [[ "$uid" == 10001 ]] || { echo "$svc runs as uid $uid, not 10001"; return 1; }
      printf '%-14s image %5d MB  binary %4d MB  uid %s  health %s\n' "$svc" \
        $((bytes / 1000000)) $((binary / 1000000)) "$uid" "$health"
    done
    echo "base $BASE_IMAGE: $(( $(docker_ image inspect -f '{{.Size}}' "$BASE_IMAGE") / 1000000 )) MB"
  } | tee "$REPORT"
  log "smoke test passed (report: $REPORT)"
}

case "${1:-all}" in
  engine) install; start_engine ;;
  build) install; start_engine; make_base; build_images ;;
  all) install; start_engine; make_base; build_images; smoke ;;
  stop)
    if [[ -f "$RUN/dockerd.pid" ]]; then kill "$(cat "$RUN/dockerd.pid")" 2>/dev/null || true; fi ;;
  *) echo "usage: $0 [all|build|engine|stop]" >&2; exit 2 ;;
esac
