# scheduler-core: one image for the coordinator and the workers.
#
#   docker build -t scheduler-core .
#   docker run scheduler-core coordinator        # the default command
#   docker run scheduler-core worker
#
# Slim Python base, the project installed with pip (no source tree left behind), a
# non-root user. There is no HEALTHCHECK here because the image serves two roles: the
# coordinator's check (GET /health/ready) is in compose.yaml, and a worker has no HTTP
# port to check. Python is in the image, so a check is a one-liner:
#   python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health/ready', timeout=2)"
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 scheduler \
    && useradd --system --uid 10001 --gid scheduler --home-dir /var/lib/scheduler \
       --shell /usr/sbin/nologin scheduler \
    && install -d -o scheduler -g scheduler -m 0750 /var/lib/scheduler

WORKDIR /src
COPY pyproject.toml README.md ./
COPY runtime ./runtime
COPY actors ./actors
COPY handlers ./handlers
COPY web ./web
COPY schema ./schema
COPY command ./command
COPY client ./client
RUN pip install . && rm -rf /src

WORKDIR /var/lib/scheduler
# In a container: listen on every interface, JSON logs, local state in the user's home
# (DATABASE_URL and COORDINATOR_URL come from the deployment).
ENV SCHEDULER_HOST=0.0.0.0 \
    SCHEDULER_PORT=5000 \
    SCHEDULER_LOG_FORMAT=json \
    SCHEDULER_DATA_DIR=/var/lib/scheduler \
    SCHEDULER_WORKER_DATA_DIR=/var/lib/scheduler/worker-data

USER scheduler:scheduler
EXPOSE 5000

# Exec form: `scheduler` gets SIGTERM itself (a worker drains on it).
ENTRYPOINT ["scheduler"]
CMD ["coordinator"]
