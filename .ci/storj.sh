#!/usr/bin/env bash
# Prepare everything the real-Storj tests need on a clean Debian machine:
#   1. PostgreSQL from Debian, one cluster listening on 127.0.0.1 only, with a
#      role + database for testplanet's satellite;
#   2. the local Storj network binaries (tests/storj_network/build.sh);
#   3. libuplink.so (packaging/libuplink/build.sh).
# Idempotent: every step checks before it acts, so running it twice is cheap.
# Exits non-zero with a one-line "storj.sh: ..." reason on any failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="/usr/local/go/bin:${PATH}"

# The fixture (tests/storj_network/fixture.py) uses the same defaults.
PG_USER="${SYNCD_PG_USER:-syncd}"
PG_PASSWORD="${SYNCD_PG_PASSWORD:-syncd}"
PG_DB="${SYNCD_PG_DB:-storj_test}"
PG_PORT="${SYNCD_PG_PORT:-5432}"

die() { echo "storj.sh: $*" >&2; exit 1; }
step() { echo "storj.sh: $*"; }

need_root_for() { [ "$(id -u)" = 0 ] || die "must run as root to $1"; }

install_packages() {
    local missing=()
    command -v pg_lsclusters >/dev/null 2>&1 || missing+=(postgresql)
    command -v gcc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
    [ "${#missing[@]}" -eq 0 ] && return 0
    need_root_for "apt-get install ${missing[*]}"
    step "installing ${missing[*]}"
    apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
}

check_go() {
    command -v go >/dev/null 2>&1 || die "Go not found (expected /usr/local/go/bin/go, >= 1.25.10)"
    # storj.io/storj v1.162.x declares go 1.25.10.
    local v
    v="$(go env GOVERSION)"
    case "$v" in
        go1.2[6-9]*|go1.[3-9]*) ;;
        go1.25.1[0-9]*) ;;
        *) die "Go $v is too old: need >= 1.25.10" ;;
    esac
}

# First cluster of the newest installed major version; created if absent.
pg_cluster() {
    local ver
    ver="$(ls /usr/lib/postgresql | sort -n | tail -1)"
    [ -n "$ver" ] || die "no PostgreSQL server installed under /usr/lib/postgresql"
    if ! pg_lsclusters -h | awk '{print $1"/"$2}' | grep -qx "$ver/main"; then
        step "creating PostgreSQL $ver cluster 'main' on port $PG_PORT"
        pg_createcluster --port "$PG_PORT" "$ver" main >/dev/null || die "pg_createcluster failed"
    fi
    echo "$ver"
}

start_postgres() {
    local ver conf
    ver="$(pg_cluster)"
    conf="/etc/postgresql/$ver/main/postgresql.conf"
    # Loopback only, and a known port; rewrite only when different so a
    # running cluster is not restarted for nothing.
    local changed=0
    if ! grep -q "^listen_addresses = '127.0.0.1'" "$conf"; then
        sed -i "/^#\?listen_addresses/d" "$conf"
        echo "listen_addresses = '127.0.0.1'" >> "$conf"
        changed=1
    fi
    if ! grep -q "^port = $PG_PORT\b" "$conf"; then
        sed -i "/^#\?port = /d" "$conf"
        echo "port = $PG_PORT" >> "$conf"
        changed=1
    fi
    local status
    status="$(pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main" {print $4}')"
    if [ "$status" = online ] && [ "$changed" = 1 ]; then
        step "restarting PostgreSQL $ver/main (config changed)"
        pg_ctlcluster "$ver" main restart || die "pg_ctlcluster restart failed (see /var/log/postgresql/)"
    elif [ "$status" != online ]; then
        step "starting PostgreSQL $ver/main"
        pg_ctlcluster "$ver" main start || die "pg_ctlcluster start failed (see /var/log/postgresql/)"
    fi
    # Bounded wait: the server may need a moment after start.
    local i
    for i in $(seq 1 60); do
        if su postgres -c "psql -p $PG_PORT -h 127.0.0.1 -d postgres -qAtc 'select 1'" >/dev/null 2>&1 \
            || su postgres -c "psql -p $PG_PORT -d postgres -qAtc 'select 1'" >/dev/null 2>&1; then
            return 0
        fi
        sleep 1
    done
    die "PostgreSQL did not accept connections within 60 s"
}

# from /: su postgres cannot enter a private checkout folder (psql would warn about it)
psql_admin() { (cd / && su postgres -c "psql -p $PG_PORT -d postgres -v ON_ERROR_STOP=1 -qAt") ; }

create_database() {
    local have
    have="$(echo "select 1 from pg_roles where rolname = '$PG_USER'" | psql_admin)"
    if [ "$have" != 1 ]; then
        step "creating role $PG_USER"
        echo "create role \"$PG_USER\" login password '$PG_PASSWORD'" | psql_admin >/dev/null \
            || die "create role failed"
    fi
    have="$(echo "select 1 from pg_database where datname = '$PG_DB'" | psql_admin)"
    if [ "$have" != 1 ]; then
        step "creating database $PG_DB"
        echo "create database \"$PG_DB\" owner \"$PG_USER\"" | psql_admin >/dev/null \
            || die "create database failed"
    fi
    # Check the exact URL the fixture will use, over TCP with the password.
    PGPASSWORD="$PG_PASSWORD" psql "postgres://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB?sslmode=disable" \
        -qAtc 'select 1' >/dev/null || die "cannot connect as $PG_USER to $PG_DB on 127.0.0.1:$PG_PORT"
}

main() {
    install_packages
    check_go
    start_postgres
    create_database
    step "postgres ready: postgres://$PG_USER:***@127.0.0.1:$PG_PORT/$PG_DB?sslmode=disable"
    bash "$ROOT/tests/storj_network/build.sh" || die "tests/storj_network/build.sh failed"
    bash "$ROOT/packaging/libuplink/build.sh" || die "packaging/libuplink/build.sh failed"
    step "ok"
}

main "$@"
