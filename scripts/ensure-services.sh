#!/usr/bin/env bash
# Makes sure the local services the tests talk to are running: PostgreSQL on
# 127.0.0.1:5432 (trust auth). Starts it the way this machine image does when
# it is down; likewise NATS with JetStream on 127.0.0.1:4222.
set -euo pipefail
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432

# NATS with JetStream on 127.0.0.1:4222: most tests embed their own server,
# and one checks the machine's server too.
if ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
  if [ -x /usr/sbin/nats-server ]; then
    echo "starting NATS"
    mkdir -p /var/lib/nats-server
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
      -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
    for _ in $(seq 1 30); do (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null && break; sleep 0.5; done
  else
    echo "NATS is not running on 127.0.0.1:4222 and nats-server is not installed" >&2
  fi
fi
