"""The loopback OAuth 2.0 authorization server of tests/oauth_server.py, driven over real HTTP with httpx2."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest

from tests.oauth_server import ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE, TOKEN_EXCHANGE, OAuthServer
from tests.servers import serve_in_thread

REDIRECT_URI = "http://127.0.0.1:1/callback"  # never contacted: the redirect is read, not followed
SUBJECT_TOKENS = {"upstream-token-of-carol": "carol"}


@dataclass
class Running:
    """A served OAuthServer."""

    server: OAuthServer
    url: str


def add_native(server: OAuthServer, *grant_types: str) -> None:
    """Register the public client "native" (no secret: PKCE only)."""
    server.add_client(
        "native", None, redirect_uris=[REDIRECT_URI], grant_types=grant_types, token_endpoint_auth_method="none"
    )


@pytest.fixture
def auth() -> Iterator[Running]:
    """A served server with a confidential web client, a public client, a service client and an exchanger."""
    server = OAuthServer(subject_token_validator=SUBJECT_TOKENS.get)
    server.add_client(
        "web",
        "web-secret",
        redirect_uris=[REDIRECT_URI],
        grant_types=["authorization_code", "refresh_token"],
        scope="read write",
    )
    add_native(server, "authorization_code", "refresh_token")
    server.add_client("svc", "svc-secret", scope="read write")
    server.add_client("svc-post", "post-secret", token_endpoint_auth_method="client_secret_post")
    server.add_client("exchanger", "x-secret", grant_types=[TOKEN_EXCHANGE])
    with serve_in_thread(server.app) as url:
        server.issuer = url
        yield Running(server, url)


def pkce() -> tuple[str, str]:
    """A (code_verifier, S256 code_challenge) pair."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_params(client_id: str, challenge: str | None, **extra: str) -> dict[str, str]:
    """Query parameters of an authorization request."""
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI, "state": "st-1"}
    if challenge is not None:
        params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    return params | extra


def redirect_query(response: httpx2.Response) -> dict[str, str]:
    """The query of a 302 to REDIRECT_URI, single-valued."""
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def login(auth: Running, client_id: str, user: str, **extra: str) -> tuple[str, str]:
    """Drive /authorize as logged-in `user`; returns (code, code_verifier)."""
    verifier, challenge = pkce()
    with httpx2.Client(cookies={"as_user": user}) as browser:
        response = browser.get(auth.url + "/authorize", params=authorize_params(client_id, challenge, **extra))
    query = redirect_query(response)
    assert query["state"] == "st-1"
    return query["code"], verifier


def post_token(auth: Running, data: dict[str, str], *, basic: tuple[str, str] | None = None) -> httpx2.Response:
    """POST /token."""
    return httpx2.post(auth.url + "/token", data=data, auth=basic)


def code_tokens(auth: Running, user: str = "alice") -> dict:
    """Tokens for `user` through the public client's authorization code + PKCE flow."""
    code, verifier = login(auth, "native", user)
    response = post_token(
        auth,
        {
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": REDIRECT_URI,
            "client_id": "native",
        },
    )
    assert response.status_code == 200, response.text
    return response.json()


def refresh(auth: Running, refresh_token: str) -> httpx2.Response:
    """Refresh as the public client."""
    return post_token(auth, {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": "native"})


def test_metadata(auth: Running) -> None:
    doc = httpx2.get(auth.url + "/.well-known/oauth-authorization-server").json()
    assert doc["issuer"] == auth.url
    assert doc["authorization_endpoint"] == auth.url + "/authorize"
    assert doc["token_endpoint"] == auth.url + "/token"
    assert doc["revocation_endpoint"] == auth.url + "/revoke"
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert {"authorization_code", "refresh_token", "client_credentials", TOKEN_EXCHANGE} <= set(
        doc["grant_types_supported"]
    )
    assert {"client_secret_basic", "client_secret_post", "none"} <= set(doc["token_endpoint_auth_methods_supported"])


def test_client_credentials_basic(auth: Running) -> None:
    response = post_token(auth, {"grant_type": "client_credentials", "scope": "read"}, basic=("svc", "svc-secret"))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    token = response.json()
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 3600
    assert token["scope"] == "read"
    assert "refresh_token" not in token
    claims = auth.server.check(token["access_token"])
    assert claims is not None
    assert claims["sub"] == claims["client_id"] == "svc"
    assert claims["scope"] == "read"
    assert auth.server.check("not-a-token") is None


def test_client_credentials_post(auth: Running) -> None:
    data = {"grant_type": "client_credentials", "client_id": "svc-post", "client_secret": "post-secret"}
    response = post_token(auth, data)
    assert response.status_code == 200, response.text
    assert auth.server.check(response.json()["access_token"])["sub"] == "svc-post"
    # a client authenticates only with its registered method
    response = post_token(auth, {"grant_type": "client_credentials"}, basic=("svc-post", "post-secret"))
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")


@pytest.mark.parametrize(
    ("data", "basic"),
    [
        ({"grant_type": "client_credentials"}, ("svc", "wrong")),
        ({"grant_type": "client_credentials", "client_id": "svc-post", "client_secret": "wrong"}, None),
        ({"grant_type": "client_credentials"}, ("nobody", "x")),
        ({"grant_type": "client_credentials"}, None),
    ],
    ids=["basic-wrong-secret", "post-wrong-secret", "unknown-client", "no-credentials"],
)
def test_client_authentication_failures(auth: Running, data: dict[str, str], basic: tuple[str, str] | None) -> None:
    response = post_token(auth, data, basic=basic)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")


def test_grant_type_not_allowed(auth: Running) -> None:
    response = post_token(auth, {"grant_type": "client_credentials"}, basic=("exchanger", "x-secret"))
    assert (response.status_code, response.json()["error"]) == (400, "unauthorized_client")
    response = post_token(auth, {"grant_type": "password"}, basic=("svc", "svc-secret"))
    assert (response.status_code, response.json()["error"]) == (400, "unsupported_grant_type")


def test_authorization_code_confidential_client(auth: Running) -> None:
    verifier, challenge = pkce()
    params = authorize_params("web", challenge, scope="read")
    # not logged in at the provider: a login page
    response = httpx2.get(auth.url + "/authorize", params=params)
    assert response.status_code == 401
    assert "login required" in response.text
    # logged in: approved at once, 302 back to the client with code and state
    with httpx2.Client(cookies={"as_user": "alice"}) as browser:
        response = browser.get(auth.url + "/authorize", params=params)
    query = redirect_query(response)
    assert query["state"] == "st-1"
    code = query["code"]

    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    missing_verifier = post_token(auth, data, basic=("web", "web-secret"))
    assert missing_verifier.status_code == 400
    assert missing_verifier.json()["error"] == "invalid_request"
    wrong_verifier = post_token(auth, data | {"code_verifier": pkce()[0]}, basic=("web", "web-secret"))
    assert wrong_verifier.json()["error"] == "invalid_grant"

    response = post_token(auth, data | {"code_verifier": verifier}, basic=("web", "web-secret"))
    assert response.status_code == 200, response.text
    token = response.json()
    assert token["expires_in"] == 3600
    assert token["refresh_token"]
    assert auth.server.check(token["access_token"]) | {"exp": 0} == {
        "sub": "alice",
        "client_id": "web",
        "scope": "read",
        "exp": 0,
        "audience": [],
        "resource": [],
    }
    # codes are single-use
    again = post_token(auth, data | {"code_verifier": verifier}, basic=("web", "web-secret"))
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")


def test_authorization_code_redirect_uri_must_match(auth: Running) -> None:
    code, verifier = login(auth, "native", "alice")
    data = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "client_id": "native"}
    response = post_token(auth, data | {"redirect_uri": "http://127.0.0.1:1/other"})
    assert response.json()["error"] == "invalid_grant"


def test_public_client_refresh_rotation(auth: Running) -> None:
    first = code_tokens(auth, "alice")
    assert auth.server.check(first["access_token"])["sub"] == "alice"

    response = refresh(auth, first["refresh_token"])
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["expires_in"] == 3600
    assert auth.server.check(second["access_token"])["sub"] == "alice"

    # the used refresh token is spent
    reused = refresh(auth, first["refresh_token"])
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
    assert refresh(auth, second["refresh_token"]).status_code == 200
    # a refresh token is bound to its client
    other = post_token(
        auth, {"grant_type": "refresh_token", "refresh_token": second["refresh_token"]}, basic=("web", "web-secret")
    )
    assert other.json()["error"] == "invalid_grant"


def test_refresh_without_rotation() -> None:
    server = OAuthServer(rotate_refresh_tokens=False)
    add_native(server, "authorization_code")
    with serve_in_thread(server.app) as url:
        server.issuer = url
        first = code_tokens(Running(server, url), "bob")
        for _ in range(2):
            response = refresh(Running(server, url), first["refresh_token"])
            assert response.status_code == 200, response.text
            assert "refresh_token" not in response.json()
            assert server.check(response.json()["access_token"])["sub"] == "bob"


@pytest.mark.parametrize(
    ("extra", "description"),
    [
        ({}, "code_challenge"),
        ({"code_challenge_method": "plain"}, "code_challenge_method"),
        ({"code_challenge": "x" * 43}, "code_challenge_method"),
    ],
    ids=["missing", "plain", "no-method-means-plain"],
)
def test_pkce_required_and_s256_only(auth: Running, extra: dict[str, str], description: str) -> None:
    verifier, _ = pkce()
    params = authorize_params("native", None) | extra
    if extra.get("code_challenge_method") == "plain":
        params["code_challenge"] = verifier
    with httpx2.Client(cookies={"as_user": "alice"}) as browser:
        response = browser.get(auth.url + "/authorize", params=params)
    query = redirect_query(response)  # client and redirect_uri are good: the error goes back to the client
    assert query["error"] == "invalid_request"
    assert description in query["error_description"]
    assert query["state"] == "st-1"
    assert "code" not in query


@pytest.mark.parametrize(
    "params",
    [
        {"client_id": "nobody"},
        {"redirect_uri": "http://127.0.0.1:1/evil"},
        {"client_id": "svc"},  # a client without a redirect URI
    ],
    ids=["unknown-client", "unregistered-redirect-uri", "no-redirect-uri"],
)
def test_authorize_errors_not_redirected(auth: Running, params: dict[str, str]) -> None:
    _, challenge = pkce()
    with httpx2.Client(cookies={"as_user": "alice"}) as browser:
        response = browser.get(auth.url + "/authorize", params=authorize_params("native", challenge) | params)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.json()["error"] in {"invalid_client", "invalid_request"}


def test_authorize_unsupported_response_type_redirected(auth: Running) -> None:
    _, challenge = pkce()
    with httpx2.Client(cookies={"as_user": "alice"}) as browser:
        response = browser.get(
            auth.url + "/authorize", params=authorize_params("web", challenge, response_type="token")
        )
    assert redirect_query(response)["error"] == "unsupported_response_type"


def test_revoke_refresh_tokens(auth: Running) -> None:
    alice = code_tokens(auth, "alice")
    bob = code_tokens(auth, "bob")
    auth.server.revoke_refresh_tokens("alice")
    response = refresh(auth, alice["refresh_token"])
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
    assert auth.server.check(alice["access_token"]) is not None  # only refresh tokens
    bob = refresh(auth, bob["refresh_token"]).json()
    auth.server.revoke_refresh_tokens()
    assert refresh(auth, bob["refresh_token"]).json()["error"] == "invalid_grant"


def test_expire_access_tokens_and_lifetime(auth: Running) -> None:
    tokens = code_tokens(auth)
    assert auth.server.check(tokens["access_token"]) is not None
    auth.server.expire_access_tokens()
    assert auth.server.check(tokens["access_token"]) is None
    # the refresh token still works, and the new lifetime applies to tokens issued from now on
    auth.server.access_token_lifetime = 5
    response = refresh(auth, tokens["refresh_token"])
    assert response.json()["expires_in"] == 5
    assert auth.server.check(response.json()["access_token"]) is not None
    auth.server.access_token_lifetime = 0
    token = post_token(auth, {"grant_type": "client_credentials"}, basic=("svc", "svc-secret")).json()
    assert token["expires_in"] == 0
    assert auth.server.check(token["access_token"]) is None


def test_revocation_endpoint(auth: Running) -> None:
    tokens = code_tokens(auth)
    revoke = auth.url + "/revoke"
    # revoking the access token leaves the refresh token
    response = httpx2.post(revoke, data={"token": tokens["access_token"], "client_id": "native"})
    assert response.status_code == 200, response.text
    assert auth.server.check(tokens["access_token"]) is None
    tokens = refresh(auth, tokens["refresh_token"]).json()
    # revoking the refresh token revokes its access token too
    data = {"token": tokens["refresh_token"], "token_type_hint": "refresh_token", "client_id": "native"}
    assert httpx2.post(revoke, data=data).status_code == 200
    assert refresh(auth, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert auth.server.check(tokens["access_token"]) is None
    # unknown tokens are fine (RFC 7009 §2.2); client authentication is not optional
    svc = post_token(auth, {"grant_type": "client_credentials"}, basic=("svc", "svc-secret")).json()
    assert httpx2.post(revoke, data={"token": "unknown"}, auth=("svc", "svc-secret")).status_code == 200
    response = httpx2.post(revoke, data={"token": svc["access_token"]}, auth=("svc", "wrong"))
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
    assert auth.server.check(svc["access_token"]) is not None
    # only the client a token was issued to may revoke it
    response = httpx2.post(revoke, data={"token": svc["access_token"], "client_id": "native"})
    assert response.status_code == 400
    assert auth.server.check(svc["access_token"]) is not None
    assert httpx2.post(revoke, data={"token": svc["access_token"]}, auth=("svc", "svc-secret")).status_code == 200
    assert auth.server.check(svc["access_token"]) is None


def exchange(auth: Running, subject_token: str, **extra: str) -> httpx2.Response:
    """A token exchange request by the exchanger client."""
    data = {"grant_type": TOKEN_EXCHANGE, "subject_token": subject_token, "subject_token_type": ACCESS_TOKEN_TYPE}
    return post_token(auth, data | extra, basic=("exchanger", "x-secret"))


def test_token_exchange(auth: Running) -> None:
    response = exchange(auth, "upstream-token-of-carol", audience="https://api.test", resource="https://api.test/v1")
    assert response.status_code == 200, response.text
    token = response.json()
    assert token["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 3600
    assert "refresh_token" not in token
    claims = auth.server.check(token["access_token"])
    assert claims["sub"] == "carol"
    assert claims["client_id"] == "exchanger"
    assert claims["audience"] == ["https://api.test"]
    assert claims["resource"] == ["https://api.test/v1"]
    assert exchange(auth, "upstream-token-of-carol", subject_token_type=JWT_TOKEN_TYPE).status_code == 200


@pytest.mark.parametrize(
    ("subject_token", "extra", "status", "error"),
    [
        ("forged", {}, 400, "invalid_grant"),
        (
            "upstream-token-of-carol",
            {"subject_token_type": "urn:ietf:params:oauth:token-type:saml2"},
            400,
            "invalid_request",
        ),
        ("upstream-token-of-carol", {"subject_token_type": ""}, 400, "invalid_request"),
        ("", {}, 400, "invalid_request"),
    ],
    ids=["invalid-subject", "unsupported-type", "missing-type", "missing-subject"],
)
def test_token_exchange_refused(
    auth: Running, subject_token: str, extra: dict[str, str], status: int, error: str
) -> None:
    response = exchange(auth, subject_token, **extra)
    assert response.status_code == status
    assert response.json()["error"] == error


def test_token_exchange_needs_allowed_confidential_client(auth: Running) -> None:
    data = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": "upstream-token-of-carol",
        "subject_token_type": ACCESS_TOKEN_TYPE,
    }
    assert post_token(auth, data, basic=("svc", "svc-secret")).json()["error"] == "unauthorized_client"
    response = post_token(auth, data | {"client_id": "native"})
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")


def test_token_exchange_default_validator_accepts_own_tokens() -> None:
    server = OAuthServer()
    add_native(server, "authorization_code")
    server.add_client("exchanger", "x-secret", grant_types=[TOKEN_EXCHANGE])
    with serve_in_thread(server.app) as url:
        running = Running(server, url)
        mine = code_tokens(running, "dave")
        token = exchange(running, mine["access_token"]).json()
        assert server.check(token["access_token"])["sub"] == "dave"
        server.expire_access_tokens()
        assert exchange(running, mine["access_token"]).json()["error"] == "invalid_grant"


def test_fail_token_requests_and_request_log(auth: Running) -> None:
    auth.server.fail_token_requests = 2
    data = {"grant_type": "client_credentials", "client_id": "svc-post", "client_secret": "post-secret"}
    for _ in range(2):
        response = post_token(auth, data)
        assert response.status_code == 503
        assert response.json()["error"] == "temporarily_unavailable"
    assert post_token(auth, data).status_code == 200
    assert auth.server.fail_token_requests == 0
    tokens = code_tokens(auth)
    refresh(auth, tokens["refresh_token"])
    log = auth.server.token_requests
    assert [r["grant_type"] for r in log] == ["client_credentials"] * 3 + ["authorization_code", "refresh_token"]
    assert log[0] == {"grant_type": "client_credentials", "client_id": "svc-post", "client_secret": "***"}
    assert log[3]["code"] == log[3]["code_verifier"] == "***"
    assert log[4] == {"grant_type": "refresh_token", "refresh_token": "***", "client_id": "native"}
    assert "post-secret" not in repr(log)
    assert tokens["refresh_token"] not in repr(log)


@pytest.mark.anyio
async def test_concurrent_refresh_with_one_token_rotates_once(auth: Running) -> None:
    tokens = code_tokens(auth)
    statuses: list[int] = []
    async with httpx2.AsyncClient() as http:

        async def use() -> None:
            data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": "native"}
            statuses.append((await http.post(auth.url + "/token", data=data)).status_code)

        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(use)
    assert sorted(statuses) == [200] + [400] * 7


def test_add_client_rejects_inconsistent_registration() -> None:
    server = OAuthServer()
    with pytest.raises(ValueError, match="secret"):
        server.add_client("p", None)
    with pytest.raises(ValueError, match="secret"):
        server.add_client("p", "s", token_endpoint_auth_method="none")
    with pytest.raises(ValueError, match="grant"):
        server.add_client("p", "s", grant_types=["password"])
