# t3probe container image.
#
#   docker build -t t3probe .          (podman build --format docker keeps the HEALTHCHECK)
#   docker run --rm -p 9108:9108 -v "$PWD/config.yaml:/etc/t3probe/config.yaml:ro" t3probe
#
# Builder: resolves nothing itself, installs exactly what uv.lock pins into a virtual
# environment at /opt/t3probe. Runtime: the same Python base with only that venv copied
# in; no uv, no pip, no compiler.
# Both stages use the same base, so the venv's interpreter symlink stays valid. For
# reproducible builds pin it by digest (--build-arg BASE=python:3.11-slim-bookworm@sha256:...).
# tests/test_image.py passes a Debian-made base of the same shape (Python 3.11 with pip
# at /usr/local/bin), built where no registry is reachable.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/opt/t3probe
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
# Dependencies first (cached while only the code changes), strictly from the lock file.
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-dev --no-install-project
# Then the project itself, as a regular (non-editable) install.
COPY README.md ./
COPY src ./src
RUN uv sync --locked --no-dev --no-editable

FROM ${BASE} AS runtime
LABEL org.opencontainers.image.title="t3probe" \
      org.opencontainers.image.description="Differential WebSocket probe: infra or the user's network?" \
      org.opencontainers.image.licenses="Apache-2.0"
# No package installer in the runtime image.
RUN python -m pip uninstall --yes pip setuptools wheel
COPY --from=builder /opt/t3probe /opt/t3probe
ENV PATH=/opt/t3probe/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Numeric non-root user (matches runAsUser in deploy/k8s/deployment.yaml).
USER 65532:65532
# 9108 is t3probe's default port and also graphite_exporter's: change `listen:` if both
# run on one host.
EXPOSE 9108
# Liveness only checks the probe's event loop, never the legs. The port is the one the
# config's `listen` (or T3PROBE_LISTEN) names, a wildcard address reached on loopback.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["t3probe", "healthcheck", "--config", "/etc/t3probe/config.yaml"]
ENTRYPOINT ["t3probe"]
CMD ["run", "--config", "/etc/t3probe/config.yaml"]
