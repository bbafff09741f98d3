"""Mutual TLS to an upstream: a real private CA, a real TLS server that demands client certificates.

The CA, the server's certificate (for 127.0.0.1) and the client's certificate (its key encrypted with a
password kept in the gateway's vault) are made here with `cryptography`. Nothing is mocked.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import secrets
import ssl
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from mcp_gateway.config import ApiConfig, ClientCertConfig, GatewayConfig
from mcp_gateway.gateway import Gateway
from tests.conftest import ECHO_SPEC, running_gateway
from tests.results import body_of, text_of
from tests.servers import serve_in_thread

pytestmark = pytest.mark.anyio
ERAS = ["legacy", "2026-07-28"]
KEY_SECRET = "client-key-pass"
CLIENT_CN = "gateway-client"

SPEC = """\
openapi: 3.1.0
info: {title: Secure API, version: "1.0"}
paths:
  /whoami:
    get:
      operationId: whoami
      summary: Who the server sees
      responses:
        "200":
          description: The client certificate's subject
          content:
            application/json:
              schema:
                type: object
                properties:
                  cn: {type: [string, "null"]}
                  path: {type: string}
"""


# ---------------------------------------------------------------------------------------------------------------
# A private PKI


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: ec.EllipticCurvePrivateKey, *, ca: bool
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
    )


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path  # encrypted with `password`
    password: str
    stranger_cert: Path  # a client certificate from another CA
    stranger_key: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey, password: str | None = None) -> Path:
    encryption = serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    return path


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
    )  # fmt: skip
    cert = _cert(cn, key, _name(cn), key, ca=True).add_extension(usage, critical=True).sign(key, hashes.SHA256())
    return cert, key


def _leaf(
    cn: str, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, usage: x509.ObjectIdentifier, san: bool
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _cert(cn, key, ca.subject, ca_key, ca=False).add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _ca("Test Root CA")
    server, server_key = _leaf("127.0.0.1", ca, ca_key, ExtendedKeyUsageOID.SERVER_AUTH, san=True)
    client, client_key = _leaf(CLIENT_CN, ca, ca_key, ExtendedKeyUsageOID.CLIENT_AUTH, san=False)
    other_ca, other_key = _ca("Some Other CA")
    stranger, stranger_key = _leaf("stranger", other_ca, other_key, ExtendedKeyUsageOID.CLIENT_AUTH, san=False)
    password = "pw-" + secrets.token_urlsafe(18)
    return Pki(
        ca=_write_cert(folder / "ca.pem", ca),
        server_cert=_write_cert(folder / "server.pem", server),
        server_key=_write_key(folder / "server.key", server_key),
        client_cert=_write_cert(folder / "client.pem", client),
        client_key=_write_key(folder / "client.key", client_key, password),
        password=password,
        stranger_cert=_write_cert(folder / "stranger.pem", stranger),
        stranger_key=_write_key(folder / "stranger.key", stranger_key),
    )


# ---------------------------------------------------------------------------------------------------------------
# The upstream: HTTPS, client certificate required


def peer_recording_protocol(peers: dict[Any, dict[str, Any]]) -> type[H11Protocol]:
    """uvicorn's h11 protocol, remembering each connection's verified client certificate by client address.

    uvicorn does not put the TLS transport in the ASGI scope; the app finds the certificate by `scope["client"]`.
    asyncio calls `connection_made` once the TLS handshake (and so the client certificate check) is done.
    """

    class Recording(H11Protocol):
        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            peers[self.client] = transport.get_extra_info("peercert") or {}

    return Recording


def common_name(peercert: dict[str, Any]) -> str | None:
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


class SecureUpstream:
    def __init__(self) -> None:
        self.peers: dict[Any, dict[str, Any]] = {}
        self.requests = 0

    def app(self) -> Starlette:
        async def whoami(request: Request) -> Response:
            self.requests += 1
            peer = self.peers.get(request.scope.get("client"), {})
            return JSONResponse({"cn": common_name(peer), "path": request.url.path})

        return Starlette(routes=[Route("/whoami", whoami)])


def serve_tls(upstream: SecureUpstream, pki: Pki) -> AbstractContextManager[str]:
    """tests.servers.serve_in_thread, over TLS requiring a client certificate from the CA; yields the https URL."""
    return serve_in_thread(
        upstream.app(),
        http=peer_recording_protocol(upstream.peers),
        ssl_certfile=str(pki.server_cert),
        ssl_keyfile=str(pki.server_key),
        ssl_ca_certs=str(pki.ca),
        ssl_cert_reqs=ssl.CERT_REQUIRED,
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def secure() -> SecureUpstream:
    return SecureUpstream()


@pytest.fixture
def secure_url(secure: SecureUpstream, pki: Pki) -> Iterator[str]:
    with serve_tls(secure, pki) as url:
        yield url


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "secure.yaml"
    path.write_text(SPEC, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------------------
# Helpers


def client_cert(pki: Pki, **overrides: Any) -> ClientCertConfig:
    fields = {
        "cert_file": pki.client_cert, "key_file": pki.client_key, "key_password": f"secret:{KEY_SECRET}",
        "ca_file": pki.ca,
    }  # fmt: skip
    return ClientCertConfig(**{**fields, **overrides})


@contextmanager
def mtls_gateway(
    tmp_path: Path, spec: Path, url: str, cert: ClientCertConfig | None, *extra: ApiConfig
) -> Iterator[tuple[str, Gateway]]:
    api = ApiConfig(name="secure", spec=str(spec), base_url=url, client_cert=cert, timeout=10, connect_timeout=5)
    config = GatewayConfig(data_dir=tmp_path / "data", apis=[api, *extra])
    with running_gateway(config) as (mcp_url, gateway):
        yield mcp_url, gateway


def connect(url: str, mode: str = "2026-07-28") -> Client:
    return Client(streamable_http_client(url, http_client=httpx2.AsyncClient(timeout=30)), mode=mode)


# ---------------------------------------------------------------------------------------------------------------
# Tests


def test_the_upstream_really_requires_a_client_certificate(secure: SecureUpstream, secure_url: str, pki: Pki) -> None:
    """The server side of the fixture, checked directly: without a certificate no answer; with one, its CN."""
    trusting = ssl.create_default_context(cafile=str(pki.ca))
    with httpx2.Client(verify=trusting, timeout=5) as http, pytest.raises(httpx2.HTTPError):
        http.get(secure_url + "/whoami")
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(str(pki.client_cert), str(pki.client_key), pki.password)
    with httpx2.Client(verify=context, timeout=5) as http:
        response = http.get(secure_url + "/whoami")
    assert response.status_code == 200 and response.json()["cn"] == CLIENT_CN
    assert secure.requests == 1


@pytest.mark.parametrize("mode", ERAS)
async def test_call_with_client_certificate_succeeds(
    tmp_path: Path, spec: Path, secure: SecureUpstream, secure_url: str, pki: Pki, mode: str
) -> None:
    with mtls_gateway(tmp_path, spec, secure_url, client_cert(pki)) as (url, gateway):
        gateway.vault.set(KEY_SECRET, pki.password)
        async with connect(url, mode) as client:
            assert "whoami" in {t.name for t in (await client.list_tools()).tools}
            for _ in range(2):  # the second call rides the pooled connection
                result = await client.call_tool("whoami", {})
                assert not result.is_error, text_of(result)
                assert body_of(result) == {"cn": CLIENT_CN, "path": "/whoami"}
    assert secure.requests == 2


async def test_without_client_certificate_the_call_is_a_tool_error(
    tmp_path: Path, spec: Path, secure: SecureUpstream, secure_url: str
) -> None:
    with mtls_gateway(tmp_path, spec, secure_url, None) as (url, _):
        async with connect(url) as client:
            with anyio.fail_after(20):
                result = await client.call_tool("whoami", {})
            assert result.is_error
            assert "Upstream call failed" in text_of(result), text_of(result)
            # The gateway is still fine afterwards.
            assert "whoami" in {t.name for t in (await client.list_tools()).tools}
    assert secure.requests == 0


async def test_a_certificate_from_another_ca_is_refused_by_the_upstream(
    tmp_path: Path, spec: Path, secure: SecureUpstream, secure_url: str, pki: Pki
) -> None:
    """The gateway trusts the server (ca_file) and presents a certificate, but not one the server trusts."""
    cert = ClientCertConfig(cert_file=pki.stranger_cert, key_file=pki.stranger_key, ca_file=pki.ca)
    with mtls_gateway(tmp_path, spec, secure_url, cert) as (url, _):
        async with connect(url) as client:
            with anyio.fail_after(20):
                result = await client.call_tool("whoami", {})
            assert result.is_error and "Upstream call failed" in text_of(result), text_of(result)
    assert secure.requests == 0


async def test_wrong_key_password_breaks_only_that_api(
    tmp_path: Path, spec: Path, secure: SecureUpstream, secure_url: str, pki: Pki, upstream: str
) -> None:
    echo = ApiConfig(name="echo", spec=str(ECHO_SPEC), base_url=upstream)
    with mtls_gateway(tmp_path, spec, secure_url, client_cert(pki), echo) as (url, gateway):
        gateway.vault.set(KEY_SECRET, "not-the-password")
        async with connect(url) as client:
            assert {"whoami", "getItem"} <= {t.name for t in (await client.list_tools()).tools}
            result = await client.call_tool("whoami", {})
            assert result.is_error
            message = text_of(result)
            assert "'secure'" in message and "misconfigured" in message, message
            assert "not-the-password" not in message
            # The other API on the same gateway is unaffected.
            echoed = await client.call_tool("getItem", {"id": "5"})
            assert not echoed.is_error and echoed.structured_content["path"] == "/api/items/5"  # type: ignore[index]
            # Still broken on the next call (no half-built client is kept), still only that API.
            again = await client.call_tool("whoami", {})
            assert again.is_error and "misconfigured" in text_of(again)
    assert secure.requests == 0


async def test_key_password_never_logged(
    tmp_path: Path, spec: Path, secure: SecureUpstream, secure_url: str, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-" + secrets.token_urlsafe(12)
    # The right password, then (a gateway over the same vault) a wrong one.
    for password, works in ((pki.password, True), (wrong, False)):
        with mtls_gateway(tmp_path, spec, secure_url, client_cert(pki)) as (url, gateway):
            gateway.vault.set(KEY_SECRET, password)
            async with connect(url) as client:
                result = await client.call_tool("whoami", {})
                if works:
                    assert not result.is_error and body_of(result)["cn"] == CLIENT_CN, text_of(result)
                else:
                    assert result.is_error and "misconfigured" in text_of(result)
    # Capture worked (the setup failure was logged at ERROR), and neither password is in any record.
    assert any("cannot set up its upstream client" in r.getMessage() for r in caplog.records), caplog.text
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    for password in (pki.password, wrong):
        assert password not in caplog.text
        for record in caplog.records:
            assert password not in record.getMessage() and password not in repr(record.args)
