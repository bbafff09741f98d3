"""OAuth 2.1 resource server: JWT access tokens from trusted issuers, checked against their JWKS.

A token is accepted when, in this order: it is a compact JWS; its `iss` is exactly a
configured issuer (which selects the keys and rules below); its `alg` is on that
issuer's allow-list (asymmetric only: never `none`, never HS*); a key from the issuer's
JWKS whose type and curve fit the `alg` verifies the signature (header `jku`/`jwk`/`x5u`
are ignored: keys come only from the configured or discovered JWKS); `exp` is in the
future, `nbf` and `iat` not in the future (with leeway); `aud` names this resource
(RFC 8707); and it carries `auth.required_scopes` (else 403 insufficient_scope).

Keys are fetched with httpx2 (never blocking the event loop), cached, fetched again
when older than `jwks_cache_seconds`, and when a token names an unknown `kid` (key
rotation) at most once per `jwks_min_refetch_seconds`. Concurrent misses share one
fetch. Tokens are never logged.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import anyio
import httpx2
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey
from joserfc.jws import CompactSignature, JWSRegistry

from mcp_gateway.auth.apikeys import AuthFailure
from mcp_gateway.auth.principal import Principal, Remembered, Via
from mcp_gateway.config import AuthConfig, IssuerConfig, check_authority_url

logger = logging.getLogger(__name__)

PublicKey = RSAKey | ECKey | OKPKey

MAX_TOKEN_CHARS = 16 * 1024  # larger than any real access token; bounds parsing work
MAX_DOCUMENT_BYTES = 512 * 1024  # a JWKS or metadata document
MAX_KEYS = 100  # per JWKS
MAX_KIDLESS_TRIES = 8  # a token without a kid is tried against this many fitting keys at most
MIN_RSA_BITS = 2048
FETCH_TIMEOUT_SECONDS = 5.0

# The key an algorithm needs: (kty, crv or None for any). Checked before joserfc checks it
# again, so that a key of the wrong type is never even tried (no RS/HS/ES confusion).
KEY_FOR_ALG: dict[str, tuple[str, str | None]] = {
    **{alg: ("RSA", None) for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")},
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", None),
}
_KEY_CLASSES: dict[str, type[PublicKey]] = {"RSA": RSAKey, "EC": ECKey, "OKP": OKPKey}
# Private members are dropped on import: the gateway only ever needs to verify.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def discovery_urls(issuer: str) -> list[str]:
    """Where an issuer's metadata may be, in the order the MCP authorization spec gives."""
    parsed = urlparse(issuer)
    base, path = f"{parsed.scheme}://{parsed.netloc}", parsed.path.rstrip("/")
    if not path:
        return [f"{base}/.well-known/oauth-authorization-server", f"{base}/.well-known/openid-configuration"]
    return [
        f"{base}/.well-known/oauth-authorization-server{path}",  # RFC 8414 §3.1: inserted
        f"{base}/.well-known/openid-configuration{path}",
        f"{base}{path}/.well-known/openid-configuration",  # OpenID Connect Discovery: appended
    ]


def import_jwks(document: Any) -> dict[str | None, list[PublicKey]]:
    """The usable signing keys of a JWKS document, by kid (None for keys without one).

    Symmetric keys, encryption keys, RSA keys under 2048 bits and keys joserfc cannot
    read are skipped, so one odd key does not make the whole set unusable.
    """
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError("not a JWK Set (no `keys` list)")
    found: dict[str | None, list[PublicKey]] = {}
    for entry in entries[:MAX_KEYS]:
        if not isinstance(entry, dict) or entry.get("kty") not in _KEY_CLASSES:
            continue
        if entry.get("use", "sig") != "sig":
            continue
        ops = entry.get("key_ops")
        if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
            continue
        public = {k: v for k, v in entry.items() if k not in _PRIVATE_MEMBERS}
        if "key_ops" in public:
            public["key_ops"] = ["verify"]  # "sign" may have been listed next to it; it applied to the private half
        try:
            key = _KEY_CLASSES[entry["kty"]].import_key(public)
        except (JoseError, ValueError, TypeError) as exc:
            logger.debug("skipping a JWKS key that cannot be read: %s", exc)
            continue
        if isinstance(key, RSAKey) and key.public_key.key_size < MIN_RSA_BITS:
            continue
        kid = entry.get("kid")
        found.setdefault(kid if isinstance(kid, str) else None, []).append(key)
    return found


def fits(key: PublicKey, alg: str) -> bool:
    """Whether `key` may verify a signature made with `alg` (type, curve, and its own `alg` if it says one)."""
    kty, crv = KEY_FOR_ALG[alg]
    if key.key_type != kty or (crv is not None and key.get("crv") != crv):
        return False
    return key.get("alg") in (None, alg)


class IssuerKeys:
    """The signing keys of one issuer: fetched on demand, cached, re-fetched on rotation."""

    def __init__(self, config: IssuerConfig, client: Callable[[], httpx2.AsyncClient]) -> None:
        self.config = config
        self.jwks_uri = config.jwks_uri
        self.client = client
        self._keys: dict[str | None, list[PublicKey]] = {}
        self._fetched_at = -math.inf  # monotonic time of the last successful fetch
        self._attempted_at = -math.inf  # ... and of the last attempt, successful or not
        self._lock = anyio.Lock()

    async def candidates(self, kid: str | None, alg: str) -> list[PublicKey]:
        """The keys that may have signed a token with this `kid` and `alg` (empty: none)."""
        stale = time.monotonic() - self._fetched_at > self.config.jwks_cache_seconds
        if stale:
            await self._refresh()
        found = self._select(kid, alg)
        if found is None and not stale:  # an unknown kid: the issuer may have rotated its keys
            await self._refresh()
            found = self._select(kid, alg)
        return found or []

    def _select(self, kid: str | None, alg: str) -> list[PublicKey] | None:
        """None when no key has this kid (worth a re-fetch), else the keys of that kid that fit `alg`."""
        if kid is not None:
            keys = self._keys.get(kid)
            return None if keys is None else [k for k in keys if fits(k, alg)]
        # Bounded, so that kid-less tokens cannot make every request cost a hundred signature checks.
        fitting = [k for keys in self._keys.values() for k in keys if fits(k, alg)][:MAX_KIDLESS_TRIES]
        return fitting or None

    async def _refresh(self) -> None:
        """Fetch the JWKS, unless that was tried less than `jwks_min_refetch_seconds` ago or is under way."""
        seen = self._attempted_at
        async with self._lock:
            # Requests that queued behind a fetch use its result instead of fetching again.
            if self._attempted_at != seen:
                return
            now = time.monotonic()
            if now - self._attempted_at < self.config.jwks_min_refetch_seconds:
                return
            self._attempted_at = now
            try:
                if self.jwks_uri is None:
                    self.jwks_uri = await self._discover()
                keys = import_jwks(await self._get_json(self.jwks_uri))
            except (httpx2.HTTPError, ValueError) as exc:
                # Keys already held stay in use: an issuer outage must not lock everyone out.
                logger.warning("fetching the signing keys of issuer %s failed: %s", self.config.issuer, exc)
                return
            self._keys, self._fetched_at = keys, time.monotonic()
            logger.info("loaded %d signing key(s) of issuer %s", sum(map(len, keys.values())), self.config.issuer)

    async def _discover(self) -> str:
        """The `jwks_uri` from the issuer's RFC 8414 / OpenID metadata, which must name the same issuer."""
        problems = []
        for url in discovery_urls(self.config.issuer):
            try:
                metadata = await self._get_json(url)
            except (httpx2.HTTPError, ValueError) as exc:
                problems.append(f"{url}: {exc}")
                continue
            if not isinstance(metadata, dict) or metadata.get("issuer") != self.config.issuer:
                # RFC 8414 §3.3: metadata for another issuer must not be used.
                problems.append(f"{url}: metadata names another issuer")
                continue
            jwks_uri = metadata.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                problems.append(f"{url}: no jwks_uri")
                continue
            return check_authority_url(jwks_uri, "jwks_uri")
        raise ValueError("no usable authorization server metadata (" + "; ".join(problems) + ")")

    async def _get_json(self, url: str) -> Any:
        async with self.client().stream("GET", url, headers={"Accept": "application/json"}) as response:
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code} from {url}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise ValueError(f"{url}: document larger than {MAX_DOCUMENT_BYTES} bytes")
        return json.loads(body)


@dataclass(frozen=True, slots=True)
class _Issuer:
    """One trusted issuer, its config compiled for the hot path."""

    config: IssuerConfig
    audience: str
    registry: JWSRegistry
    keys: IssuerKeys


def _is_time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def same_resource(a: str, b: str) -> bool:
    # A trailing slash aside, the audience must be this resource exactly (as the MCP SDK compares).
    return a.removesuffix("/") == b.removesuffix("/")


def _parse(token: str) -> tuple[CompactSignature, dict[str, Any]]:
    """The JWS object and its (not yet trusted) claims; AuthFailure for anything else."""
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise AuthFailure("not a gateway API key or a JWT")
    try:
        obj = jws.extract_compact(token.encode("ascii"))
        header, claims = obj.headers(), json.loads(obj.payload)
    except (JoseError, ValueError, UnicodeError):
        raise AuthFailure("malformed token") from None
    if not isinstance(header, dict) or not isinstance(header.get("alg"), str) or not isinstance(claims, dict):
        raise AuthFailure("malformed token")
    if header.get("b64", True) is not True:
        raise AuthFailure("malformed token")  # RFC 7797 unencoded payloads are no access tokens
    return obj, claims


def principal_from_claims(claims: dict[str, Any], config: IssuerConfig, via: Via = "jwt") -> Principal:
    """The principal a verified token's claims name (consumer, team, org, scopes), by the issuer's rules."""

    def text(claim: str | None) -> str | None:
        if claim is None or claims.get(claim) is None:
            return None
        value = claims[claim]
        # A claim of the wrong shape is refused rather than ignored: ignoring a team claim would
        # skip that team's deny policies.
        if not isinstance(value, str) or not value or len(value) > 256:
            raise AuthFailure(f"token claim {claim!r} is not a usable name")
        return value

    consumer = text(config.consumer_claim)
    if consumer is None:
        raise AuthFailure(f"token has no {config.consumer_claim!r} claim")
    raw = claims.get(config.scopes_claim)
    if raw is None:
        scopes: frozenset[str] = frozenset()
    elif isinstance(raw, str):
        scopes = frozenset(raw.split())
    elif isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        scopes = frozenset(raw)
    else:
        raise AuthFailure(f"token claim {config.scopes_claim!r} is not a scope list")
    sub = claims.get("sub")
    return Principal(
        consumer,
        team=text(config.team_claim),
        org=text(config.org_claim),
        via=via,
        credential_id=sub if isinstance(sub, str) else None,
        scopes=scopes,
        issuer=config.issuer,
    )


# Verified tokens remembered: at most this many, each at most this long (seconds), whatever its exp.
MAX_VERIFIED = 10_000
VERIFIED_TTL = 300.0


class JwtVerifier:
    """Turns JWT access tokens of the configured issuers into principals."""

    def __init__(self, auth: AuthConfig, *, user_agent: str = "mcp-gateway") -> None:
        if auth.resource is None:
            raise ValueError("auth.resource is required to verify JWTs")
        self.resource = auth.resource
        self.required_scopes = frozenset(auth.required_scopes)
        self.scopes_supported = list(auth.scopes_supported or auth.required_scopes)
        self.user_agent = user_agent
        self._client: httpx2.AsyncClient | None = None
        self._verified = Remembered(MAX_VERIFIED)
        self._issuers = {
            i.issuer: _Issuer(
                config=i,
                audience=i.audience or auth.resource,
                # strict_check_header off: unknown, non-critical header members are ignored (RFC 7515 §4);
                # `crit` is still enforced.
                registry=JWSRegistry(algorithms=list(i.algorithms), strict_check_header=False),
                keys=IssuerKeys(i, self._http),
            )
            for i in auth.issuers
        }

    @property
    def issuers(self) -> list[str]:
        """The trusted issuers, as configured."""
        return list(self._issuers)

    def _http(self) -> httpx2.AsyncClient:
        # Made on first use, inside the event loop that serves requests.
        if self._client is None:
            self._client = httpx2.AsyncClient(
                timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False, headers={"User-Agent": self.user_agent}
            )
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP client used for JWKS and metadata."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def authenticate(self, token: str) -> Principal:
        """The principal of a valid token; AuthFailure (with a non-revealing description) otherwise.

        A token that passed every check is remembered (by its digest, `token_digest`) until it expires, or five
        minutes at most, so that an agent's stream of calls costs one signature check, not one each."""
        principal = self._verified.get(token)
        if principal is None:
            principal, exp = await self._verify(token)
            self._verified.put(token, principal, min(exp, time.time() + VERIFIED_TTL))
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        obj, claims = _parse(token)
        iss = claims.get("iss")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise AuthFailure("token issuer is not trusted")
        header = obj.headers()
        alg = header["alg"]
        if alg not in issuer.config.algorithms:
            raise AuthFailure("token algorithm is not accepted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthFailure("malformed token")
        keys = await issuer.keys.candidates(kid, alg)
        if not keys:
            raise AuthFailure("token signing key is not known")
        if not any(self._verifies(obj, key, issuer.registry) for key in keys):
            raise AuthFailure("token signature is invalid")
        self._check_times(claims, issuer.config.leeway_seconds)
        if not self._audience_ok(claims.get("aud"), issuer.audience):
            raise AuthFailure("token audience is not this resource")
        principal = self._principal(claims, issuer)
        missing = self.required_scopes - principal.scopes
        if missing:
            raise AuthFailure(
                "token lacks a required scope", error="insufficient_scope", scope=" ".join(sorted(self.required_scopes))
            )
        return principal, float(claims["exp"])

    @staticmethod
    def _verifies(obj: CompactSignature, key: PublicKey, registry: JWSRegistry) -> bool:
        try:
            return jws.validate_compact(obj, key, registry=registry)
        except (JoseError, ValueError):
            return False

    @staticmethod
    def _check_times(claims: dict[str, Any], leeway: float) -> None:
        now = time.time()
        exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
        # A token without an expiry would be good forever: refused.
        if not _is_time(exp) or any(v is not None and not _is_time(v) for v in (nbf, iat)):
            raise AuthFailure("token times (exp, nbf, iat) are missing or malformed")
        if now > exp + leeway:
            raise AuthFailure("token expired")
        if nbf is not None and nbf > now + leeway:
            raise AuthFailure("token not yet valid")
        if iat is not None and iat > now + leeway:
            raise AuthFailure("token issued in the future")

    @staticmethod
    def _audience_ok(aud: object, expected: str) -> bool:
        audiences: Iterable[object] = aud if isinstance(aud, list) else [aud]
        return any(isinstance(a, str) and same_resource(a, expected) for a in audiences)

    @staticmethod
    def _principal(claims: dict[str, Any], issuer: _Issuer) -> Principal:
        return principal_from_claims(claims, issuer.config)
