# syntax=docker/dockerfile:1
# One image runs every Herald service: `podman run herald:local router --lane bulk`. Build it with
# `make image` (tools/image/build.sh), which also makes a local Python base when no registry answers.
#
# builder:      a virtualenv at /opt/herald from requirements.lock (every wheel checked against its
#               hash), then Herald itself without dependencies; pip and setuptools leave the venv.
# runtime-root: the same base minus pip, setuptools, wheel files, apt and perl (nothing installs
#               packages at run time), iconv modules (Python's codecs do not use them), apt lists,
#               caches and manual pages, plus the herald user (uid 10001).
# final:        that filesystem flattened into one layer (so what was removed takes no space) and the
#               venv on top: no compiler, no pip, no tests, no caches.
ARG PYTHON_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# binutils strips the debug symbols compiled extensions ship with (about 25 MB of the venv).
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends binutils >/dev/null \
    && rm -rf /var/lib/apt/lists/*
# Third-party wheels first, from the lock alone, so a source-only change reuses this layer. The build
# may pass the host's CA bundle as the secret ca_bundle (tools/image/build.sh does): pip then trusts
# what the host trusts.
COPY requirements.lock ./
RUN --mount=type=secret,id=ca_bundle,target=/run/secrets/ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
    && python -m venv /opt/herald \
    && /opt/herald/bin/pip install --quiet --require-hashes --only-binary=:all: -r requirements.lock
COPY pyproject.toml ./
COPY libs ./libs
COPY services ./services
RUN --mount=type=secret,id=ca_bundle,target=/run/secrets/ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
    && /opt/herald/bin/pip install --quiet --no-deps . \
    && /opt/herald/bin/pip uninstall --quiet --yes pip setuptools \
    && find /opt/herald -depth -name __pycache__ -type d -exec rm -rf {} + \
    && find /opt/herald -name '*.so*' -type f -exec strip --strip-unneeded {} + \
    && /opt/herald/bin/python -m compileall -q -j 0 /opt/herald

FROM ${PYTHON_IMAGE} AS runtime-root
RUN set -eu; \
    groupadd --system --gid 10001 herald; \
    useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin herald; \
    for site in /usr/local/lib/python3*/site-packages /usr/lib/python3/dist-packages; do \
        rm -rf "$site"/pip "$site"/pip-* "$site"/setuptools "$site"/setuptools-* "$site"/wheel \
               "$site"/wheel-* "$site"/pkg_resources "$site"/_distutils_hack "$site"/distutils-precedence.pth; \
    done; \
    rm -rf /usr/local/bin/pip* /usr/bin/pip* /usr/local/lib/python3*/ensurepip/_bundled \
           /usr/share/python-wheels /usr/local/lib/python3*/idlelib /usr/local/lib/python3*/tkinter \
           /usr/local/lib/python3*/lib2to3 /var/lib/apt/lists/* /var/cache/* /var/log/* \
           /usr/share/man /usr/share/info /usr/share/locale /root/.cache; \
    find /usr/share/doc -mindepth 2 ! -name copyright -delete 2>/dev/null || true; \
    rm -rf /usr/lib/*-linux-gnu/gconv; \
    dpkg --purge --force-remove-essential --force-depends apt libapt-pkg6.0 perl-base >/dev/null 2>&1

FROM scratch
LABEL org.opencontainers.image.title="herald" \
      org.opencontainers.image.description="Herald notification delivery platform: every service in one image"
COPY --from=runtime-root / /
COPY --from=builder /opt/herald /opt/herald
ENV PATH=/opt/herald/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HERALD_HTTP_HOST=0.0.0.0 \
    HERALD_HEALTH_HOST=0.0.0.0 \
    HERALD_LOG_FORMAT=json
# Numeric user so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /tmp
# 8080: gateway HTTP API (and its /healthz, /readyz, /metrics); 9090: health and metrics of the others.
EXPOSE 8080 9090
ENTRYPOINT ["herald"]
CMD ["gateway"]
