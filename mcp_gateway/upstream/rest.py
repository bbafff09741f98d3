"""The REST upstream: a tool call becomes one HTTP request to the API's base URL."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

import mcp_types as types

from mcp_gateway.definitions import ToolDefinition
from mcp_gateway.upstream.client import ClientSettings, HttpClient, UpstreamError, UpstreamResponse
from mcp_gateway.upstream.credentials import Binding, Caller, CredentialError
from mcp_gateway.upstream.request import RequestBuildError, UpstreamRequest, build_request
from mcp_gateway.upstream.response import error_result, to_result
from mcp_gateway.upstream.scrub import scrubber

logger = logging.getLogger(__name__)
CONNECT_META = "mcp-gateway/connect-url"
_ANONYMOUS = Caller()
# Tracing (observe/traces.py): the span of one upstream request, current while it is sent; it
# yields the function that takes the answer's status. None when tracing is off.
UpstreamSpans = Callable[[str, ToolDefinition, UpstreamRequest], AbstractContextManager[Callable[[int], None]]]


class _Refused(Exception):
    """A call the gateway will not send (no base URL, no credentials for its security)."""


class RestUpstream:
    """Calls the operations of one REST API over a pooled client, with its credentials."""

    def __init__(
        self,
        api: str,
        base_url: str | None,
        settings: ClientSettings,
        binding: Binding | None = None,
        own_servers: Iterable[str] = (),
        observe: Callable[[ToolDefinition, UpstreamResponse], None] | None = None,
        spans: UpstreamSpans | None = None,
    ) -> None:
        """Blocking (TLS contexts load CA files): build it off the event loop. `observe` sees every
        response before it is converted; it must return at once (drift sampling). `spans`: each
        request's trace span (tracing on)."""
        self.api = api
        self.observe = observe
        self.spans = spans
        self.base_url = base_url
        self.binding = binding
        self._client = HttpClient(base_url, settings) if base_url else None
        # Clients for the servers the spec declares on single operations.
        self._own = {url: HttpClient(url, settings) for url in own_servers}

    def _client_for(self, tool: ToolDefinition) -> tuple[HttpClient | None, str | None]:
        own = tool.operation.base_url
        if own is None:
            return self._client, self.base_url
        return self._own.get(own), own

    async def invoke(
        self,
        tool: ToolDefinition,
        arguments: Mapping[str, Any],
        caller: Caller = _ANONYMOUS,
        facts: dict[str, Any] | None = None,
    ) -> types.CallToolResult:
        """Build, authenticate, send and convert; every failure is a tool error naming its cause.
        `facts` (when given) gets what the exchange came to, for the ledger: `request_bytes`,
        and once the upstream answered, `status`, `response_bytes` and the `response` (what a
        tool's cost may be read from).

        Whatever leaves, a result or an error, is scrubbed of every secret in play for the call:
        those its credentials hold or put in the request, and the caller's own inbound token.
        """
        secrets: list[str | None] = [caller.subject_token]
        connect_url = None
        try:
            response = await self._exchange(tool, arguments, caller, secrets, facts)
        except CredentialError as exc:
            message, connect_url = str(exc), exc.connect_url
        except RequestBuildError as exc:
            message = f"Invalid arguments: {exc}"
        except UpstreamError as exc:
            message = f"Upstream call failed: {exc}"
            if facts is not None:
                facts["error_kind"] = exc.kind
            # One line per failure: who, where, what kind; never the URL (its query may hold a key),
            # the arguments or a secret.
            logger.warning(
                "upstream failure: api=%s tool=%s host=%s kind=%s: %s",
                self.api, tool.name, exc.host, exc.kind, scrubber(secrets).text(str(exc)),
            )  # fmt: skip
        except _Refused as exc:
            message = str(exc)
        else:
            if self.observe is not None:
                # Drift sampling: it only queues the response and never reports a value from it.
                self.observe(tool, response)
            # An upstream that echoes its request must not hand the credentials to the agent.
            return to_result(tool, response, scrubber(secrets))
        result = error_result(scrubber(secrets).text(message))
        if connect_url:
            # For the server to turn into a URL elicitation, for clients that take one.
            result.meta = {CONNECT_META: connect_url}
        return result

    async def _exchange(
        self,
        tool: ToolDefinition,
        arguments: Mapping[str, Any],
        caller: Caller,
        secrets: list[str | None],
        facts: dict[str, Any] | None,
    ) -> UpstreamResponse:
        """The upstream's answer; adds to `secrets` every secret the call comes to hold."""
        client, base_url = self._client_for(tool)
        if client is None or base_url is None:
            raise _Refused(f"API {self.api!r} has no base URL: set base_url in its configuration")
        appliers = self.binding.for_operation(tool.operation.security) if self.binding is not None else ()
        if isinstance(appliers, str):
            raise _Refused(appliers)
        for applier in appliers:
            secrets += applier.held
        built = build_request(tool.operation, base_url, arguments)
        if facts is not None:
            facts["request_bytes"] = len(built.content or b"")
        for attempt in range(2):
            request = replace(built, headers=list(built.headers)) if appliers else built
            used: list[str] = []
            for applier in appliers:
                put = await applier.apply(request, caller)
                used += put
                secrets += put
            if self.spans is None:
                response = await client.send(request)
            else:
                with self.spans(self.api, tool, request) as answered:
                    response = await client.send(request)
                    answered(response.status)
            # A 401 to a token we obtained may mean it was revoked or expired early: once, get a new one.
            if response.status != 401 or attempt or not appliers:
                break
            retry = [await applier.rejected(caller, used) for applier in appliers]
            if not any(retry):
                break
        if facts is not None:
            facts["status"], facts["response_bytes"], facts["response"] = response.status, len(response.body), response
        return response

    async def aclose(self) -> None:
        """Close the connection pool."""
        for client in (self._client, *self._own.values()):
            if client is not None:
                await client.aclose()
