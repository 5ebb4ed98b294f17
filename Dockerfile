# mailroom in a container: the same install as Heroku's buildpack (requirements.txt only; the
# app runs from its source tree), the Procfile's command, a non-root user, the spool on a volume.
# Never built here (no Docker daemon in CI); tests/test_deploy.py checks the same install and command.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY requirements.txt ./
RUN pip install -r requirements.txt

# The app, owned by root and read-only to the user it runs as; compiled now, since that user
# cannot write __pycache__.
COPY . .
RUN python -m compileall -q actors config mailroom rates store web

RUN groupadd --system --gid 10001 mailroom \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin mailroom \
    && mkdir -p /var/lib/mailroom/spool \
    && chown 10001:10001 /var/lib/mailroom/spool

# HOST 0.0.0.0 so the published port reaches it; PYTHONPATH so every granian worker finds
# the app wherever it starts.
ENV PORT=8000 \
    HOST=0.0.0.0 \
    SPOOL_DIR=/var/lib/mailroom/spool \
    PYTHONPATH=/app

# What could not be uploaded waits here for replay: mount durable storage on it.
VOLUME ["/var/lib/mailroom/spool"]
EXPOSE 8000

# Numeric, so Kubernetes' runAsNonRoot can check it.
USER 10001:10001

# The Procfile's web command. Exec form: Python is PID 1 and gets SIGTERM itself (mailroom
# drains on it). Give it SHUTDOWN_TIMEOUT + 5 s: `docker stop --time 30`.
CMD ["python", "-m", "mailroom", "serve"]
