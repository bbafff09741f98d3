"""Upstream credentials: applied to outgoing requests here, and nowhere else.

An operation's `security` lists alternatives; each names schemes that must all be
satisfied. `Binding` picks, once per distinct requirement list, the first alternative
whose schemes all have a configured credential, and keeps the result. A call then
only runs the chosen appliers, which add headers, query parameters or cookies to the
built request and return the secret values they used, so that the response can be
scrubbed of them (upstream/scrub.py: an upstream that echoes its request must not hand
them to the agent).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote

import anyio

from mcp_gateway.definitions import Requirement
from mcp_gateway.upstream.oauth import OAuthClient, Token, TokenError
from mcp_gateway.upstream.request import UpstreamRequest


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a call runs for: the consumer (per-user tokens) and, for token exchange, the
    inbound token. That token is only ever sent to a configured token-exchange endpoint."""

    consumer: str | None = None
    subject_token: str | None = field(default=None, repr=False)


class CredentialError(Exception):
    """A credential that cannot be applied. The message is safe to show the agent;
    `connect_url` is set when the caller must first connect their account."""

    def __init__(self, message: str, connect_url: str | None = None) -> None:
        super().__init__(message)
        self.connect_url = connect_url


class Applier(Protocol):
    """One configured credential, bound to one security scheme."""

    @property
    def held(self) -> Sequence[str | None]:
        """The secrets it holds whoever calls (a key, a password, a client secret): scrubbed from
        the results and errors of every call that chose it, even a call `apply` failed."""
        ...

    async def apply(self, request: UpstreamRequest, caller: Caller) -> list[str]:
        """Add the credential to `request`; returns the secret values it put there."""
        ...

    async def rejected(self, caller: Caller, used: Sequence[str]) -> bool:
        """The upstream answered 401 to a request carrying `used`: drop what is stale.
        True when a retry may succeed (a new token can be had)."""
        ...


def add_query(request: UpstreamRequest, name: str, value: str) -> None:
    """Append one query parameter, percent-encoded."""
    sep = "&" if "?" in request.url else "?"
    request.url = f"{request.url}{sep}{quote(name, safe='')}={quote(value, safe='')}"


def add_cookie(request: UpstreamRequest, name: str, value: str) -> None:
    """Add a cookie to the request's Cookie header (one header, `; `-joined)."""
    pair = f"{name}={value}"
    for i, (key, existing) in enumerate(request.headers):
        if key.lower() == "cookie":
            request.headers[i] = (key, f"{existing}; {pair}")
            return
    request.headers.append(("Cookie", pair))


def set_header(request: UpstreamRequest, name: str, value: str) -> None:
    """Set a header, replacing any the operation itself produced under that name."""
    lowered = name.lower()
    request.headers[:] = [(k, v) for k, v in request.headers if k.lower() != lowered]
    request.headers.append((name, value))


@dataclass(slots=True)
class ApiKey:
    """An API key in a header, query parameter or cookie."""

    location: str
    name: str
    value: str = field(repr=False)
    prefix: str = ""

    @property
    def held(self) -> Sequence[str]:
        return (self.value,)

    async def apply(self, request: UpstreamRequest, caller: Caller) -> list[str]:
        text = self.prefix + self.value
        if self.location == "query":
            add_query(request, self.name, text)
        elif self.location == "cookie":
            add_cookie(request, self.name, text)
        else:
            set_header(request, self.name, text)
        return [self.value]

    async def rejected(self, caller: Caller, used: Sequence[str]) -> bool:
        return False


@dataclass(slots=True)
class Basic:
    """HTTP basic authentication."""

    username: str
    password: str = field(repr=False)

    @property
    def held(self) -> Sequence[str]:
        return (self.password,)

    async def apply(self, request: UpstreamRequest, caller: Caller) -> list[str]:
        pair = f"{self.username}:{self.password}"
        set_header(request, "Authorization", "Basic " + base64.b64encode(pair.encode()).decode("ascii"))
        return [self.password, pair]

    async def rejected(self, caller: Caller, used: Sequence[str]) -> bool:
        return False


@dataclass(slots=True)
class Bearer:
    """A static bearer token."""

    token: str = field(repr=False)

    @property
    def held(self) -> Sequence[str]:
        return (self.token,)

    async def apply(self, request: UpstreamRequest, caller: Caller) -> list[str]:
        set_header(request, "Authorization", f"Bearer {self.token}")
        return [self.token]

    async def rejected(self, caller: Caller, used: Sequence[str]) -> bool:
        return False


class ClientCredentials:
    """OAuth 2.0 client credentials: one token for the gateway, cached and refreshed before
    expiry; concurrent calls wait for a single token request instead of each making one."""

    def __init__(self, client: OAuthClient, scopes: Sequence[str], extra: Mapping[str, str], api: str) -> None:
        self.client = client
        self.scopes = tuple(scopes)
        self.extra = dict(extra)
        self.api = api
        self._token: Token | None = None
        self._lock = anyio.Lock()

    @property
    def held(self) -> Sequence[str | None]:
        return (self.client.client_secret, self._token.access_token if self._token is not None else None)

    async def _current(self) -> Token:
        token = self._token
        if token is not None and token.fresh():
            return token
        async with self._lock:
            token = self._token
            if token is None or not token.fresh():  # another call may have refreshed it meanwhile
                try:
                    token = await self.client.client_credentials(self.scopes, self.extra)
                except TokenError as exc:
                    raise CredentialError(f"could not get an access token for API {self.api!r}: {exc}") from None
                self._token = token
        return token

    async def apply(self, request: UpstreamRequest, caller: Caller) -> list[str]:
        token = await self._current()
        set_header(request, "Authorization", f"Bearer {token.access_token}")
        return [token.access_token, *([self.client.client_secret] if self.client.client_secret else [])]

    async def rejected(self, caller: Caller, used: Sequence[str]) -> bool:
        if self._token is not None and self._token.access_token in used:
            self._token = None  # revoked or expired early: the next call fetches a new one
        return True


class UserTokens(Protocol):
    """Per-consumer upstream tokens (stored encrypted); implemented above the upstream layer."""

    async def load(self, consumer: str, api: str, cached: bool = True) -> Token | None:
        """The consumer's token for `api`, if they have connected (`cached=False`: from the store)."""
        ...

    async def save(self, consumer: str, api: str, token: Token) -> None:
        """Store a refreshed token."""
        ...

    async def forget(self, consumer: str, api: str) -> None:
        """Drop a token the provider no longer honours."""
        ...

    async def connect_url(self, consumer: str, api: str) -> str | None:
        """A link the consumer opens to connect their account (None if the flow is not served)."""
        ...


class UserOAuth:
    """Per-user OAuth: each consumer's own token, refreshed with their refresh token."""

    def __init__(self, client: OAuthClient, tokens: UserTokens, api: str) -> None:
        self.client = client
        self.tokens = tokens
        self.api = api
        self._locks: dict[str, anyio.Lock] = {}

    @property
    def held(self) -> Sequence[str | None]:
        return (self.client.client_secret,)

    async def _not_connected(self, consumer: str, why: str) -> CredentialError:
        url = await self.tokens.connect_url(consumer, self.api)
        where = f" Connect it here: {url}" if url else " Ask the operator for the gateway's connect link."
        return CredentialError(f"{why}{where}", connect_url=url)

    async def _current(self, consumer: str) -> Token:
        token = await self.tokens.load(consumer, self.api)
        if token is None:
            raise await self._not_connected(consumer, f"API {self.api!r} needs your own account, not connected yet.")
        if token.fresh():
            return token
        lock = self._locks.setdefault(consumer, anyio.Lock())
        async with lock:
            # From the store: another replica may have refreshed (and rotated the refresh token).
            latest = await self.tokens.load(consumer, self.api, cached=False)
            if latest is None:
                raise await self._not_connected(consumer, f"API {self.api!r} needs your own account, not connected.")
            if latest.fresh():
                return latest
            if not latest.refresh_token:
                await self.tokens.forget(consumer, self.api)
                raise await self._not_connected(consumer, f"Your connection to API {self.api!r} has expired.")
            try:
                new = await self.client.refresh(latest.refresh_token)
            except TokenError as exc:
                if exc.error in ("invalid_grant", "invalid_token", "unauthorized_client"):
                    again = await self.tokens.load(consumer, self.api, cached=False)
                    if again is not None and again.refresh_token != latest.refresh_token and again.fresh():
                        return again  # refreshed elsewhere while we tried
                    await self.tokens.forget(consumer, self.api)
                    raise await self._not_connected(
                        consumer, f"Your connection to API {self.api!r} was revoked or has expired."
                    ) from None
                raise CredentialError(f"could not refresh your token for API {self.api!r}: {exc}") from None
            await self.tokens.save(consumer, self.api, new)
            return new

    async def apply(self, request: UpstreamRequest, caller: Caller) -> list[str]:
        if caller.consumer is None:
            raise CredentialError(
                f"API {self.api!r} acts with each consumer's own account: the gateway must know who calls "
                "(enable auth, or set auth.stdio_consumer for stdio)"
            )
        token = await self._current(caller.consumer)
        set_header(request, "Authorization", f"Bearer {token.access_token}")
        return [token.access_token]

    async def rejected(self, caller: Caller, used: Sequence[str]) -> bool:
        if caller.consumer is None:
            return False
        token = await self.tokens.load(caller.consumer, self.api)
        if token is None or token.access_token not in used:
            return token is not None  # already replaced by a concurrent refresh
        if not token.refresh_token:
            return False
        # Make it stale so the retry refreshes it.
        token.expires_at = time.time() - 1
        await self.tokens.save(caller.consumer, self.api, token)
        return True


class TokenExchange:
    """RFC 8693: the caller's inbound token is exchanged for an upstream token, cached per
    inbound token until the issued one expires."""

    MAX_CACHED = 10_000

    def __init__(self, client: OAuthClient, scopes: Sequence[str], extra: Mapping[str, str], api: str) -> None:
        self.client = client
        self.scopes = tuple(scopes)
        self.extra = dict(extra)
        self.api = api
        self._cache: dict[str, Token] = {}
        self._locks: dict[str, anyio.Lock] = {}

    @property
    def held(self) -> Sequence[str | None]:
        return (self.client.client_secret,)

    async def _exchanged(self, subject: str) -> Token:
        token = self._cache.get(subject)
        if token is not None and token.fresh():
            return token
        # One exchange per inbound token, however many of its calls arrive at once.
        lock = self._locks.setdefault(subject, anyio.Lock())
        async with lock:
            token = self._cache.get(subject)
            if token is None or not token.fresh():
                try:
                    token = await self.client.exchange(subject, self.scopes, self.extra)
                except TokenError as exc:
                    raise CredentialError(f"token exchange for API {self.api!r} failed: {exc}") from None
                if len(self._cache) >= self.MAX_CACHED:
                    self._cache.clear()
                    self._locks = {subject: lock}
                self._cache[subject] = token
        return token

    async def apply(self, request: UpstreamRequest, caller: Caller) -> list[str]:
        subject = caller.subject_token
        if subject is None:
            raise CredentialError(
                f"API {self.api!r} needs a token exchanged from yours: call the gateway with an OAuth access token"
            )
        token = await self._exchanged(subject)
        set_header(request, "Authorization", f"Bearer {token.access_token}")
        return [token.access_token, subject]

    async def rejected(self, caller: Caller, used: Sequence[str]) -> bool:
        if caller.subject_token is not None:
            self._cache.pop(caller.subject_token, None)
        return True


@dataclass(frozen=True, slots=True)
class Broken:
    """A configured credential that cannot be used (unresolvable secret, bad binding)."""

    message: str

    @property
    def held(self) -> Sequence[str]:
        return ()

    async def apply(self, request: UpstreamRequest, caller: Caller) -> list[str]:
        raise CredentialError(self.message)

    async def rejected(self, caller: Caller, used: Sequence[str]) -> bool:
        return False


# Scheme name -> applier factory, given the scopes an operation requires of that scheme.
ApplierFactory = Callable[[tuple[str, ...]], Applier]
WILDCARD = "*"


class Binding:
    """The credentials of one API, chosen per operation from its security requirements."""

    def __init__(
        self,
        api: str,
        factories: Mapping[str, ApplierFactory],
        anonymous_fallback: bool = False,
    ) -> None:
        self.api = api
        self.factories = factories
        # Send operations whose security nothing configured meets without credentials (the
        # operator says the API serves anonymous callers) instead of refusing them.
        self.anonymous_fallback = anonymous_fallback
        self._chosen: dict[tuple[Requirement, ...], tuple[Applier, ...] | str] = {}
        self._made: dict[tuple[str, tuple[str, ...]], Applier] = {}

    def _applier(self, scheme: str, scopes: tuple[str, ...]) -> Applier:
        key = (scheme, scopes)
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = self.factories[scheme](scopes)
        return made

    def for_operation(self, security: tuple[Requirement, ...]) -> tuple[Applier, ...] | str:
        """The appliers of the first satisfiable alternative, or why none is (a message)."""
        chosen = self._chosen.get(security)
        if chosen is None:
            chosen = self._chosen[security] = self._choose(security)
        return chosen

    def _choose(self, security: tuple[Requirement, ...]) -> tuple[Applier, ...] | str:
        # Alternatives with credentials first: an optional requirement (`{}`) is the fallback,
        # since an authenticated call usually gets more (data, rate limit) than an anonymous one.
        for requirement in sorted(security, key=lambda r: not r):
            if requirement and all(scheme in self.factories for scheme, _ in requirement):
                return tuple(self._applier(scheme, scopes) for scheme, scopes in requirement)
        if WILDCARD in self.factories:
            return (self._applier(WILDCARD, ()),)
        if not security or () in security or self.anonymous_fallback:
            return ()
        wanted = " or ".join(" + ".join(s for s, _ in r) or "(none)" for r in security)
        return (
            f"this operation of API {self.api!r} needs credentials for {wanted}, and the gateway has none "
            "configured for them (the operator binds them under the API's `credentials`)"
        )
