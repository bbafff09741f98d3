"""Upstream credentials from configuration: each API's `credentials` bound to its security schemes.

Secrets are resolved (vault, environment) when an API's upstream is built, not at config
load, and a secret that cannot be resolved breaks only the operations that need it, with
a message that names the credential and never its value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from urllib.parse import urljoin

from mcp_gateway.auth.connections import OAuthApp
from mcp_gateway.config import (
    ApiConfig,
    ApiKeyCredential,
    BasicCredential,
    BearerCredential,
    ClientCredentialsCredential,
    TokenExchangeCredential,
    UserOAuthCredential,
    check_authority_url,
    plain_secret_fields,
)
from mcp_gateway.definitions import SecurityScheme
from mcp_gateway.upstream.credentials import (
    WILDCARD,
    ApiKey,
    Applier,
    ApplierFactory,
    Basic,
    Bearer,
    Binding,
    Broken,
    ClientCredentials,
    TokenExchange,
    UserOAuth,
    UserTokens,
)
from mcp_gateway.upstream.oauth import OAuthClient

logger = logging.getLogger(__name__)

Resolve = Callable[[str], str]
"""`secret:NAME` / `env:NAME` / plain text -> the value; raises an exception with a safe message."""


class BindingError(ValueError):
    """A credential that cannot serve the scheme it is bound to."""


def _flow_url(scheme: SecurityScheme | None, flow: str, key: str, base_url: str | None) -> str | None:
    if scheme is None:
        return None
    url = (scheme.flows.get(flow) or {}).get(key)
    if not isinstance(url, str) or not url:
        return None
    # OpenAPI 3.1 allows URLs relative to the API's server.
    url = urljoin(base_url, url) if base_url and "://" not in url else url
    # Client secrets and codes go there: https only (plain http on loopback, for development).
    try:
        return check_authority_url(url.split("?", 1)[0], f"the spec's {flow} {key}")
    except ValueError as exc:
        raise BindingError(f"{exc}; set it in the credential instead") from None


def _extra(audience: str | None, resource: str | None) -> dict[str, str]:
    return {k: v for k, v in (("audience", audience), ("resource", resource)) if v}


def warn_plain_secrets(api: ApiConfig) -> None:
    """Log (once per load) every secret written as plain text in the config."""
    fields: list[str] = []
    for scheme, credential in api.credentials.items():
        fields += plain_secret_fields(credential, f"apis[{api.name}].credentials[{scheme}]")
    if api.client_cert is not None:
        fields += plain_secret_fields(api.client_cert, f"apis[{api.name}].client_cert")
    for field in fields:
        logger.warning(
            "%s is a plain-text secret in the configuration: store it with `mcp-gateway secrets set` "
            "and write secret:NAME (or env:NAME) instead",
            field,
        )


def _factory(
    api: ApiConfig,
    scheme_name: str,
    scheme: SecurityScheme | None,
    base_url: str | None,
    resolve: Resolve,
    user_tokens: UserTokens | None,
    user_agent: str,
) -> ApplierFactory:
    credential = api.credentials[scheme_name]
    kind = scheme.type if scheme is not None else None
    where = f"credential {scheme_name!r} of API {api.name!r}"

    def mismatch(expected: str) -> BindingError:
        return BindingError(f"{where} is of type {credential.type}, which cannot serve {expected}")

    def oauth_client(flow: str) -> OAuthClient:
        assert not isinstance(credential, ApiKeyCredential | BasicCredential | BearerCredential)
        url = credential.token_url or (_flow_url(scheme, flow, "tokenUrl", base_url) if flow else None)
        if not url:
            raise BindingError(
                f"{where}: no token_url configured and the spec's scheme declares no {flow or 'such'} flow"
            )
        return OAuthClient(
            client_id=credential.client_id,
            client_secret=resolve(credential.client_secret) if credential.client_secret else None,
            token_url=url,
            auth_method=credential.auth_method,
            user_agent=user_agent,
        )

    def make(scopes: tuple[str, ...]) -> Applier:
        c = credential
        if isinstance(c, ApiKeyCredential):
            location = c.location or (scheme.location if kind == "apiKey" and scheme else None)
            name = c.name or (scheme.param_name if kind == "apiKey" and scheme else None)
            if not location or not name:
                raise BindingError(f"{where}: say where the key goes (`in` and `name`); the spec does not")
            return ApiKey(location, name, resolve(c.value), c.prefix)
        if isinstance(c, BasicCredential):
            if kind not in (None, "http") or (scheme is not None and scheme.http_scheme != "basic"):
                raise mismatch(f"the {kind} scheme {scheme_name!r}")
            return Basic(c.username, resolve(c.password))
        if isinstance(c, BearerCredential):
            if kind == "apiKey" or (kind == "http" and scheme is not None and scheme.http_scheme == "basic"):
                raise mismatch(f"the {kind} scheme {scheme_name!r}")
            return Bearer(resolve(c.token))
        wanted = tuple(c.scopes) if c.scopes is not None else scopes
        if kind not in (None, "oauth2", "openIdConnect"):
            raise mismatch(f"the {kind} scheme {scheme_name!r}")
        if isinstance(c, ClientCredentialsCredential):
            client = oauth_client("clientCredentials")
            return ClientCredentials(client, wanted, _extra(c.audience, c.resource), api.name)
        if isinstance(c, TokenExchangeCredential):
            return TokenExchange(oauth_client(""), wanted, _extra(c.audience, c.resource), api.name)
        assert isinstance(c, UserOAuthCredential)
        if user_tokens is None:
            raise BindingError(f"{where}: per-user OAuth needs the gateway's connection store")
        client = oauth_client("authorizationCode")
        return UserOAuth(client, user_tokens, api.name)

    def safe(scopes: tuple[str, ...]) -> Applier:
        try:
            return make(scopes)
        except Exception as exc:  # a vault or binding fault breaks this credential only
            message = str(exc) if isinstance(exc, BindingError) else f"{where} is unusable: {exc}"
            logger.error("%s", message)
            return Broken(message)

    return safe


def build_binding(
    api: ApiConfig,
    schemes: Mapping[str, SecurityScheme],
    base_url: str | None,
    resolve: Resolve,
    user_tokens: UserTokens | None = None,
    user_agent: str = "mcp-gateway",
) -> Binding:
    """The credentials of `api`, ready to be chosen per operation."""
    factories = {
        name: _factory(api, name, schemes.get(name), base_url, resolve, user_tokens, user_agent)
        for name in api.credentials
    }
    return Binding(api.name, factories, anonymous_fallback=api.allow_unauthenticated)


def user_oauth_app(
    api: ApiConfig, schemes: Mapping[str, SecurityScheme], base_url: str | None, resolve: Resolve, user_agent: str
) -> OAuthApp | None:
    """The API's per-user OAuth app (endpoints from the credential, else the scheme's flow), if it has one.
    Blocking: resolves the client secret."""
    for name, credential in api.credentials.items():
        if isinstance(credential, UserOAuthCredential):
            scheme = schemes.get(name)
            authorize = credential.authorization_url or _flow_url(
                scheme, "authorizationCode", "authorizationUrl", base_url
            )
            token = credential.token_url or _flow_url(scheme, "authorizationCode", "tokenUrl", base_url)
            if authorize and token:
                secret = resolve(credential.client_secret) if credential.client_secret else None
                client = OAuthClient(credential.client_id, secret, token, credential.auth_method, user_agent)
                return OAuthApp(api.name, credential, authorize, client)
    return None


__all__ = ["WILDCARD", "BindingError", "build_binding", "user_oauth_app", "warn_plain_secrets"]
