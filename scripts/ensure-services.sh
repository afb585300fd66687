#!/usr/bin/env bash
# Make sure PostgreSQL and RabbitMQ answer on localhost; start local installs if they are
# down, or say exactly how to get them.
set -euo pipefail

PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
AMQP_HOST=${AMQP_HOST:-127.0.0.1}
AMQP_PORT=${AMQP_PORT:-5672}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() { # host port name seconds
  for _ in $(seq "$4"); do
    port_open "$1" "$2" && return 0
    sleep 1
  done
  echo "error: $3 did not come up on $1:$2 within $4 s" >&2
  return 1
}

how_to_get_them() {
  cat >&2 <<'TXT'
PostgreSQL and RabbitMQ are needed on localhost. Either
  - with Docker:  docker compose up -d postgres rabbitmq
  - on Debian:    apt-get install -y postgresql rabbitmq-server
                  (PostgreSQL with trust auth for user postgres on 127.0.0.1, RabbitMQ guest/guest)
or point BRIDGE_DATABASE_URL / BRIDGE_AMQP_URL at servers you have.
TXT
}

if ! port_open "$PG_HOST" "$PG_PORT"; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL ..."
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    wait_port "$PG_HOST" "$PG_PORT" PostgreSQL 60
  else
    how_to_get_them; exit 1
  fi
fi

if ! port_open "$AMQP_HOST" "$AMQP_PORT"; then
  if command -v rabbitmq-server >/dev/null 2>&1; then
    echo "starting RabbitMQ ..."
    rabbitmq-server -detached || true
    wait_port "$AMQP_HOST" "$AMQP_PORT" RabbitMQ 120
  else
    how_to_get_them; exit 1
  fi
fi
# The port opens a moment before the broker accepts logins.
if command -v rabbitmq-diagnostics >/dev/null 2>&1; then
  for _ in $(seq 60); do
    rabbitmq-diagnostics -q check_running >/dev/null 2>&1 && break
    sleep 1
  done
fi
echo "PostgreSQL ($PG_HOST:$PG_PORT) and RabbitMQ ($AMQP_HOST:$AMQP_PORT) are up"
