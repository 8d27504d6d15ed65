#!/usr/bin/env bash
# Makes sure the Redis and PostgreSQL servers the tests talk to are up: starts them when they
# are installed but not running. It never installs them; when one is missing it says so, and the
# tests that need it fail with that reason (nothing is skipped silently).
set -u
REDIS_HOST=127.0.0.1 REDIS_PORT=6379 PG_HOST=127.0.0.1 PG_PORT=5432

wait_for() {  # wait_for <what> <command...>: up to 20 s
  local what=$1; shift
  for _ in $(seq 1 40); do "$@" >/dev/null 2>&1 && { echo "services: $what is up"; return 0; }; sleep 0.5; done
  echo "services: WARNING: $what did not come up" >&2; return 1
}

if redis-cli -h $REDIS_HOST -p $REDIS_PORT ping >/dev/null 2>&1; then
  echo "services: redis already running on $REDIS_HOST:$REDIS_PORT"
elif command -v redis-server >/dev/null 2>&1; then
  echo "services: starting redis-server on $REDIS_HOST:$REDIS_PORT"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port $REDIS_PORT --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for redis redis-cli -h $REDIS_HOST -p $REDIS_PORT ping
else
  echo "services: WARNING: redis-server is not installed; Redis tests will fail (apt-get install redis-server)" >&2
fi

if pg_isready -h $PG_HOST -p $PG_PORT >/dev/null 2>&1; then
  echo "services: postgresql already running on $PG_HOST:$PG_PORT"
elif command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  echo "services: starting postgresql"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
  wait_for postgresql pg_isready -h $PG_HOST -p $PG_PORT
else
  echo "services: WARNING: PostgreSQL is not installed; PostgreSQL tests will fail (apt-get install postgresql)" >&2
fi
if pg_isready -h $PG_HOST -p $PG_PORT >/dev/null 2>&1; then
  if ! psql -h $PG_HOST -U postgres -lqt 2>/dev/null | cut -d'|' -f1 | grep -qw test; then
    createdb -h $PG_HOST -U postgres test 2>/dev/null && echo "services: created database 'test'"
  fi
fi
exit 0
