"""Inbound auth: who may call the gateway (keys, JWTs from trusted issuers)."""

from __future__ import annotations

from urllib.parse import urlparse

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from mcp_gateway.config.base import JWT_ALGORITHMS, StrictModel, check_authority_url


class IssuerConfig(StrictModel):
    """One OAuth 2.1 authorization server whose JWT access tokens the gateway accepts."""

    issuer: str = Field(description="the exact `iss` of its tokens (also its RFC 8414 metadata base)")
    jwks_uri: str | None = Field(
        default=None,
        description="its signing keys; default: discovered from its authorization-server or OpenID metadata",
    )
    audience: str | None = Field(default=None, description="required `aud`; default: auth.resource")
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"], description="accepted `alg` values")
    consumer_claim: str = Field(default="sub", description="the claim that names the consumer")
    team_claim: str | None = Field(default=None, description="the claim that names the team, if any")
    org_claim: str | None = Field(default=None, description="the claim that names the organisation, if any")
    scopes_claim: str = Field(default="scope", description="space-separated string or list of scopes")
    leeway_seconds: int = Field(default=60, ge=0, le=600, description="clock skew allowed on exp / nbf / iat")
    jwks_cache_seconds: int = Field(default=3600, gt=0, description="keys are fetched again when older")
    jwks_min_refetch_seconds: float = Field(
        default=30.0, ge=0, description="least time between fetches caused by tokens with an unknown kid"
    )
    introspection_endpoint: str | None = Field(
        default=None, description="RFC 7662 endpoint: opaque (non-JWT) access tokens are checked there"
    )
    introspection_client_id: str | None = Field(default=None, description="the gateway's client at the issuer")
    introspection_client_secret: str | None = Field(
        default=None, repr=False, description="secret:NAME, env:NAME or (warned) plain text"
    )
    introspection_cache_seconds: float = Field(
        default=60.0, ge=0, description="an active answer is reused this long at most (a revocation's delay)"
    )

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        return check_authority_url(value, "issuer")

    @field_validator("jwks_uri")
    @classmethod
    def _jwks_uri(cls, value: str | None) -> str | None:
        return None if value is None else check_authority_url(value, "jwks_uri")

    @field_validator("introspection_endpoint")
    @classmethod
    def _introspection_endpoint(cls, value: str | None) -> str | None:
        return None if value is None else check_authority_url(value, "introspection_endpoint")

    @model_validator(mode="after")
    def _introspection_client(self) -> IssuerConfig:
        if self.introspection_endpoint and not (self.introspection_client_id and self.introspection_client_secret):
            raise ValueError("introspection_endpoint needs introspection_client_id and introspection_client_secret")
        return self

    @field_validator("algorithms")
    @classmethod
    def _algorithms(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one algorithm is needed")
        for alg in value:
            if alg not in JWT_ALGORITHMS:
                reason = (
                    "shared-secret (HS*) and unsigned tokens are not supported"
                    if alg.upper().startswith("HS") or alg.lower() == "none"
                    else f"supported: {', '.join(JWT_ALGORITHMS)}"
                )
                raise ValueError(f"algorithm {alg!r} not accepted: {reason}")
        return value


class AuthConfig(StrictModel):
    """Who may call the gateway. Off by default: every caller sees every tool."""

    enabled: bool = Field(default=False, description="require a credential on /mcp and apply policies")
    stdio_consumer: str | None = Field(default=None, description="the consumer `mcp-gateway stdio` runs as")
    key_rotation_grace_seconds: int = Field(default=24 * 3600, ge=0, description="old key's life after a rotation")
    resource: str | None = Field(
        default=None,
        description="canonical URL of this MCP endpoint (e.g. https://gateway.example.com/mcp): "
        "the audience JWTs must carry (RFC 8707) and the `resource` of the RFC 9728 metadata",
    )
    issuers: list[IssuerConfig] = Field(default_factory=list, description="authorization servers trusted for JWTs")
    required_scopes: list[str] = Field(default_factory=list, description="scopes every JWT must carry (else 403)")
    scopes_supported: list[str] = Field(
        default_factory=list, description="scopes advertised in the resource metadata; default: required_scopes"
    )

    @field_validator("resource")
    @classmethod
    def _resource(cls, value: str | None) -> str | None:
        if value is not None:
            parsed = urlparse(value)
            # RFC 8707 §2: an absolute URI without a fragment.
            if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.fragment:
                raise ValueError(f"resource must be an absolute http(s) URL without fragment: {value!r}")
        return value

    @field_validator("required_scopes", "scopes_supported")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if not s or any(c.isspace() for c in s)]
        if bad:
            raise ValueError(f"a scope is one non-empty word: {bad!r}")
        return value

    @model_validator(mode="after")
    def _oauth(self) -> AuthConfig:
        names = [i.issuer for i in self.issuers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"issuer(s) listed twice: {', '.join(dupes)}")
        if self.issuers and self.resource is None:
            raise ValueError("auth.resource (this gateway's /mcp URL) is required when issuers are configured")
        return self
