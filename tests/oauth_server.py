"""A real OAuth 2.0 authorization server for loopback tests, built on authlib's server core and served by Starlette.

Grants: client_credentials, authorization_code (PKCE S256 required), refresh_token (optional rotation) and
RFC 8693 token exchange. Endpoints: RFC 8414 metadata, /authorize, /token, /revoke (RFC 7009), /introspect (RFC 7662).
Everything lives in memory. The end user "logged in at the provider" is named by the `as_user` cookie.

    server = OAuthServer()
    server.add_client("app", "s3cret", redirect_uris=["http://127.0.0.1:9/cb"],
                      grant_types=["authorization_code", "refresh_token"])
    with serve_in_thread(server.app) as url:
        server.issuer = url
        with httpx2.Client(cookies={"as_user": "alice"}) as browser:  # alice is logged in at the provider
            browser.get(url + "/authorize", params=...)  # 302 to redirect_uri with code and state
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

import anyio.to_thread
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    AuthorizationServer,
    BaseGrant,
    ClientMixin,
    InvalidGrantError,
    InvalidRequestError,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
    TokenEndpointMixin,
    TokenMixin,
    UnauthorizedClientError,
    grants,
)
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from starlette.applications import Starlette
from starlette.datastructures import Headers, ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
LOGIN_COOKIE = "as_user"
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials", TOKEN_EXCHANGE)
CODE_LIFETIME = 600
# Form fields whose values are credentials: logged in `token_requests` as "***".
SECRET_FIELDS = frozenset(
    {"client_secret", "code", "code_verifier", "refresh_token", "subject_token", "actor_token", "client_assertion"}
)


# ---------------------------------------------------------------------------------------------------------------
# Models


@dataclass
class Client(ClientMixin):
    """A registered client (RFC 7591 vocabulary)."""

    client_id: str
    client_secret: str | None
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    scope: str
    token_endpoint_auth_method: str

    def get_client_id(self) -> str:
        """The client identifier."""
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        """The first registered redirect URI, if any."""
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope: str | None) -> str:
        """The registered scope when none is asked; else the asked scopes the client may have (any, if unrestricted)."""
        if not scope:
            return self.scope
        if not self.scope:
            return scope
        allowed = set(self.scope.split())
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Exact match against the registered redirect URIs."""
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        """Constant-time secret comparison; public clients have no secret."""
        return self.client_secret is not None and secrets.compare_digest(self.client_secret, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """The client authenticates only with its registered method, at every endpoint."""
        return method == self.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        """Only `code`, for clients allowed the authorization code grant."""
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        """Registered grant types; the authorization code grant implies refresh tokens."""
        if grant_type == "refresh_token" and "authorization_code" in self.grant_types:
            return True
        return grant_type in self.grant_types


@dataclass
class AuthorizationCode(AuthorizationCodeMixin):
    """An issued, not yet redeemed authorization code."""

    code: str
    client_id: str
    redirect_uri: str | None
    scope: str
    user: str
    code_challenge: str
    code_challenge_method: str
    expires_at: float

    def get_redirect_uri(self) -> str | None:
        """The redirect_uri of the authorization request (None if it had none)."""
        return self.redirect_uri

    def get_scope(self) -> str:
        """The granted scope."""
        return self.scope


@dataclass
class Token(TokenMixin):
    """One token issuance: an access token and maybe a refresh token."""

    access_token: str
    refresh_token: str | None
    client_id: str
    sub: str
    scope: str
    grant_type: str
    expires_at: float
    audience: list[str] = field(default_factory=list)
    resource: list[str] = field(default_factory=list)
    access_revoked: bool = False
    refresh_revoked: bool = False

    def check_client(self, client: ClientMixin) -> bool:
        """Was this token issued to `client`?"""
        return self.client_id == client.get_client_id()

    def get_scope(self) -> str:
        """The granted scope."""
        return self.scope

    def get_expires_in(self) -> int:
        """Seconds of access-token life left (negative once expired)."""
        return int(self.expires_at - time.time())

    def is_expired(self) -> bool:
        """Has the access token expired?"""
        return self.expires_at <= time.time()

    def is_revoked(self) -> bool:
        """Has the access token been revoked?"""
        return self.access_revoked

    def get_user(self) -> str:
        """The subject the token speaks for."""
        return self.sub


# ---------------------------------------------------------------------------------------------------------------
# authlib adapters: a read Starlette request -> OAuth2Request, (status, body, headers) -> Starlette Response


@dataclass(frozen=True)
class RawRequest:
    """Everything authlib needs from an HTTP request, read up front (authlib's core is sync)."""

    method: str
    url: str
    headers: Headers
    query: ImmutableMultiDict
    form: ImmutableMultiDict
    cookies: dict[str, str]
    body: str = ""

    @classmethod
    async def read(cls, request: Request) -> RawRequest:
        """Read the body of a Starlette request and capture it."""
        form: list[tuple[str, str]] = []
        body = ""
        if request.method == "POST":
            body = (await request.body()).decode()
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type == "application/x-www-form-urlencoded":
                form = parse_qsl(body, keep_blank_values=True)
        return cls(
            method=request.method,
            url=str(request.url),
            headers=request.headers,
            query=ImmutableMultiDict(request.query_params.multi_items()),
            form=ImmutableMultiDict(form),
            cookies=dict(request.cookies),
            body=body,
        )


class StarlettePayload(OAuth2Payload):
    """Query and form parameters of a request, form winning (as authlib's Django adapter does)."""

    def __init__(self, raw: RawRequest) -> None:
        self._raw = raw
        self._data = {**dict(raw.query.items()), **dict(raw.form.items())}
        self._datalist: defaultdict[str, list] = defaultdict(list)
        for key, value in [*raw.query.multi_items(), *raw.form.multi_items()]:
            self._datalist[key].append(value)

    @property
    def data(self) -> dict[str, str]:
        """Single-valued parameters."""
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list]:
        """All values of every parameter."""
        return self._datalist


class StarletteOAuth2Request(OAuth2Request):
    """authlib's view of a captured request."""

    def __init__(self, raw: RawRequest) -> None:
        super().__init__(method=raw.method, uri=raw.url, headers=raw.headers)
        self._raw = raw
        self.payload = StarlettePayload(raw)

    @property
    def args(self) -> ImmutableMultiDict:
        """Query parameters."""
        return self._raw.query

    @property
    def form(self) -> ImmutableMultiDict:
        """Form body parameters."""
        return self._raw.form


class Server(AuthorizationServer):
    """authlib's AuthorizationServer wired to an OAuthServer's in-memory state and to Starlette responses."""

    def __init__(self, owner: OAuthServer) -> None:
        super().__init__()
        self.owner = owner
        generator = BearerTokenGenerator(
            access_token_generator=lambda **_: generate_token(42),
            refresh_token_generator=lambda **_: generate_token(48),
        )

        def generate(*, expires_in: int | None = None, **kwargs: Any) -> dict[str, Any]:
            lifetime = owner.access_token_lifetime if expires_in is None else expires_in
            token = generator(expires_in=lifetime, **kwargs)
            token["expires_in"] = lifetime  # BearerTokenGenerator leaves out a 0
            return token

        self.register_token_generator("default", generate)
        self.register_grant(ClientCredentialsGrant)
        self.register_grant(AuthorizationCodeGrant, [S256CodeChallenge(required=True)])
        self.register_grant(RefreshTokenGrant)
        self.register_grant(TokenExchangeGrant)
        self.register_endpoint(Revocation)
        self.register_endpoint(Introspection)

    def query_client(self, client_id: str) -> Client | None:
        """A registered client."""
        with self.owner._lock:
            return self.owner._clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Record an issued token; its subject is the user, else the client."""
        self.owner._save_token(token, request)

    def create_oauth2_request(self, request: RawRequest | OAuth2Request) -> OAuth2Request:
        """Wrap a captured request (OAuth2Requests pass through)."""
        return request if isinstance(request, OAuth2Request) else StarletteOAuth2Request(request)

    def create_json_request(self, request: RawRequest) -> Any:
        """No JSON endpoints here."""
        raise NotImplementedError

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Response:
        """authlib's (status, body, headers) as a Starlette response."""
        if isinstance(body, dict):
            return JSONResponse(body, status_code=status, headers=dict(headers))
        return Response(body or b"", status_code=status, headers=dict(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No signals."""


# ---------------------------------------------------------------------------------------------------------------
# Grants and endpoints


class S256CodeChallenge(CodeChallenge):
    """PKCE with a mandatory S256 challenge on every authorization request (plain is refused)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ("S256",)
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: BaseGrant, redirect_uri: str) -> None:
        """Refuse an authorization request without `code_challenge` and `code_challenge_method=S256`."""
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge': PKCE is required")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("Unsupported 'code_challenge_method': only S256 is allowed")
        super().validate_code_challenge(grant, redirect_uri)


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    """client_credentials; no refresh token."""

    TOKEN_ENDPOINT_AUTH_METHODS = ("client_secret_basic", "client_secret_post")


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    """authorization_code for confidential and public (PKCE) clients."""

    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    server: Server

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        """Remember the code with its PKCE challenge."""
        data = request.payload.data
        item = AuthorizationCode(
            code=code,
            client_id=request.client.get_client_id(),
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope or "",
            user=request.user,
            code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"],
            expires_at=time.time() + CODE_LIFETIME,
        )
        with self.server.owner._lock:
            self.server.owner._codes[code] = item

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        """An unexpired code issued to `client`."""
        with self.server.owner._lock:
            item = self.server.owner._codes.get(code)
        if item and item.client_id == client.client_id and item.expires_at > time.time():
            return item
        return None

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Codes are single-use."""
        with self.server.owner._lock:
            self.server.owner._codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: AuthorizationCode) -> str:
        """The user who approved."""
        return authorization_code.user


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """refresh_token, rotating the refresh token when the server says so."""

    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    server: Server

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        """A live refresh token."""
        with self.server.owner._lock:
            token = self.server.owner._by_refresh.get(refresh_token)
        return token if token and not token.refresh_revoked else None

    def authenticate_user(self, refresh_token: Token) -> str:
        """The token's subject."""
        return refresh_token.sub

    def issue_token(self, user: str, refresh_token: Token) -> dict[str, Any]:
        """A new access token, plus a new refresh token when rotating."""
        return self.generate_token(
            user=user,
            scope=self.request.payload.scope or refresh_token.get_scope(),
            include_refresh_token=self.server.owner.rotate_refresh_tokens,
        )

    def revoke_old_credential(self, refresh_token: Token) -> None:
        """With rotation, the used refresh token is spent."""
        if self.server.owner.rotate_refresh_tokens:
            with self.server.owner._lock:
                refresh_token.refresh_revoked = True


class TokenExchangeGrant(BaseGrant, TokenEndpointMixin):
    """RFC 8693 token exchange for confidential clients: an access token for the subject of `subject_token`."""

    GRANT_TYPE = TOKEN_EXCHANGE
    TOKEN_ENDPOINT_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
    server: Server

    def validate_token_request(self) -> None:
        """Authenticate the client, check the subject token and its type, and find the subject."""
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(f"The client is not authorized to use 'grant_type={self.GRANT_TYPE}'")
        self.request.client = client
        form = self.request.form
        subject_token = form.get("subject_token")
        if not subject_token:
            raise InvalidRequestError("Missing 'subject_token' in request.")
        subject_token_type = form.get("subject_token_type")
        if not subject_token_type:
            raise InvalidRequestError("Missing 'subject_token_type' in request.")
        if subject_token_type not in (ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE):
            raise InvalidRequestError(f"Unsupported 'subject_token_type': {subject_token_type}")
        requested = form.get("requested_token_type")
        if requested and requested != ACCESS_TOKEN_TYPE:
            raise InvalidRequestError(f"Unsupported 'requested_token_type': {requested}")
        if form.get("actor_token") and not form.get("actor_token_type"):
            raise InvalidRequestError("Missing 'actor_token_type' in request.")
        self.validate_requested_scope()
        subject = self.server.owner._validate_subject_token(subject_token)
        if not subject:
            raise InvalidGrantError("The 'subject_token' is invalid.")
        self.request.user = subject

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        """RFC 8693 §2.2.1: an access token for the subject, no refresh token."""
        token = self.generate_token(
            user=self.request.user, scope=self.request.payload.scope, include_refresh_token=False
        )
        token["issued_token_type"] = ACCESS_TOKEN_TYPE
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class Revocation(RevocationEndpoint):
    """RFC 7009: revoking a refresh token also revokes its access token; revoking an access token only that."""

    CLIENT_AUTH_METHODS = AUTH_METHODS
    server: Server

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        """Find the issuance holding this access or refresh token (hint first)."""
        owner = self.server.owner
        with owner._lock:
            if token_type_hint == "refresh_token":
                return owner._by_refresh.get(token_string) or owner._by_access.get(token_string)
            return owner._by_access.get(token_string) or owner._by_refresh.get(token_string)

    def revoke_token(self, token: Token, request: OAuth2Request) -> None:
        """Mark the token revoked."""
        with self.server.owner._lock:
            if request.form["token"] == token.refresh_token:
                token.refresh_revoked = True
            token.access_revoked = True


class Introspection(IntrospectionEndpoint):
    """RFC 7662, for resource servers: any authenticated client may introspect access tokens."""

    CLIENT_AUTH_METHODS = AUTH_METHODS
    server: Server

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        """The issuance holding this access token."""
        with self.server.owner._lock:
            return self.server.owner._by_access.get(token_string)

    def check_permission(self, token: Token, client: ClientMixin, request: OAuth2Request) -> bool:
        """Every registered, authenticated client acts as a resource server here."""
        return True

    def introspect_token(self, token: Token) -> dict[str, Any]:
        """The token's claims (`aud` when the token was issued for an audience or resource)."""
        self.server.owner.introspections += 1
        payload: dict[str, Any] = {
            "active": True,
            "client_id": token.client_id,
            "token_type": "Bearer",
            "scope": token.scope,
            "sub": token.sub,
            "iss": self.server.owner.issuer,
            "exp": int(token.expires_at),
        }
        audience = [*token.audience, *token.resource]
        if audience:
            payload["aud"] = audience
        return payload


# ---------------------------------------------------------------------------------------------------------------
# The server


class OAuthServer:
    """An in-memory OAuth 2.0 authorization server; `app` is its ASGI app, `issuer` its base URL once served."""

    def __init__(
        self,
        *,
        access_token_lifetime: int = 3600,
        rotate_refresh_tokens: bool = True,
        subject_token_validator: Callable[[str], str | None] | None = None,
    ) -> None:
        """`subject_token_validator(token)` returns the subject of a token-exchange subject token, or None.

        Without one, token exchange accepts the live access tokens this server issued (subject = their sub).
        """
        self.issuer = ""
        self.access_token_lifetime = access_token_lifetime
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.subject_token_validator = subject_token_validator
        self.token_requests: list[dict[str, str]] = []
        self.introspections = 0  # active answers given by /introspect
        self.fail_token_requests = 0
        # A misconfigured server: refuses every token request, quoting the request (headers, raw body,
        # form as JSON) in error_description. `echoed` keeps each form, so tests know what was quoted.
        self.echo_errors = False
        self.echoed: list[dict[str, str]] = []
        self._lock = threading.RLock()
        self._token_lock = threading.Lock()  # one /token or /revoke at a time: rotation is check-and-spend
        self._clients: dict[str, Client] = {}
        self._codes: dict[str, AuthorizationCode] = {}
        self._by_access: dict[str, Token] = {}
        self._by_refresh: dict[str, Token] = {}
        self._server = Server(self)
        self.app = Starlette(
            routes=[
                Route("/.well-known/oauth-authorization-server", self._metadata, methods=["GET"]),
                Route("/authorize", self._authorize, methods=["GET"]),
                Route("/token", self._token, methods=["POST"]),
                Route("/revoke", self._revoke, methods=["POST"]),
                Route("/introspect", self._introspect, methods=["POST"]),
            ]
        )

    # -- configuration and inspection (test thread)

    def add_client(
        self,
        client_id: str,
        client_secret: str | None,
        *,
        redirect_uris: Sequence[str] = (),
        grant_types: Sequence[str] = ("client_credentials",),
        scope: str = "",
        token_endpoint_auth_method: str = "client_secret_basic",
    ) -> None:
        """Register a client; `token_endpoint_auth_method="none"` with no secret makes a public (PKCE) client."""
        if token_endpoint_auth_method not in AUTH_METHODS:
            raise ValueError(f"unsupported token_endpoint_auth_method: {token_endpoint_auth_method}")
        if (token_endpoint_auth_method == "none") != (client_secret is None):
            raise ValueError("a client has a secret unless its token_endpoint_auth_method is 'none'")
        if unknown := set(grant_types) - set(GRANT_TYPES):
            raise ValueError(f"unsupported grant types: {sorted(unknown)}")
        with self._lock:
            self._clients[client_id] = Client(
                client_id, client_secret, tuple(redirect_uris), tuple(grant_types), scope, token_endpoint_auth_method
            )

    def check(self, token: str) -> dict[str, Any] | None:
        """Claims of a live access token ({"sub", "client_id", "scope", "exp", "audience", "resource"}), else None."""
        with self._lock:
            item = self._by_access.get(token)
            if item is None or item.access_revoked or item.is_expired():
                return None
            return {
                "sub": item.sub,
                "client_id": item.client_id,
                "scope": item.scope,
                "exp": int(item.expires_at),
                "audience": list(item.audience),
                "resource": list(item.resource),
            }

    def expire_access_tokens(self) -> None:
        """Expire every access token issued so far."""
        past = time.time() - 1
        with self._lock:
            for item in self._by_access.values():
                item.expires_at = min(item.expires_at, past)

    def revoke_refresh_tokens(self, user: str | None = None) -> None:
        """Revoke every refresh token, or those of one subject."""
        with self._lock:
            for item in self._by_refresh.values():
                if user is None or item.sub == user:
                    item.refresh_revoked = True

    # -- state used by the grants (server threads)

    def _save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        client_id = request.client.get_client_id()
        item = Token(
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token"),
            client_id=client_id,
            sub=request.user or client_id,
            scope=token.get("scope", ""),
            grant_type=request.payload.grant_type,
            expires_at=time.time() + token["expires_in"],
            audience=request.form.getlist("audience"),
            resource=request.form.getlist("resource"),
        )
        with self._lock:
            self._by_access[item.access_token] = item
            if item.refresh_token:
                self._by_refresh[item.refresh_token] = item

    def _validate_subject_token(self, subject_token: str) -> str | None:
        if self.subject_token_validator is not None:
            return self.subject_token_validator(subject_token)
        claims = self.check(subject_token)
        return claims["sub"] if claims else None

    # -- routes

    def _issuer(self, request: Request) -> str:
        return (self.issuer or str(request.base_url)).rstrip("/")

    async def _metadata(self, request: Request) -> Response:
        issuer = self._issuer(request)
        return JSONResponse(
            {
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}/authorize",
                "token_endpoint": f"{issuer}/token",
                "revocation_endpoint": f"{issuer}/revoke",
                "introspection_endpoint": f"{issuer}/introspect",
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "grant_types_supported": list(GRANT_TYPES),
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
                "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
            }
        )

    async def _authorize(self, request: Request) -> Response:
        raw = await RawRequest.read(request)
        return await anyio.to_thread.run_sync(self._authorize_sync, raw)

    def _authorize_sync(self, raw: RawRequest) -> Response:
        server = self._server
        oauth_request = server.create_oauth2_request(raw)
        user = raw.cookies.get(LOGIN_COOKIE) or None
        try:
            grant = server.get_consent_grant(oauth_request, end_user=user)
        except OAuth2Error as error:  # redirects only once client and redirect_uri are known good (§4.1.2.1)
            return server.handle_error_response(oauth_request, error)
        if user is None:
            return HTMLResponse("<h1>login required</h1>", status_code=401)
        return server.create_authorization_response(oauth_request, grant_user=user, grant=grant)

    async def _token(self, request: Request) -> Response:
        raw = await RawRequest.read(request)
        with self._lock:
            self.token_requests.append({k: "***" if k in SECRET_FIELDS else v for k, v in raw.form.items()})
            if self.echo_errors:
                self.echoed.append(dict(raw.form.items()))
                quoted = f"headers={dict(raw.headers)} body={raw.body!r} form={json.dumps(dict(raw.form.items()))}"
                return JSONResponse({"error": "invalid_request", "error_description": quoted}, status_code=400)
            if self.fail_token_requests > 0:
                self.fail_token_requests -= 1
                return JSONResponse(
                    {"error": "temporarily_unavailable", "error_description": "Injected failure."},
                    status_code=503,
                    headers={"Cache-Control": "no-store"},
                )
        return await anyio.to_thread.run_sync(self._serialized, self._server.create_token_response, raw)

    async def _revoke(self, request: Request) -> Response:
        raw = await RawRequest.read(request)
        call = partial(self._server.create_endpoint_response, RevocationEndpoint.ENDPOINT_NAME)
        return await anyio.to_thread.run_sync(self._serialized, call, raw)

    async def _introspect(self, request: Request) -> Response:
        raw = await RawRequest.read(request)
        call = partial(self._server.create_endpoint_response, IntrospectionEndpoint.ENDPOINT_NAME)
        return await anyio.to_thread.run_sync(self._serialized, call, raw)

    def _serialized(self, call: Callable[[RawRequest], Response], raw: RawRequest) -> Response:
        with self._token_lock:
            return call(raw)
