#!/usr/bin/env bash
# The index's PostgreSQL tests create and drop their own databases: the test role needs
# CREATEDB on the loopback cluster that .ci/storj.sh set up (or one set up here).
set -euo pipefail
cd /  # su postgres cannot enter a private checkout folder (psql would warn about it)
if ! command -v pg_lsclusters >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
ver="$(ls /usr/lib/postgresql | sort -n | tail -1)"
pg_lsclusters -h | grep -q "^$ver *main" || pg_createcluster --port 5432 "$ver" main >/dev/null
pg_ctlcluster "$ver" main start 2>/dev/null || true
for _ in $(seq 1 30); do
    su postgres -c "psql -qtAc 'SELECT 1'" >/dev/null 2>&1 && break
    sleep 1
done
su postgres -c "psql -qtAc \"DO \\\$\\\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='syncd') THEN CREATE ROLE syncd LOGIN PASSWORD 'syncd'; END IF; END\\\$\\\$\"" >/dev/null
su postgres -c "psql -qtAc 'ALTER ROLE syncd CREATEDB'" >/dev/null
echo "postgres-index.sh: role syncd can create test databases on 127.0.0.1:5432"
