"""A JWT issuer for tests: its own RSA and EC keys, a JWKS (counting fetches) and RFC 8414 metadata,
served on loopback (the `issuer` fixture in conftest.py), and a client that presents its tokens."""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx2
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

RESOURCE = "https://gateway.test/mcp"  # the canonical URL clients know the gateway by (behind a proxy)
SCOPE = "mcp:tools"


def rsa_key(kid: str) -> RSAKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return RSAKey.import_key(private, parameters={"kid": kid, "use": "sig"})


def ec_key(kid: str) -> ECKey:
    return ECKey.import_key(ec.generate_private_key(ec.SECP256R1()), parameters={"kid": kid, "use": "sig"})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Issuer:
    """The key side of an authorization server: a JWKS (counting its fetches) and RFC 8414 metadata.

    `/jwks` serves the main issuer (configured with an explicit jwks_uri); `/tenant` is a second
    issuer whose jwks_uri the gateway must discover from `/.well-known/oauth-authorization-server/tenant`.
    """

    def __init__(self) -> None:
        self.rsa, self.ec, self.tenant_ec = rsa_key("rsa-1"), ec_key("ec-1"), ec_key("tenant-ec-1")
        self.published: list[RSAKey | ECKey] = [self.rsa, self.ec]
        self.jwks_requests = 0
        self.jwks_down = False  # an outage: /jwks answers 503
        self.url = ""

    @property
    def tenant(self) -> str:
        return self.url + "/tenant"

    def app(self) -> Starlette:
        async def jwks(request: Request) -> Response:
            self.jwks_requests += 1
            if self.jwks_down:
                return JSONResponse({"error": "unavailable"}, status_code=503)
            return JSONResponse({"keys": [k.as_dict(private=False) for k in self.published]})

        async def tenant_jwks(request: Request) -> Response:
            return JSONResponse({"keys": [self.tenant_ec.as_dict(private=False)]})

        async def tenant_metadata(request: Request) -> Response:
            return JSONResponse({"issuer": self.tenant, "jwks_uri": self.tenant + "/jwks"})

        return Starlette(
            routes=[
                Route("/jwks", jwks),
                Route("/tenant/jwks", tenant_jwks),
                Route("/.well-known/oauth-authorization-server/tenant", tenant_metadata),
            ]
        )

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.url, "aud": RESOURCE, "sub": "robot-1", "team": "payments", "org": "acme",
            "scope": f"openid {SCOPE}", "iat": now, "nbf": now, "exp": now + 300,
        }  # fmt: skip
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, key: RSAKey | ECKey | None = None, alg: str | None = None, kid: str | None = None, **claims: Any):
        key = key or self.rsa
        alg = alg or ("ES256" if isinstance(key, ECKey) else "RS256")
        header = {"alg": alg, "kid": kid or key.kid}
        return jwt.encode(header, self.claims(**claims), key, algorithms=[alg])


def token_client(url: str, token: str, mode: str) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return Client(streamable_http_client(url, http_client=http), mode=mode)
