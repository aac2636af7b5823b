#!/usr/bin/env bash
# Prewarm's local stack, all on 127.0.0.1.
#
#   scripts/stack.sh up        the core every test needs: PostgreSQL, Redis, a
#                              Kafka-protocol broker (tansu) and an S3-protocol
#                              server (moto)
#   scripts/stack.sh hardened  the servers only the connectivity tests use:
#                              test certificates (~/.cache/prewarm/tls/), a
#                              TLS-only PostgreSQL cluster, PgBouncer in
#                              transaction mode, a TLS-only Redis with an ACL
#                              user, a 3-primary Redis Cluster, a Redis
#                              Sentinel, a TLS-only Kafka listener (stunnel4
#                              in front of a second tansu); and schemathesis,
#                              the API contract test's tool
#   scripts/stack.sh demo      what `make demo` uses: PostgreSQL, Redis, moto
#                              (its broker is the workspace's dev-broker)
#   scripts/stack.sh bench     PostgreSQL, Redis, tansu and s3s-fs, the fast
#                              S3 server the benchmarks use
#   scripts/stack.sh down      stop what this script started
#   scripts/stack.sh status    one line per core service
#
# Each command installs what is missing, starts what is down and waits until
# it answers. Idempotent: running one twice starts nothing twice. Slow
# installs are cached under $PREWARM_CACHE (default ~/.cache/prewarm).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${PREWARM_CACHE:-$HOME/.cache/prewarm}"
RUN="$ROOT/.run"
TOOLS="$CACHE/tools"
VENV="$CACHE/venv"
export PATH="$TOOLS/bin:$VENV/bin:$HOME/.cargo/bin:$PATH"

PG_PORT=5432
REDIS_PORT=6379
KAFKA_PORT="${PREWARM_KAFKA_PORT:-9092}"
S3_PORT="${PREWARM_S3_PORT:-9000}"
TOPIC="${PREWARM_TOPIC:-prewarm.warmup}"
BUCKET="${PREWARM_BUCKET:-prewarm}"
TANSU_VERSION="0.6.0"

mkdir -p "$RUN" "$CACHE"

log() { printf '[stack] %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # name, seconds, command...
  local name=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then
      log "$name did not answer within ${secs}s"
      return 1
    fi
    sleep 0.5
  done
  log "$name is up"
}

start_postgres() {
  if pg_isready -q -h 127.0.0.1 -p "$PG_PORT" 2>/dev/null; then log "postgres is up"; return; fi
  if ! command -v pg_ctlcluster >/dev/null; then
    log "installing postgresql"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  log "starting postgres"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  wait_for postgres 60 pg_isready -q -h 127.0.0.1 -p "$PG_PORT"
}

start_redis() {
  if redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; then log "redis is up"; return; fi
  if ! command -v redis-server >/dev/null; then
    log "installing redis"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  log "starting redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for redis 30 sh -c "redis-cli -h 127.0.0.1 -p $REDIS_PORT ping | grep -q PONG"
}

install_tansu() {
  if [[ -x "$TOOLS/bin/tansu" ]] && "$TOOLS/bin/tansu" --help >/dev/null 2>&1; then return; fi
  log "building tansu $TANSU_VERSION with the in-memory storage engine (about 10 minutes on 2 cores; cached in $TOOLS)"
  cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore --root "$TOOLS" >"$CACHE/tansu-build.log" 2>&1 \
    || { tail -30 "$CACHE/tansu-build.log" >&2; return 1; }
}

start_tansu() {
  install_tansu
  if ! port_open "$KAFKA_PORT"; then
    log "starting tansu on 127.0.0.1:$KAFKA_PORT"
    nohup tansu broker --storage-engine memory://tansu/ \
      --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      >"$RUN/tansu.log" 2>&1 &
    echo $! >"$RUN/tansu.pid"
    wait_for tansu 60 port_open "$KAFKA_PORT"
  else
    log "tansu is up"
  fi
  if ! tansu topic list --broker "tcp://127.0.0.1:$KAFKA_PORT" 2>/dev/null | grep -q "$TOPIC"; then
    tansu topic create "$TOPIC" --partitions 4 --broker "tcp://127.0.0.1:$KAFKA_PORT" >/dev/null 2>&1 || true
    log "topic $TOPIC ready"
  fi
}

install_moto() {
  if [[ -x "$VENV/bin/moto_server" ]]; then return; fi
  log "installing moto[server] into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'moto[server]>=5,<6'
}

start_moto() {
  install_moto
  if ! port_open "$S3_PORT"; then
    log "starting moto (S3) on 127.0.0.1:$S3_PORT"
    nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$RUN/moto.log" 2>&1 &
    echo $! >"$RUN/moto.pid"
    wait_for moto 60 curl -sf "http://127.0.0.1:$S3_PORT/moto-api/"
  else
    log "moto is up"
  fi
  # Moto accepts unsigned requests: create the dev bucket.
  curl -sf -X PUT "http://127.0.0.1:$S3_PORT/$BUCKET" >/dev/null || true
}

S3S_PORT="${PREWARM_BENCH_S3_PORT:-9010}"
# The benchmark's S3 keeps its objects in memory (tmpfs) when it can: a
# remote S3 does not write to the database's disk, and s3s-fs's writes on it
# (GBs a run) made Postgres' commits wait behind their writeback -- the warm
# path's tail at 20 designs/s measured the stand-in's disk, not Prewarm.
if [[ -z "${PREWARM_BENCH_S3_DATA:-}" && -d /dev/shm && -w /dev/shm ]]; then
  PREWARM_BENCH_S3_DATA="/dev/shm/prewarm-s3s-$(printf '%s' "$ROOT" | sha1sum | cut -c1-8)"
fi
S3S_DATA="${PREWARM_BENCH_S3_DATA:-$RUN/s3s-data}"
S3S_VERSION="0.14.1"

start_s3s() {
  if [[ ! -x "$TOOLS/bin/s3s-fs" ]]; then
    log "building s3s-fs $S3S_VERSION (a few minutes on 2 cores; cached in $TOOLS)"
    cargo install s3s-fs --version "$S3S_VERSION" --locked --features binary --root "$TOOLS" >"$CACHE/s3s-build.log" 2>&1 \
      || { tail -30 "$CACHE/s3s-build.log" >&2; return 1; }
  fi
  # Benchmark data is disposable, and a directory grown by earlier runs slows
  # s3s-fs down: every benchmark starts it afresh on an empty directory.
  # Stopped by its pid file only: a process this script did not start is
  # never killed (if one holds the port, the wait below fails and says so).
  stop_pidfile s3s
  for _ in $(seq 1 20); do port_open "$S3S_PORT" || break; sleep 0.2; done
  if port_open "$S3S_PORT"; then
    echo "[stack] port $S3S_PORT is held by a process this script did not start (no $RUN/s3s.pid); stop it" >&2
    return 1
  fi
  # Move the old data aside and delete it (it can be large: a scale run
  # leaves 10^5 objects). Deleted before returning: a deletion left running
  # in the background cost the benchmarks' first scenarios 0.3-0.5 ms of CPU
  # per request (the `rm` rows of an earlier docs/benchmarks.md).
  if [[ -d "$S3S_DATA" ]]; then
    mv "$S3S_DATA" "$S3S_DATA.old.$$"
  fi
  local old
  for old in "$S3S_DATA".old.* "$RUN"/s3s-data "$RUN"/s3s-data.old.*; do
    [[ -e "$old" ]] || continue
    log "deleting the previous run's S3 data ($old)"
    rm -rf "$old"
  done
  mkdir -p "$S3S_DATA"
  # The benchmark deletes each finished run's bucket directory from here.
  printf '%s\n' "$S3S_DATA" >"$RUN/s3s.data"
  log "starting s3s-fs (S3) on 127.0.0.1:$S3S_PORT"
  nohup "$TOOLS/bin/s3s-fs" --host 127.0.0.1 --port "$S3S_PORT" \
    --access-key prewarm --secret-key prewarm-secret "$S3S_DATA" >"$RUN/s3s.log" 2>&1 &
  echo $! >"$RUN/s3s.pid"
  wait_for s3s-fs 30 port_open "$S3S_PORT"
}

# ---- the hardened servers (TLS) the connectivity tests use -------------
# Under the cache, not the work tree: every clone on this machine (CI's too)
# must present the certificates the running TLS servers were started with.
TLS_DIR="$CACHE/tls"
PG_TLS_PORT="${PREWARM_PG_TLS_PORT:-5433}"
PG_TLS_DATA="${PREWARM_PG_TLS_DATA:-/var/tmp/prewarm-pg-tls}"

# A test CA and a server certificate for localhost/127.0.0.1 signed by it,
# plus an unrelated CA (for "a wrong CA is refused"). Made once.
make_certs() {
  [[ -s "$TLS_DIR/server.pem" && -s "$TLS_DIR/other-ca.pem" ]] && return
  log "generating test certificates in $TLS_DIR"
  mkdir -p "$TLS_DIR"
  (
    cd "$TLS_DIR"
    for ca in ca other-ca; do
      openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=prewarm test $ca" \
        -keyout "$ca.key" -out "$ca.pem" 2>/dev/null
    done
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
      -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile server.ext -out server.pem 2>/dev/null
    chmod 644 ./*.pem ./*.key
  )
}

# A second PostgreSQL cluster that accepts TLS connections only
# (`hostssl` in pg_hba.conf, ssl=on), on $PG_TLS_PORT.
start_pg_tls() {
  make_certs
  if pg_isready -q -h 127.0.0.1 -p "$PG_TLS_PORT" 2>/dev/null; then log "postgres (TLS) is up"; return; fi
  local bin; bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  if [[ ! -s "$PG_TLS_DATA/PG_VERSION" ]]; then
    log "initdb a TLS-only postgres cluster in $PG_TLS_DATA"
    rm -rf "$PG_TLS_DATA"; mkdir -p "$PG_TLS_DATA"; chown postgres: "$PG_TLS_DATA"
    runuser -u postgres -- "$bin/initdb" -D "$PG_TLS_DATA" -U postgres --auth=trust >/dev/null
    install -o postgres -m 600 "$TLS_DIR/server.key" "$PG_TLS_DATA/server.key"
    install -o postgres -m 644 "$TLS_DIR/server.pem" "$PG_TLS_DATA/server.crt"
    cat >>"$PG_TLS_DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_TLS_PORT
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
unix_socket_directories = '$PG_TLS_DATA'
max_connections = 200
CONF
    cat >"$PG_TLS_DATA/pg_hba.conf" <<HBA
local   all all             trust
hostssl all all 127.0.0.1/32 trust
hostnossl all all 0.0.0.0/0 reject
HBA
  fi
  log "starting postgres (TLS only) on 127.0.0.1:$PG_TLS_PORT"
  runuser -u postgres -- "$bin/pg_ctl" -D "$PG_TLS_DATA" -l "$PG_TLS_DATA/server.log" -w start >/dev/null
  wait_for "postgres (TLS)" 30 pg_isready -q -h 127.0.0.1 -p "$PG_TLS_PORT"
}

REDIS_TLS_PORT="${PREWARM_REDIS_TLS_PORT:-6380}"
REDIS_CLUSTER_PORTS=(7000 7001 7002)

# A Redis that speaks TLS only (server cert from the test CA) and requires
# an ACL user, `prewarm` / `prewarm-secret`; the default user is off.
start_redis_tls() {
  make_certs
  local cli=(redis-cli -h 127.0.0.1 -p "$REDIS_TLS_PORT" --tls --cacert "$TLS_DIR/ca.pem" --user prewarm --pass prewarm-secret --no-auth-warning)
  if "${cli[@]}" ping 2>/dev/null | grep -q PONG; then log "redis (TLS) is up"; return; fi
  log "starting redis (TLS only, ACL user) on 127.0.0.1:$REDIS_TLS_PORT"
  mkdir -p "$RUN/redis-tls"
  redis-server --daemonize yes --bind 127.0.0.1 --port 0 --tls-port "$REDIS_TLS_PORT" \
    --tls-cert-file "$TLS_DIR/server.pem" --tls-key-file "$TLS_DIR/server.key" \
    --tls-ca-cert-file "$TLS_DIR/ca.pem" --tls-auth-clients no \
    --user default off --user prewarm on '>prewarm-secret' '~*' '&*' '+@all' \
    --save "" --appendonly no --dir "$RUN/redis-tls" --pidfile "$RUN/redis-tls.pid" \
    --logfile "$RUN/redis-tls.log"
  wait_for "redis (TLS)" 30 sh -c "${cli[*]} ping | grep -q PONG"
}

# Three primaries in one Redis Cluster (no replicas), on 7000-7002.
start_redis_cluster() {
  local first=${REDIS_CLUSTER_PORTS[0]}
  if redis-cli -p "$first" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; then log "redis cluster is up"; return; fi
  log "starting a 3-primary redis cluster on ${REDIS_CLUSTER_PORTS[*]}"
  local nodes=()
  for port in "${REDIS_CLUSTER_PORTS[@]}"; do
    mkdir -p "$RUN/redis-cluster/$port"
    if ! redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
      rm -f "$RUN/redis-cluster/$port/nodes.conf"
      redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --cluster-enabled yes \
        --cluster-config-file nodes.conf --cluster-node-timeout 5000 --save "" --appendonly no \
        --dir "$RUN/redis-cluster/$port" --pidfile "$RUN/redis-cluster-$port.pid" \
        --logfile "$RUN/redis-cluster/$port/redis.log"
      wait_for "redis :$port" 30 sh -c "redis-cli -p $port ping | grep -q PONG"
    fi
    nodes+=("127.0.0.1:$port")
  done
  if ! redis-cli -p "$first" cluster info | grep -q 'cluster_slots_assigned:16384'; then
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
  fi
  wait_for "redis cluster" 30 sh -c "redis-cli -p $first cluster info | grep -q cluster_state:ok"
}

KAFKA_TLS_PORT="${PREWARM_KAFKA_TLS_PORT:-9093}"
KAFKA_TLS_BACKEND_PORT="${PREWARM_KAFKA_TLS_BACKEND_PORT:-9094}"

# A Kafka listener that speaks TLS only: a second tansu broker (its own
# in-memory cluster) behind stunnel4, advertising the TLS address so every
# connection a client makes goes through TLS. tansu itself has no TLS.
start_kafka_tls() {
  make_certs
  if ! command -v stunnel4 >/dev/null; then
    log "installing stunnel4"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stunnel4 >/dev/null
  fi
  install_tansu
  if ! port_open "$KAFKA_TLS_BACKEND_PORT"; then
    log "starting tansu (behind TLS) on 127.0.0.1:$KAFKA_TLS_BACKEND_PORT"
    nohup tansu broker --storage-engine memory://tansu-tls/ \
      --listener-url "tcp://127.0.0.1:$KAFKA_TLS_BACKEND_PORT" \
      --advertised-listener-url "tcp://localhost:$KAFKA_TLS_PORT" \
      >"$RUN/tansu-tls.log" 2>&1 &
    echo $! >"$RUN/tansu-tls.pid"
    wait_for "tansu (TLS backend)" 60 port_open "$KAFKA_TLS_BACKEND_PORT"
  fi
  if ! port_open "$KAFKA_TLS_PORT"; then
    log "starting stunnel4 (Kafka TLS) on 127.0.0.1:$KAFKA_TLS_PORT"
    cat >"$RUN/stunnel-kafka.conf" <<CONF
pid = $RUN/stunnel-kafka.pid
output = $RUN/stunnel-kafka.log
[kafka]
accept = 127.0.0.1:$KAFKA_TLS_PORT
connect = 127.0.0.1:$KAFKA_TLS_BACKEND_PORT
cert = $TLS_DIR/server.pem
key = $TLS_DIR/server.key
CONF
    stunnel4 "$RUN/stunnel-kafka.conf"
    wait_for "kafka (TLS)" 30 port_open "$KAFKA_TLS_PORT"
  else
    log "kafka (TLS) is up"
  fi
}

REDIS_SENTINEL_PRIMARY_PORT="${PREWARM_REDIS_SENTINEL_PRIMARY_PORT:-6390}"
REDIS_SENTINEL_PORT="${PREWARM_REDIS_SENTINEL_PORT:-26379}"

# A Redis primary watched by a Sentinel (service name `prewarm`): clients
# ask the Sentinel where the primary is.
start_redis_sentinel() {
  if redis-cli -p "$REDIS_SENTINEL_PORT" sentinel get-master-addr-by-name prewarm 2>/dev/null | grep -q 127.0.0.1; then
    log "redis sentinel is up"; return
  fi
  mkdir -p "$RUN/redis-sentinel"
  if ! redis-cli -p "$REDIS_SENTINEL_PRIMARY_PORT" ping 2>/dev/null | grep -q PONG; then
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_SENTINEL_PRIMARY_PORT" --save "" \
      --appendonly no --dir "$RUN/redis-sentinel" --pidfile "$RUN/redis-sentinel-primary.pid" \
      --logfile "$RUN/redis-sentinel/primary.log"
    wait_for "redis (sentinel primary)" 30 sh -c "redis-cli -p $REDIS_SENTINEL_PRIMARY_PORT ping | grep -q PONG"
  fi
  log "starting redis sentinel on 127.0.0.1:$REDIS_SENTINEL_PORT"
  cat >"$RUN/redis-sentinel/sentinel.conf" <<CONF
bind 127.0.0.1
port $REDIS_SENTINEL_PORT
daemonize yes
pidfile $RUN/redis-sentinel.pid
logfile $RUN/redis-sentinel/sentinel.log
dir $RUN/redis-sentinel
sentinel monitor prewarm 127.0.0.1 $REDIS_SENTINEL_PRIMARY_PORT 1
CONF
  redis-server "$RUN/redis-sentinel/sentinel.conf" --sentinel
  wait_for "redis sentinel" 30 sh -c "redis-cli -p $REDIS_SENTINEL_PORT sentinel get-master-addr-by-name prewarm | grep -q 127.0.0.1"
}

PGBOUNCER_PORT="${PREWARM_PGBOUNCER_PORT:-6432}"
PGBOUNCER_VERSION_MIN="1.21"

# PgBouncer in transaction mode in front of the local PostgreSQL. Debian 12
# ships 1.18, which cannot carry protocol-level prepared statements (the
# driver's); so it is built from Debian 13's source package (a Debian
# package, from the same mirror), about 5 s, cached in $TOOLS.
install_pgbouncer() {
  if [[ -x "$TOOLS/bin/pgbouncer" ]]; then return; fi
  log "building pgbouncer (>= $PGBOUNCER_VERSION_MIN) from Debian trixie's source package"
  local work="$CACHE/pgbouncer-src" mirror
  mirror=$(grep -rhoE '^URIs: \S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | cut -d' ' -f2 || true)
  rm -rf "$work"; mkdir -p "$work/lists"
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror:-http://deb.debian.org/debian} trixie main" >"$work/sources.list"
  local apt=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$work/lists")
  apt-get "${apt[@]}" update -qq
  (cd "$work" && apt-get "${apt[@]}" source --download-only -qq pgbouncer) 2>/dev/null
  dpkg -s libevent-dev >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libevent-dev >/dev/null
  (
    cd "$work" && tar xzf pgbouncer_*.orig.tar.gz && cd pgbouncer-*/ &&
      ./configure --prefix="$TOOLS" --without-cares --without-pam --without-ldap --without-systemd >configure.log 2>&1 &&
      make -j2 >make.log 2>&1 && install -m 755 pgbouncer "$TOOLS/bin/pgbouncer"
  ) || { log "pgbouncer build failed (see $work)"; return 1; }
}

start_pgbouncer() {
  install_pgbouncer
  if port_open "$PGBOUNCER_PORT"; then log "pgbouncer is up"; return; fi
  mkdir -p "$RUN/pgbouncer"; chown postgres: "$RUN/pgbouncer"
  cat >"$RUN/pgbouncer/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=$PG_PORT user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = any
pool_mode = transaction
max_prepared_statements = 500
default_pool_size = 20
max_client_conn = 2000
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
logfile = $RUN/pgbouncer/pgbouncer.log
pidfile = $RUN/pgbouncer/pgbouncer.pid
INI
  chown postgres: "$RUN/pgbouncer/pgbouncer.ini"
  log "starting pgbouncer (transaction pooling) on 127.0.0.1:$PGBOUNCER_PORT"
  # Started as root, it drops to the postgres user itself (-u).
  "$TOOLS/bin/pgbouncer" -d -u postgres "$RUN/pgbouncer/pgbouncer.ini"
  wait_for pgbouncer 30 port_open "$PGBOUNCER_PORT"
}

stop_pidfile() {
  local f="$RUN/$1.pid"
  if [[ -f "$f" ]]; then
    local pid; pid=$(cat "$f")
    if kill "$pid" 2>/dev/null; then log "stopped $1 ($pid)"; fi
    rm -f "$f"
  fi
}

case "${1:-up}" in
  up)
    start_postgres
    start_redis
    start_moto
    start_tansu
    log "core ready: postgres :$PG_PORT, redis :$REDIS_PORT, kafka :$KAFKA_PORT, s3 :$S3_PORT (bucket $BUCKET)"
    ;;
  hardened)
    # Built on the machine's own servers (certificates, PgBouncer in front
    # of PostgreSQL, the Redis binaries): those come first.
    start_postgres
    start_redis
    start_pg_tls
    start_redis_tls
    start_redis_cluster
    start_kafka_tls
    start_pgbouncer
    start_redis_sentinel
    # The API contract test's tool (schemathesis, pinned, in a cached venv).
    "$ROOT/scripts/schemathesis.sh" install
    log "hardened servers ready: postgres TLS-only :$PG_TLS_PORT, pgbouncer :$PGBOUNCER_PORT, redis TLS+ACL :$REDIS_TLS_PORT, cluster :${REDIS_CLUSTER_PORTS[0]}-${REDIS_CLUSTER_PORTS[2]}, sentinel :$REDIS_SENTINEL_PORT, kafka TLS :$KAFKA_TLS_PORT"
    ;;
  demo)
    start_postgres
    start_redis
    start_moto
    ;;
  bench)
    start_postgres
    start_redis
    start_tansu
    start_s3s
    ;;
  down)
    if pg_isready -q -h 127.0.0.1 -p "$PG_TLS_PORT" 2>/dev/null; then
      runuser -u postgres -- "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/pg_ctl" \
        -D "$PG_TLS_DATA" -m fast stop >/dev/null && log "stopped postgres (TLS)"
    fi
    if [[ -f "$RUN/pgbouncer/pgbouncer.pid" ]]; then kill "$(cat "$RUN/pgbouncer/pgbouncer.pid")" 2>/dev/null && log "stopped pgbouncer"; fi
    stop_pidfile redis-sentinel
    stop_pidfile redis-sentinel-primary
    stop_pidfile stunnel-kafka
    stop_pidfile tansu-tls
    stop_pidfile redis-tls
    for port in "${REDIS_CLUSTER_PORTS[@]}"; do stop_pidfile "redis-cluster-$port"; done
    stop_pidfile s3s
    stop_pidfile tansu
    stop_pidfile moto
    log "postgres and redis are the machine's own services; left running"
    ;;
  status)
    pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && echo "postgres up" || echo "postgres down"
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && echo "redis up" || echo "redis down"
    port_open "$KAFKA_PORT" && echo "kafka up" || echo "kafka down"
    port_open "$S3_PORT" && echo "s3 up" || echo "s3 down"
    ;;
  *) echo "usage: $0 up|hardened|demo|bench|down|status" >&2; exit 2 ;;
esac
