# syntax=docker/dockerfile:1
# One image runs every Herald service: `docker run herald:local router --lane bulk`.
# The builder stage compiles wheels (and has the toolchain for any dependency without one for this
# platform); the runtime stage only gets the finished virtualenv, so it carries no compiler, no pip
# and no build cache.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Third-party wheels first, from pyproject's dependency list alone, so a source-only change reuses them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
       > requirements.txt \
    && pip wheel --wheel-dir /wheels -r requirements.txt
COPY libs ./libs
COPY services ./services
RUN pip wheel --wheel-dir /wheels --find-links /wheels . \
    && python -m venv --without-pip /opt/herald \
    && pip --python /opt/herald/bin/python install --no-index --find-links /wheels herald \
    && /opt/herald/bin/python -m compileall -q /opt/herald

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="herald" \
      org.opencontainers.image.description="Herald notification delivery platform: every service in one image"
ENV PATH=/opt/herald/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HERALD_HTTP_HOST=0.0.0.0 \
    HERALD_HEALTH_HOST=0.0.0.0 \
    HERALD_LOG_FORMAT=json
RUN groupadd --system --gid 10001 herald \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin herald
COPY --from=builder /opt/herald /opt/herald
# Numeric user so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /tmp
# 8080: gateway HTTP API (and its /healthz, /readyz, /metrics); 9090: health and metrics of the others.
EXPOSE 8080 9090
ENTRYPOINT ["herald"]
CMD ["gateway"]
