# syntax=docker/dockerfile:1
#
# mcp-gateway: serves REST APIs described by OpenAPI as MCP tools.
#
#   docker build -t mcp-gateway .
#   docker run --rm -p 8080:8080 -v mcp-gateway-data:/data mcp-gateway
#
# With no config and no --spec the gateway serves the example specs shipped in the
# package. Configure it with a mounted gateway.yaml (MCP_GATEWAY_CONFIG) or the
# MCP_GATEWAY_* variables; see the README's "Docker" section, which also says where the
# master key should live (not in the /data volume, if /data is backed up).

########## build stage: dependencies first (their own layer), then the package ##########
FROM python:3.12-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}"

WORKDIR /src
# Only the project metadata: this layer (all third-party dependencies) is rebuilt when
# pyproject.toml changes, not on every source change. An empty package stands in for the
# source so that pip resolves and installs the dependencies alone.
COPY pyproject.toml ./
RUN mkdir mcp_gateway && touch README.md mcp_gateway/__init__.py \
 && pip install . \
 && pip uninstall -y mcp-gateway \
 && rm -rf mcp_gateway README.md build *.egg-info

COPY README.md ./
COPY mcp_gateway/ mcp_gateway/
RUN pip install --no-deps .

########## runtime stage ##########
FROM python:3.12-slim AS runtime

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MCP_GATEWAY_DATA_DIR=/data \
    MCP_GATEWAY_HOST=0.0.0.0 \
    MCP_GATEWAY_PORT=8080

# Unprivileged user, fixed uid/gid so that volume permissions are predictable.
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid gateway --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin gateway \
 && mkdir -p /data \
 && chown gateway:gateway /data

COPY --from=build /opt/venv /opt/venv

WORKDIR /data
# Declared after the chown so a fresh named volume inherits gateway ownership.
VOLUME ["/data"]

USER gateway:gateway

EXPOSE 8080

# `mcp-gateway health` reads the same settings as `serve` (MCP_GATEWAY_PORT, or server.port
# in the file named by MCP_GATEWAY_CONFIG), so the check follows a changed port. Set the
# port that way, not with `serve --port`, which the check cannot see.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["mcp-gateway", "health"]

ENTRYPOINT ["mcp-gateway"]
CMD ["serve"]
