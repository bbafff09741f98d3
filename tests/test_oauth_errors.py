"""OAuth errors leak no secret: a token endpoint that quotes the request it refuses (headers, raw
body, form as JSON) in `error_description` gets every grant's secrets into the message the gateway
would show; the message must come out without them, in any spelling.

Against the real authlib authorization server of tests/oauth_server.py in its echoing mode, over
loopback, for each grant (client credentials, token exchange, refresh, authorization code) and both
ways of sending the client secret (HTTP Basic, form body).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Iterator

import pytest

from mcp_gateway.upstream.oauth import OAuthClient, TokenError
from tests.leaks import leaked
from tests.oauth_server import TOKEN_EXCHANGE, OAuthServer
from tests.servers import serve_in_thread

pytestmark = pytest.mark.anyio

CLIENT_SECRET = 'cs/é&<s3cret>+"9-client'  # Latin-1, as HTTP Basic sends it through authlib
SUBJECT = "eyJhbGciOi.subject/tok+en&0123"  # tokens are ASCII (RFC 6749 VSCHAR)
REFRESH = "rt/<refresh>+token&4567"
CODE = "code/ab+cd&ef-89"
VERIFIER = secrets.token_urlsafe(64)
REDIRECT = "http://127.0.0.1:9/oauth/callback"


@pytest.fixture(scope="module")
def echoing() -> Iterator[str]:
    """The token URL of an authorization server that quotes every token request it refuses."""
    server = OAuthServer()
    server.echo_errors = True
    grants = ("client_credentials", "authorization_code", TOKEN_EXCHANGE)
    for method in ("client_secret_basic", "client_secret_post"):
        server.add_client(method, CLIENT_SECRET, grant_types=grants, token_endpoint_auth_method=method)
    with serve_in_thread(server.app) as url:
        yield url + "/token"


GRANTS: dict[str, tuple[Callable[[OAuthClient], Awaitable[object]], tuple[str, ...]]] = {
    "client credentials": (lambda c: c.client_credentials(["read"], {"audience": "https://api.test"}), ()),
    "token exchange": (lambda c: c.exchange(SUBJECT, ["read"]), (SUBJECT,)),
    "refresh": (lambda c: c.refresh(REFRESH), (REFRESH,)),
    "authorization code": (lambda c: c.authorization_code(CODE, REDIRECT, VERIFIER), (CODE, VERIFIER)),
}


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
@pytest.mark.parametrize("grant", list(GRANTS))
async def test_an_echoed_request_leaves_no_secret_in_the_error(echoing: str, grant: str, method: str) -> None:
    client = OAuthClient(method, CLIENT_SECRET, token_url=echoing, auth_method=method)
    call, in_play = GRANTS[grant]
    with pytest.raises(TokenError) as raised:
        await call(client)
    message = str(raised.value)
    # The server's words reach the message (so it would carry the request)...
    assert "invalid_request" in message and "headers=" in message and "form=" in message, message
    assert raised.value.error == "invalid_request"
    # ...without any secret of the client or of the call.
    for secret in (CLIENT_SECRET, *in_play):
        assert not leaked(secret, message), f"{grant}/{method}: {message}"
