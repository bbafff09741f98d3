# syntax=docker/dockerfile:1
#
# mcp-gateway: serves REST APIs described by OpenAPI as MCP tools.
#
#   docker build -t mcp-gateway .
#   docker run --rm -p 8080:8080 -v mcp-gateway-data:/data mcp-gateway
#
# With no config and no --spec the gateway serves the bundled specs in
# /app/openapi_specs.

########## build stage: install the package and its deps into a venv ##########
FROM python:3.12-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}"

WORKDIR /src
# The whole build context (filtered by .dockerignore): pyproject.toml,
# mcp_gateway/, openapi_specs/, README etc.
COPY . .
RUN pip install --no-cache-dir --upgrade pip \
 && pip install --no-cache-dir .

########## runtime stage ##########
FROM python:3.12-slim AS runtime

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MCP_GATEWAY_DATA_DIR=/data

# Unprivileged user, fixed uid/gid so that volume permissions are predictable.
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid gateway --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin gateway \
 && mkdir -p /data /app \
 && chown gateway:gateway /data

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
# Default specs served when no config / --spec is given (read-only, root-owned).
COPY openapi_specs/ /app/openapi_specs/

# Declared after the chown so a fresh named volume inherits gateway ownership.
VOLUME ["/data"]

USER gateway:gateway

EXPOSE 8080

# No curl in slim images: probe with the standard library. urlopen raises on
# connection errors and on non-2xx replies, which makes the check exit non-zero.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4); sys.exit(0 if r.status == 200 else 1)"]

ENTRYPOINT ["mcp-gateway"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
