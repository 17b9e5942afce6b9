#!/usr/bin/env bash
# Makes sure the local services the tests talk to are running: PostgreSQL on
# 127.0.0.1:5432 (trust auth). Starts it the way this machine image does when
# it is down. NATS is embedded by the tests themselves.
set -euo pipefail
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432
