# syntax=docker/dockerfile:1
# spend-proxy image: multi-stage (the build stage's pip caches and sources never reach the runtime
# image), non-root, a liveness HEALTHCHECK, SIGTERM for a graceful stop. See docs/deployment.md.
#
#   docker build -t spend-proxy .
#   docker run -e SPEND_PROXY_ADMIN_TOKEN=... -v spend-proxy:/var/lib/spend-proxy -p 8080:8080 \
#     --stop-timeout 75 spend-proxy
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change.
COPY pyproject.toml README.md ./
RUN mkdir limits proxy && touch limits/__init__.py proxy/__init__.py \
 && pip install --upgrade pip && pip install . && pip uninstall --yes spend-proxy
# The proxy needs only litellm's price map, read as a data file (limits/store/prices.py never
# imports litellm): keep that file, drop the rest of the package (about 200 MB).
RUN litellm="$(python -c 'import importlib.util as u; print(u.find_spec("litellm").submodule_search_locations[0])')" \
 && find "$litellm" -mindepth 1 -maxdepth 1 ! -name model_prices_and_context_window_backup.json \
      -exec rm -rf {} +
COPY limits ./limits
COPY proxy ./proxy
RUN pip install --no-deps .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="spend-proxy" \
      org.opencontainers.image.description="Per-user spend limits in front of LLM APIs"
RUN useradd --system --uid 10001 --home-dir /var/lib/spend-proxy --create-home spend-proxy
COPY --from=build /opt/venv /opt/venv
COPY config.example.toml /etc/spend-proxy/config.toml
# Relative paths in the config (the spool file; the SQLite file when embedded) land in the working
# directory: mount a volume there, one per replica, or spooled ledger rows die with the container.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SPEND_PROXY_SERVER__HOST=0.0.0.0
USER spend-proxy
WORKDIR /var/lib/spend-proxy
EXPOSE 8080
# aiohttp drains in-flight calls on SIGTERM, then the ledger is flushed (up to 2 x
# server.shutdown_timeout_s): give the container that long to stop (--stop-timeout /
# stop_grace_period) before the runtime sends SIGKILL.
STOPSIGNAL SIGTERM
# Liveness only (/healthz): a store outage must not get the container restarted; /readyz is for
# deploy gates and alerts (docs/deployment.md).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["spend-proxy"]
CMD ["serve", "--config", "/etc/spend-proxy/config.toml"]
