#!/bin/sh
# Migrate the role's own database, then serve it under gunicorn (or run the event relay).
set -eu
role="${1:-gateway}"
case "$role" in
  inventory|allocation) package="${role}_svc" ;;
  gateway) package="gateway" ;;
  relay) exec emsupply relay ;;
  migrate) exec emsupply migrate ;;
  *) echo "unknown role: $role (inventory, allocation, gateway, relay, migrate)" >&2; exit 2 ;;
esac
emsupply migrate --service "$role"
exec gunicorn --config /app/docker/gunicorn.conf.py "${package}:create_app()"
