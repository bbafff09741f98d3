"""The identity a request runs as, whatever credential proved it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Via = Literal["api_key", "jwt", "local"]


@dataclass(frozen=True, slots=True)
class Principal:
    """A consumer, with the team and organisation its policies are looked up by."""

    consumer: str
    team: str | None = None
    org: str | None = None
    via: Via = "api_key"
    credential_id: str | None = None  # the API key id or token subject, for logs; never a secret
    scopes: frozenset[str] = frozenset()
    issuer: str | None = None  # the `iss` of a JWT; None for gateway keys and stdio
