# One image for every role: the web server (default command) and the django-q2 cluster
# (`docker run … imapcopier qcluster`). Configuration comes from the environment (README).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    IMAPCOPIER_DATA_DIR=/data \
    STATIC_ROOT=/app/staticfiles

RUN groupadd --system imapcopier && useradd --system --gid imapcopier --home-dir /app imapcopier
WORKDIR /app
COPY pyproject.toml README.md manage.py ./
COPY imapcopier ./imapcopier
COPY tasks ./tasks
COPY runs ./runs
COPY scheduling ./scheduling
COPY templates ./templates
COPY static ./static
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN pip install --no-cache-dir . \
    && DEBUG=1 IMAPCOPIER_DATA_DIR=/tmp/build python manage.py collectstatic --noinput -v0 \
    && rm -rf /tmp/build \
    && mkdir -p /data && chown imapcopier:imapcopier /data

USER imapcopier
VOLUME ["/data"]
EXPOSE 8000
# /healthz answers this local check before the host check and the HTTPS redirect (imapcopier/health.py),
# so it passes under the production settings too (ALLOWED_HOSTS=<your host>, SECURE_SSL_REDIRECT=1).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD python -c "import os,sys,urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4).status == 200 else 1)"
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["web"]
