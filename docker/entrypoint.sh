#!/bin/sh
# The image's entrypoint: migrate the role's own database, then serve it under gunicorn; or
# run the event relay, or only migrate. Runs outside Docker too (tests/e2e/test_docker.py):
# EMSUPPLY_GUNICORN_CONF names the gunicorn settings, EMSUPPLY_BIND where to listen.
set -eu
role="${1:-gateway}"
conf="${EMSUPPLY_GUNICORN_CONF:-/app/docker/gunicorn.conf.py}"
case "$role" in
  inventory|allocation) package="${role}_svc" ;;
  gateway) package="gateway" ;;
  relay) exec emsupply relay ;;
  migrate) exec emsupply migrate ;;
  *) echo "unknown role: $role (inventory, allocation, gateway, relay, migrate)" >&2; exit 2 ;;
esac
# Idempotent and quick at the newest schema; the compose file's `migrate` job has run it
# before any replica starts, so replicas never race to upgrade.
emsupply migrate --service "$role"
exec gunicorn --config "$conf" "${package}:create_app()"
