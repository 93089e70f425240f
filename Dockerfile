# syntax=docker/dockerfile:1
# Multi-stage build: wheels are built in a full image, the runtime image holds only the venv.
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md ./
COPY limits ./limits
COPY proxy ./proxy
RUN pip install --no-cache-dir --upgrade pip && pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/spend-proxy --create-home spend-proxy
COPY --from=build /opt/venv /opt/venv
COPY config.example.toml /etc/spend-proxy/config.toml
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SPEND_PROXY_SERVER__HOST=0.0.0.0
USER spend-proxy
WORKDIR /var/lib/spend-proxy
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["spend-proxy"]
CMD ["serve", "--config", "/etc/spend-proxy/config.toml"]
