#!/bin/sh
# Roles: `web` (migrate, then gunicorn), `qcluster` (copy jobs) or `control` (scheduler tick); anything else runs as given.
# exec makes the server PID 1, so SIGTERM from the container engine reaches it.
set -e
case "$1" in
  web)
    python manage.py migrate --noinput
    exec gunicorn imapcopier.wsgi --bind "0.0.0.0:${PORT:-8000}" --workers "${WEB_WORKERS:-2}" --threads 4 --access-logfile -
    ;;
  qcluster)
    exec python manage.py qcluster
    ;;
  control)
    export Q_CLUSTER_NAME=control
    exec python manage.py qcluster
    ;;
  *)
    exec "$@"
    ;;
esac
