"""The pipeline's endpoint: hand the call to its API's upstream.

Upstreams (their connection pools and credentials) are made on first use, in a worker
thread (secrets are read from the vault, certificates from disk), and retired when
their API is removed or replaced or the secrets change; a retired pool closes once its
last in-flight call has finished, so a re-registration never cuts a call short.

Each upstream remembers the secrets' revision read just before its secrets were: a
change made at any time after that, even while it was being built, retires it at the
next poll (`secrets_changed`).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import anyio.to_thread
import mcp_types as types

from mcp_gateway.auth.outbound import Resolve, build_binding
from mcp_gateway.catalog import ApiEntry, Change
from mcp_gateway.config import ClientCertConfig
from mcp_gateway.definitions import ToolDefinition
from mcp_gateway.pipeline import Call
from mcp_gateway.upstream import Upstream
from mcp_gateway.upstream.client import ClientSettings, UpstreamResponse
from mcp_gateway.upstream.credentials import UserTokens
from mcp_gateway.upstream.response import error_result
from mcp_gateway.upstream.rest import RestUpstream, UpstreamSpans

logger = logging.getLogger(__name__)

# An API's response observer (drift sampling), or None: see mcp_gateway/drift/monitor.py.
ObserverFor = Callable[[ApiEntry], Callable[[ToolDefinition, UpstreamResponse], None] | None]


def plain(value: str) -> str:
    """The resolver when no vault is wired: only plain values; references are refused."""
    if value.startswith(("secret:", "env:")):
        raise ValueError("secret references need the gateway's vault")
    return value


@dataclass(slots=True)
class _Slot:
    entry: ApiEntry
    upstream: Upstream
    revision: int  # of the secrets, read before the upstream read them
    in_flight: int = 0
    retired: bool = False


def tls_context(cert: ClientCertConfig, resolve: Resolve) -> ssl.SSLContext:
    """A client TLS context with the API's certificate (mutual TLS) and optional private CA."""
    context = ssl.create_default_context(cafile=str(cert.ca_file) if cert.ca_file else None)
    if cert.cert_file is not None:
        password = resolve(cert.key_password) if cert.key_password else None
        context.load_cert_chain(str(cert.cert_file), str(cert.key_file) if cert.key_file else None, password)
    return context


def rest_upstream(
    entry: ApiEntry,
    user_agent: str,
    resolve: Resolve = plain,
    user_tokens: UserTokens | None = None,
    observer_for: ObserverFor | None = None,
    spans: UpstreamSpans | None = None,
) -> Upstream:
    """The upstream for a REST API entry, with that API's limits and credentials. Blocking."""
    cfg = entry.config
    base_url = entry.ingest.base_url
    settings = ClientSettings(
        timeout=cfg.timeout,
        connect_timeout=cfg.connect_timeout,
        max_response_bytes=cfg.max_response_bytes,
        max_connections=cfg.max_connections,
        user_agent=user_agent,
        ssl_context=tls_context(cfg.client_cert, resolve) if cfg.client_cert is not None else None,
    )
    binding = build_binding(cfg, entry.ingest.security_schemes, base_url, resolve, user_tokens, user_agent)
    # Choose every operation's credentials now, in this thread: that reads the vault and makes TLS
    # contexts, which must not happen on the event loop at a first call.
    for security in {t.operation.security for t in entry.ingest.tools}:
        binding.for_operation(security)
    own = {t.operation.base_url for t in entry.ingest.tools if t.operation.base_url is not None}
    observe = observer_for(entry) if observer_for is not None else None
    return RestUpstream(entry.name, base_url, settings, binding, own_servers=sorted(own), observe=observe, spans=spans)


class UpstreamPool:
    """Maps each served API to its upstream; the pipeline's final handler."""

    def __init__(
        self,
        user_agent: str = "mcp-gateway",
        resolve: Resolve = plain,
        user_tokens: UserTokens | None = None,
        revision: Callable[[], int] = lambda: 0,
        observer_for: ObserverFor | None = None,
        spans: UpstreamSpans | None = None,
    ) -> None:
        """`revision` (blocking) is the secrets' revision: it moves whenever `resolve` may answer otherwise.
        `spans`: the trace span of each upstream request (tracing on)."""
        self.user_agent = user_agent
        self.resolve = resolve
        self.user_tokens = user_tokens
        self.revision = revision
        self.observer_for = observer_for
        self.spans = spans
        self._slots: dict[str, _Slot] = {}
        self._building = anyio.Lock()

    async def _slot(self, entry: ApiEntry) -> _Slot:
        async with self._building:  # one build per API, however many calls arrive at once
            slot = self._slots.get(entry.name)
            if slot is not None and slot.entry is entry:
                return slot
            revision, upstream = await anyio.to_thread.run_sync(self._build, entry)
            slot = _Slot(entry, upstream, revision)
            old = self._slots.get(entry.name)
            self._slots[entry.name] = slot
            if old is not None:
                await self._retire(old)
            return slot

    def _build(self, entry: ApiEntry) -> tuple[int, Upstream]:
        # The revision first: a secret written after this read is seen at the next poll, even
        # one written while the upstream below is being built.
        revision = self.revision()
        return revision, rest_upstream(
            entry, self.user_agent, self.resolve, self.user_tokens, self.observer_for, self.spans
        )

    async def __call__(self, call: Call) -> types.CallToolResult:
        slot = self._slots.get(call.api.name)
        if slot is None or slot.entry is not call.api:
            try:
                slot = await self._slot(call.api)
            except Exception as exc:  # e.g. a certificate or its key's password: this API only
                logger.error("API %s: cannot set up its upstream client: %s", call.api.name, exc)
                return error_result(f"API {call.api.name!r} is misconfigured: its upstream client cannot be set up")
        slot.in_flight += 1
        try:
            return await slot.upstream.invoke(call.tool, call.arguments, call.caller, call.context)
        finally:
            slot.in_flight -= 1
            if slot.retired and slot.in_flight == 0:
                await slot.upstream.aclose()

    async def on_change(self, change: Change) -> None:
        """Catalog listener: retire the upstreams of removed and replaced APIs."""
        for name in change.removed | change.replaced:
            slot = self._slots.pop(name, None)
            if slot is not None:
                await self._retire(slot)

    async def credentials_changed(self) -> None:
        """Secrets changed (vault write, key rotation): rebuild every upstream on its next call."""
        slots, self._slots = list(self._slots.values()), {}
        for slot in slots:
            await self._retire(slot)

    async def secrets_changed(self, revision: int) -> None:
        """The secrets are at `revision`: rebuild, on their next call, upstreams that read them at another."""
        for name, slot in list(self._slots.items()):
            if slot.revision != revision:
                del self._slots[name]
                await self._retire(slot)

    async def _retire(self, slot: _Slot) -> None:
        slot.retired = True
        if slot.in_flight == 0:
            await slot.upstream.aclose()

    async def aclose(self) -> None:
        """Close every pool (at shutdown)."""
        slots, self._slots = list(self._slots.values()), {}
        for slot in slots:
            await slot.upstream.aclose()
