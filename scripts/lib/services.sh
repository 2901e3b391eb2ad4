# shellcheck shell=bash
# Finds or starts the Postgres and NATS (JetStream) the tests and the dev stack need.
#
#   DATABASE_URL / NATS_URL set      -> used as they are
#   something answers on 5432 / 4222 -> used (SR_DEFAULT_PG_PORT / SR_DEFAULT_NATS_PORT
#                                       override those ports)
#   otherwise                        -> a throwaway server is started under $SR_STATE_DIR
#                                       (Debian packages installed with apt-get when missing
#                                       and running as root), stopped by sr_stop_services.
# Exports DATABASE_URL and NATS_URL.

SR_STATE_DIR=${SR_STATE_DIR:-${TMPDIR:-/tmp}/serviceradar-$(id -u)}
SR_STARTED_PG_DIR=""
SR_STARTED_NATS_PID=""

sr_log() { printf '[services] %s\n' "$*" >&2; }

sr_port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

sr_apt_install() {
  if [ "$(id -u)" -ne 0 ]; then
    sr_log "package $1 is missing and this is not root: install it or set ${2}"
    return 1
  fi
  sr_log "installing Debian package $1"
  if [ -z "${SR_APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    SR_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >&2
}

sr_pg_bin() {
  local name=$1 dir
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return; fi
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/$name" ] && { echo "$dir/$name"; return; }
  done
  return 1
}

sr_ensure_postgres() {
  if [ -n "${DATABASE_URL:-}" ]; then sr_log "Postgres: using DATABASE_URL"; return; fi
  local default=${SR_DEFAULT_PG_PORT:-5432}
  if sr_port_open 127.0.0.1 "$default"; then
    export DATABASE_URL="postgres://postgres@127.0.0.1:$default/postgres"
    sr_log "Postgres: using 127.0.0.1:$default"
    return
  fi
  local port=${SR_PG_PORT:-55432} dir="$SR_STATE_DIR/postgres"
  if ! sr_port_open 127.0.0.1 "$port"; then
    sr_pg_bin initdb >/dev/null || sr_apt_install postgresql DATABASE_URL
    local initdb pg_ctl
    initdb=$(sr_pg_bin initdb) && pg_ctl=$(sr_pg_bin pg_ctl) || { sr_log "no initdb/pg_ctl found"; return 1; }
    mkdir -p "$dir"
    local run=()
    if [ "$(id -u)" -eq 0 ]; then
      # Postgres refuses to run as root.
      id postgres >/dev/null 2>&1 || useradd --system --home "$dir" postgres
      chown -R postgres "$SR_STATE_DIR" "$dir"
      run=(su postgres -s /bin/sh -c)
    else
      run=(sh -c)
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      "${run[@]}" "$initdb -D '$dir/data' -U postgres --auth=trust -E UTF8 >'$dir/initdb.log' 2>&1"
    fi
    "${run[@]}" "$pg_ctl -D '$dir/data' -l '$dir/postgres.log' -w -o \"-p $port -k '$dir' -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300\" start" >/dev/null
    SR_STARTED_PG_DIR="$dir"
    SR_PG_RUN=("${run[@]}")
    SR_PG_CTL=$pg_ctl
    sr_log "Postgres: started on 127.0.0.1:$port (data in $dir/data)"
  fi
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

sr_ensure_nats() {
  if [ -n "${NATS_URL:-}" ]; then sr_log "NATS: using NATS_URL"; return; fi
  local default=${SR_DEFAULT_NATS_PORT:-4222}
  if sr_port_open 127.0.0.1 "$default"; then
    export NATS_URL="nats://127.0.0.1:$default"
    sr_log "NATS: using 127.0.0.1:$default"
    return
  fi
  local port=${SR_NATS_PORT:-54222} dir="$SR_STATE_DIR/nats"
  if ! sr_port_open 127.0.0.1 "$port"; then
    command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || sr_apt_install nats-server NATS_URL
    local bin
    bin=$(command -v nats-server || echo /usr/sbin/nats-server)
    mkdir -p "$dir"
    "$bin" -js -a 127.0.0.1 -p "$port" -sd "$dir" >"$dir/nats.log" 2>&1 &
    SR_STARTED_NATS_PID=$!
    local i
    for i in $(seq 1 100); do sr_port_open 127.0.0.1 "$port" && break; sleep 0.1; done
    sr_port_open 127.0.0.1 "$port" || { sr_log "nats-server did not start; see $dir/nats.log"; return 1; }
    sr_log "NATS: started on 127.0.0.1:$port (JetStream in $dir)"
  fi
  export NATS_URL="nats://127.0.0.1:$port"
}

sr_stop_services() {
  if [ -n "$SR_STARTED_NATS_PID" ]; then kill "$SR_STARTED_NATS_PID" 2>/dev/null || true; fi
  if [ -n "$SR_STARTED_PG_DIR" ]; then
    "${SR_PG_RUN[@]}" "$SR_PG_CTL -D '$SR_STARTED_PG_DIR/data' -m fast stop" >/dev/null 2>&1 || true
  fi
}
