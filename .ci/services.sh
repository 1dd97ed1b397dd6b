#!/usr/bin/env bash
# Starts the local PostgreSQL and Redis the tests talk to, when they are not already up.
set -u
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! pg_up; then
  ver=$(pg_lsclusters -h 2>/dev/null | awk '$2=="main"{print $1; exit}')
  [ -n "$ver" ] && pg_ctlcluster --skip-systemctl-redirect "$ver" main start
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
if ! redis_up; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 30); do redis_up && break; sleep 1; done
fi
pg_up && echo "postgres: up" || { echo "postgres: down"; exit 1; }
redis_up && echo "redis: up" || { echo "redis: down"; exit 1; }
