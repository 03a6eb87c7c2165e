# privacy-waybill: the HTTP service (gunicorn, `waybill serve`). Build: docker build -t privacy-waybill .
# The key file is never baked into the image: mount it (mode 0600, owned by the waybill user) and point
# WAYBILL_KEY_FILE at it. WAYBILL_ENV=production refuses to start without it and never generates keys.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    WAYBILL_ENV=production \
    WAYBILL_DATA_DIR=/var/lib/waybill \
    WAYBILL_KEY_FILE=/run/secrets/waybill-keys.json \
    PROMETHEUS_MULTIPROC_DIR=/run/waybill-metrics

RUN groupadd --system --gid 10001 waybill \
 && useradd --system --uid 10001 --gid waybill --home-dir /var/lib/waybill --shell /usr/sbin/nologin waybill \
 && install -d -o waybill -g waybill -m 0700 /var/lib/waybill /run/waybill-metrics

WORKDIR /opt/privacy-waybill
COPY pyproject.toml README.md ./
COPY waybill ./waybill
COPY printing ./printing
COPY courier_api ./courier_api
COPY migrations ./migrations
RUN pip install ".[postgresql]"

USER waybill
EXPOSE 8080
# Readiness, not liveness: the container is healthy when the database, key file and Redis answer.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=4).status == 200 else 1)"]
# Workers: one per CPU the container may use (`--workers N` to override, e.g. under a --cpus quota).
CMD ["waybill", "serve", "--host", "0.0.0.0", "--port", "8080"]
