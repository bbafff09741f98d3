"""Unit tests of upstream credentials: security requirements at ingest, choosing credentials per
operation, binding checks, scrubbing, and config errors that never quote a secret."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mcp_gateway.auth.outbound import build_binding
from mcp_gateway.cli import build_config, parser
from mcp_gateway.config import ApiConfig, ConfigError, load_config
from mcp_gateway.openapi.tools import ingest_api
from mcp_gateway.upstream.credentials import Caller, CredentialError
from mcp_gateway.upstream.request import UpstreamRequest
from tests.conftest import DATA

SPEC_30 = {
    "openapi": "3.0.3",
    "info": {"title": "t", "version": "1"},
    "servers": [{"url": "https://api.example.com/v1"}],
    "security": [{"key": []}],
    "components": {
        "securitySchemes": {
            "key": {"type": "apiKey", "in": "query", "name": "token"},
            "basic": {"type": "http", "scheme": "Basic"},
            "oauth": {"type": "oauth2", "flows": {"clientCredentials": {"tokenUrl": "/oauth/token", "scopes": {}}}},
        }
    },
    "paths": {
        "/inherits": {"get": {"operationId": "inherits", "responses": {"200": {"description": "ok"}}}},
        "/open": {"get": {"operationId": "open", "security": [], "responses": {"200": {"description": "ok"}}}},
        "/either": {
            "get": {
                "operationId": "either",
                "security": [{"oauth": ["read", "write"]}, {"basic": [], "key": []}],
                "responses": {"200": {"description": "ok"}},
            }
        },
        "/optional": {
            "get": {
                "operationId": "optional",
                "security": [{}, {"basic": []}],
                "responses": {"200": {"description": "ok"}},
            }
        },
    },
}


def ingest(tmp_path: Path, doc: dict, **credentials: dict) -> tuple:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(doc))
    api = ApiConfig(name="t", spec=str(spec), credentials=credentials)
    result = ingest_api(api)
    return api, result, {t.name: t for t in result.tools}


def test_requirements_are_read_per_operation(tmp_path: Path) -> None:
    _, result, tools = ingest(tmp_path, SPEC_30)
    assert set(result.security_schemes) == {"key", "basic", "oauth"}
    assert result.security_schemes["basic"].http_scheme == "basic"  # case-insensitive scheme
    assert tools["inherits"].operation.security == ((("key", ()),),)
    assert tools["open"].operation.security == ()
    assert tools["either"].operation.security == ((("oauth", ("read", "write")),), (("basic", ()), ("key", ())))
    assert tools["optional"].operation.security == ((), (("basic", ()),))
    unmet = [i.message for i in result.issues if "need credentials" in i.message]
    assert any("key" in m for m in unmet)


def test_swagger2_security_definitions(tmp_path: Path) -> None:
    api = ApiConfig(
        name="pets", spec=str(DATA.parent.parent / "mcp_gateway" / "openapi_specs" / "petstore-swagger2.yaml")
    )
    result = ingest_api(api)
    assert result.security_schemes["api_key"].location == "header"
    assert result.security_schemes["petstore_auth"].type == "oauth2"
    inventory = next(t for t in result.tools if t.operation_id == "getInventory")
    assert inventory.operation.security == ((("api_key", ()),),)


def request() -> UpstreamRequest:
    return UpstreamRequest("GET", "https://api.example.com/v1/x?a=1", [("Accept", "application/json")], None)


@pytest.mark.anyio
async def test_the_first_satisfiable_alternative_is_used(tmp_path: Path) -> None:
    api, result, tools = ingest(
        tmp_path,
        SPEC_30,
        key={"type": "api_key", "value": "k&=1"},
        basic={"type": "basic", "username": "u", "password": "p"},
    )
    binding = build_binding(api, result.security_schemes, result.base_url, lambda ref: ref)
    # oauth is not configured: the basic + key alternative is chosen.
    appliers = binding.for_operation(tools["either"].operation.security)
    assert not isinstance(appliers, str)
    req = request()
    used = [v for a in appliers for v in await a.apply(req, Caller())]
    assert req.url.endswith("?a=1&token=k%26%3D1")
    assert dict(req.headers)["Authorization"] == "Basic dTpw"
    assert set(used) >= {"p", "k&=1"}
    assert binding.for_operation(tools["open"].operation.security) == ()
    # An optional requirement ({}) with nothing configured for the other alternative: send as is.
    assert binding.for_operation(((),)) == ()


@pytest.mark.anyio
async def test_a_mismatched_credential_fails_clearly(tmp_path: Path) -> None:
    api, result, tools = ingest(tmp_path, SPEC_30, key={"type": "basic", "username": "u", "password": "p"})
    binding = build_binding(api, result.security_schemes, result.base_url, lambda ref: ref)
    appliers = binding.for_operation(tools["inherits"].operation.security)
    assert not isinstance(appliers, str)
    with pytest.raises(CredentialError, match="type basic, which cannot serve the apiKey scheme 'key'"):
        await appliers[0].apply(request(), Caller())
    unmet = binding.for_operation(((("oauth", ()),),))
    assert isinstance(unmet, str) and "oauth" in unmet


@pytest.mark.anyio
async def test_an_unresolvable_secret_breaks_only_its_credential(tmp_path: Path) -> None:
    def resolve(ref: str) -> str:
        if ref == "secret:missing":
            raise LookupError("secret 'missing' is not in the vault")
        return ref

    api, result, tools = ingest(
        tmp_path,
        SPEC_30,
        key={"type": "api_key", "value": "secret:missing"},
        basic={"type": "basic", "username": "u", "password": "fine"},
    )
    binding = build_binding(api, result.security_schemes, result.base_url, resolve)
    broken = binding.for_operation(tools["inherits"].operation.security)
    with pytest.raises(CredentialError, match="credential 'key' of API 't' is unusable"):
        await broken[0].apply(request(), Caller())  # type: ignore[index]
    # Optional security with basic configured: sent with basic, not anonymously.
    (basic,) = binding.for_operation(tools["optional"].operation.security)  # type: ignore[misc]
    req = request()
    assert await basic.apply(req, Caller()) == ["fine", "u:fine"]
    assert dict(req.headers)["Authorization"].startswith("Basic ")


def test_config_errors_never_quote_secrets(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apis": [
                    {
                        "name": "x",
                        "spec": "y.yaml",
                        "credentials": {
                            "s": {"type": "bearr", "token": "plain-secret-value-123"},
                            "t": {"type": "basic", "username": "u", "password": "other-plain-secret", "x": 1},
                        },
                    }
                ]
            }
        )
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert "credentials.s" in str(raised.value) and "credentials.t" in str(raised.value)
    assert "plain-secret-value-123" not in str(raised.value) and "other-plain-secret" not in str(raised.value)


@pytest.mark.anyio
async def test_token_urls_from_a_spec_must_be_https(tmp_path: Path) -> None:
    doc = {**SPEC_30, "servers": [{"url": "http://api.example.com/v1"}]}
    oauth = {"type": "oauth2_client_credentials", "client_id": "c", "client_secret": "s"}
    api, result, _ = ingest(tmp_path, doc, oauth=oauth)
    binding = build_binding(api, result.security_schemes, result.base_url, lambda ref: ref)
    (applier,) = binding.for_operation(((("oauth", ()),),))  # type: ignore[misc]
    with pytest.raises(CredentialError, match=r"must be an https URL.*set it in the credential"):
        await applier.apply(request(), Caller())
    # Configured explicitly, the operator's choice stands.
    api, result, _ = ingest(tmp_path, doc, oauth={**oauth, "token_url": "https://login.example.com/token"})
    binding = build_binding(api, result.security_schemes, result.base_url, lambda ref: ref)
    (applier,) = binding.for_operation(((("oauth", ()),),))  # type: ignore[misc]
    assert applier.client.token_url == "https://login.example.com/token"  # type: ignore[attr-defined]


def test_cli_registrations_bind_vault_references_only(tmp_path: Path) -> None:
    def mgw(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "mcp_gateway.cli", "apis", *args, "--data-dir", str(tmp_path)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    spec = str(DATA / "echo.yaml")
    added = mgw("add", "gh", spec, "--credential", '*={"type": "bearer", "token": "secret:gh"}')
    assert added.returncode == 0, added.stderr
    shown = json.loads(mgw("show", "gh", "--json").stdout)
    assert shown["credentials"] == {"*": {"type": "bearer", "token": "secret:gh"}}
    refused = mgw("add", "gh2", spec, "--credential", '*={"type": "bearer", "token": "ghp_plain0123456789"}')
    assert refused.returncode == 2 and "vault reference" in refused.stderr
    assert "ghp_plain0123456789" not in refused.stderr + refused.stdout


def test_allow_unauthenticated_sends_unmet_operations_without_credentials(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC_30))
    api = ApiConfig(name="t", spec=str(spec), allow_unauthenticated=True)
    result = ingest_api(api)
    binding = build_binding(api, result.security_schemes, result.base_url, lambda ref: ref)
    assert binding.for_operation(((("key", ()),),)) == ()
    assert any("sent without credentials" in i.message for i in result.issues)
    # The quick start's bundled examples are served that way; a spec of your own is not.
    bundled = build_config(parser().parse_args(["serve"]))
    assert bundled.apis and all(a.allow_unauthenticated for a in bundled.apis)
    own = build_config(parser().parse_args(["serve", "--spec", str(spec)]))
    assert not own.apis[0].allow_unauthenticated


def test_config_reprs_never_show_secret_fields() -> None:
    api = ApiConfig.model_validate(
        {
            "name": "x",
            "spec": "y.yaml",
            "credentials": {
                "k": {"type": "api_key", "value": "plain-api-key-123", "in": "header", "name": "X-Key"},
                "b": {"type": "basic", "username": "u", "password": "plain-password-123"},
                "t": {"type": "bearer", "token": "plain-token-123"},
                "c": {"type": "oauth2_client_credentials", "client_id": "c", "client_secret": "plain-client-123"},
            },
            "client_cert": {"cert_file": "/etc/cert.pem", "key_password": "plain-keypass-123"},
        }
    )
    shown = repr(api) + str(api)
    for secret in (
        "plain-api-key-123",
        "plain-password-123",
        "plain-token-123",
        "plain-client-123",
        "plain-keypass-123",
    ):
        assert secret not in shown
