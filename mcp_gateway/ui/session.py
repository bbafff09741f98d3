"""The console's sessions and CSRF tokens: signed, stateless, bound to the admin token.

Logging in with the admin token gives a session cookie `v1.<id>.<expiry>.<signature>`; the
signature is HMAC-SHA256 under a key derived from the admin token, so changing the token ends
every session, and no session store is needed (replicas accept each other's cookies). The cookie
is HttpOnly, SameSite=Strict, Secure when the console is reached over HTTPS, and scoped to /ui.
Logging out records the session as ended in the store (store/logouts.py), which every replica
reloads at its store poll.
Each form carries a CSRF token derived from the session id (a POST without the right one is
refused), on top of SameSite and the front door's Origin check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from mcp_gateway.store.logouts import LogoutStore

COOKIE = "mcpgw_console"
PATH = "/ui"
LIFETIME = 12 * 3600.0  # a working day: then the admin token is asked for again


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in operator's session."""

    id: str
    expires: float
    csrf: str


class Sessions:
    """Issues and checks session cookies and CSRF tokens for one admin token."""

    def __init__(self, admin_token: str, logouts: LogoutStore) -> None:
        self._token = admin_token.encode()
        self._logouts = logouts
        # A key of its own: the admin token is never used directly as a MAC key or stored anywhere.
        self._key = hmac.new(self._token, b"mcp-gateway console session v1", hashlib.sha256).digest()

    def _sign(self, text: str, purpose: bytes) -> str:
        return _b64(hmac.new(self._key, purpose + b"\0" + text.encode(), hashlib.sha256).digest())

    def check_token(self, candidate: str) -> bool:
        """Whether `candidate` is the admin token (constant time)."""
        return hmac.compare_digest(candidate.encode(), self._token)

    def start(self, now: float | None = None) -> tuple[str, Session]:
        """A new session: its cookie value and the session."""
        sid = secrets.token_urlsafe(18)
        expires = int((now or time.time()) + LIFETIME)
        body = f"{sid}.{expires}"
        return f"v1.{body}.{self._sign(body, b'cookie')}", self._session(sid, expires)

    def _session(self, sid: str, expires: float) -> Session:
        return Session(sid, expires, self._sign(sid, b"csrf"))

    def read(self, request: Request, now: float | None = None) -> Session | None:
        """The request's valid session, or None."""
        value = request.cookies.get(COOKIE, "")
        parts = value.split(".")
        if len(parts) != 4 or parts[0] != "v1":
            return None
        _, sid, expires, signature = parts
        if not hmac.compare_digest(signature, self._sign(f"{sid}.{expires}", b"cookie")):
            return None
        now = now or time.time()
        if not expires.isdigit() or int(expires) <= now or sid in self._logouts.ended:
            return None
        return self._session(sid, int(expires))

    def csrf_ok(self, session: Session, submitted: str | None) -> bool:
        """Whether a form's CSRF token is the session's (constant time)."""
        return submitted is not None and hmac.compare_digest(submitted.encode(), session.csrf.encode())

    def end(self, session: Session) -> None:
        """Log out (blocking: a store write): this process refuses the session at once, the other
        replicas from their next store poll."""
        self._logouts.end(session.id, session.expires)


def set_cookie(response: Response, request: Request, value: str) -> None:
    """The session cookie's flags: HttpOnly, SameSite=Strict, Path=/ui, Secure over HTTPS."""
    response.set_cookie(
        COOKIE, value, max_age=int(LIFETIME), path=PATH, httponly=True, samesite="strict",
        secure=request.url.scheme == "https",
    )  # fmt: skip


def clear_cookie(response: Response, request: Request) -> None:
    """Remove the session cookie."""
    response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="strict", secure=request.url.scheme == "https")
