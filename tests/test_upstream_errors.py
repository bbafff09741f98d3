"""Upstream failures name the host and the kind of failure, in the tool error and in one log line,
never the URL (its query carries an API key here), the arguments or a secret.

Each failure is real, on loopback: a closed port, a `.invalid` name (RFC 6761: never resolves),
a server that resets every connection, one that closes without answering, a TLS server with a
self-signed certificate, one that never answers, and one whose accept queue is full.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import anyio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mcp import Client
from starlette.applications import Starlette

from mcp_gateway.config import ApiConfig, GatewayConfig
from tests.conftest import ECHO_SPEC, running_gateway
from tests.results import text_of
from tests.servers import free_port, serve_in_thread
from tests.test_proxy import resetting_server

pytestmark = pytest.mark.anyio

API_KEY = "qk-upstream-errors-5b7e1f"  # sent in the query string of every call
ARGUMENT = "arg-4c2d9e"


@contextmanager
def raw_server(behaviour: str, backlog: int = 16) -> Iterator[int]:
    """A TCP listener on loopback: "silent" accepts and never answers, "close" reads the request and
    closes, "full" never accepts (its queue, once filled here, drops further connection attempts)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(backlog)
    held: list[socket.socket] = []

    def run() -> None:  # ends when the listener is closed
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            if behaviour == "close":
                conn.recv(65536)
                conn.close()
            else:
                held.append(conn)

    port = listener.getsockname()[1]
    if behaviour == "full":
        for _ in range(8):  # fill the accept queue: later SYNs are dropped, connects time out
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            held.append(filler)
    else:
        threading.Thread(target=run, daemon=True).start()
    try:
        yield port
    finally:
        listener.close()
        for conn in held:
            conn.close()


def self_signed(folder: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 signed by its own key: (cert file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "self-signed.pem", folder / "self-signed.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_file), str(key_file)


# API prefix -> (what the tool error must say, the kind logged)
EXPECTED = {
    "refused": ("connection refused by 127.0.0.1:{port}", "refused"),
    "dns": ("DNS lookup failed for upstream.invalid", "dns"),
    "reset": ("connection reset by 127.0.0.1", "reset"),
    "closed": ("127.0.0.1 closed the connection without answering", "closed"),
    "tls": ("TLS handshake with 127.0.0.1 failed: self-signed certificate", "tls"),
    "silent": ("timeout: 127.0.0.1", "timeout"),
    "full": ("connect timeout: 127.0.0.1:{port} did not accept a connection within 0.5s", "connect-timeout"),
}


@pytest.fixture
def failing(tmp_path: Path) -> Iterator[dict[str, tuple[str, int]]]:
    """API prefix -> (base URL, port) of each failing upstream."""
    cert, key = self_signed(tmp_path)
    with ExitStack() as stack:
        tls = stack.enter_context(serve_in_thread(Starlette(), ssl_certfile=cert, ssl_keyfile=key))
        ports = {
            "refused": free_port(),
            "dns": 80,
            "reset": stack.enter_context(resetting_server()),
            "closed": stack.enter_context(raw_server("close")),
            "tls": int(tls.rsplit(":", 1)[1]),
            "silent": stack.enter_context(raw_server("silent")),
            "full": stack.enter_context(raw_server("full", backlog=0)),
        }
        urls = {name: f"http://127.0.0.1:{port}/api" for name, port in ports.items()}
        urls["dns"] = "http://upstream.invalid/api"
        urls["tls"] = tls + "/api"
        yield {name: (urls[name], ports[name]) for name in ports}


async def test_failures_name_host_and_kind_in_the_error_and_one_log_line(
    tmp_path: Path,
    failing: dict[str, tuple[str, int]],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MGW_TEST_ERRORS_KEY", API_KEY)
    credential = {"*": {"type": "api_key", "in": "query", "name": "key", "value": "env:MGW_TEST_ERRORS_KEY"}}
    apis = [
        ApiConfig(name=name, prefix=name, spec=str(ECHO_SPEC), base_url=url, credentials=credential,
                  timeout=1.0, connect_timeout=0.5, allow_unauthenticated=True)
        for name, (url, _) in failing.items()
    ]  # fmt: skip
    caplog.set_level(logging.WARNING, logger="mcp_gateway.upstream")
    with running_gateway(GatewayConfig(data_dir=tmp_path / "data", apis=apis)) as (url, _gateway):
        async with Client(url, mode="legacy") as client:
            results = {}
            for name in failing:
                with anyio.fail_after(15):
                    results[name] = await client.call_tool(f"{name}_getItem", {"id": ARGUMENT})
    lines = [r for r in caplog.records if r.name == "mcp_gateway.upstream.rest"]
    for name, (said, kind) in EXPECTED.items():
        port = failing[name][1]
        text = text_of(results[name])
        assert results[name].is_error and text.startswith("Upstream call failed: "), text
        assert said.format(port=port) in text, text
        (line,) = [r.getMessage() for r in lines if f"api={name} " in r.getMessage()]
        host = "upstream.invalid:80" if name == "dns" else f"127.0.0.1:{port}"
        assert f"api={name} tool={name}_getItem host={host} kind={kind}:" in line, line
        for shown in (text, line):
            assert API_KEY not in shown and ARGUMENT not in shown and "?" not in shown, shown
