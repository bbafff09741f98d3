"""Shared by the leak scans: the forms a secret can take, a detector that decodes whatever spelling
a text uses, and the loggers that are not the gateway's."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from urllib.parse import quote, quote_plus, unquote, unquote_plus


def forms(secret: str) -> set[str]:
    raw = secret.encode()
    return {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        base64.b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        json.dumps(secret)[1:-1],
    }


_JSON_ESCAPE = re.compile(r'\\(["\\/bfnrt]|u[0-9a-fA-F]{4})')
_SHORT = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{6,}")


def _unescape_json(text: str) -> str:
    """One level of JSON string escapes undone (surrogate pairs joined), whatever the hex case."""
    out = _JSON_ESCAPE.sub(lambda m: _SHORT.get(m[1]) or chr(int(m[1][1:], 16)), text)
    return out.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _views(text: str) -> list[str]:
    """`text` as an agent could read it: JSON escapes undone at each depth, percent-decoded."""
    levels = [text]
    for _ in range(5):
        nxt = _unescape_json(levels[-1])
        if nxt == levels[-1]:
            break
        levels.append(nxt)
    return [v for level in levels for v in (level, unquote(level), unquote_plus(level))]


def _in_base64(secret: bytes, text: str) -> bool:
    for run in _BASE64_RUN.findall(text):
        run = run.replace("-", "+").replace("_", "/")
        for offset in range(4):  # the run may start anywhere in a 4-character quantum
            chunk = run[offset:]
            rest = len(chunk) % 4  # unpadded or cut: pad what can be, drop a lone character
            chunk = chunk[:-1] if rest == 1 else chunk + "=" * ((4 - rest) % 4)
            try:
                if secret in base64.b64decode(chunk):
                    return True
            except (binascii.Error, ValueError):
                continue
    return False


def leaked(secret: str, text: str) -> bool:
    """Whether `text` holds `secret` in any spelling: as is, JSON-escaped (any depth, any hex case,
    surrogate pairs), percent-encoded, or base64 (either alphabet, at any alignment)."""
    encodings = {secret.encode()}
    with contextlib.suppress(UnicodeEncodeError):
        encodings.add(secret.encode("latin-1"))
    return any(secret in view or any(_in_base64(raw, view) for raw in encodings) for view in _views(text))


# The test's own authorization server (authlib's server core) logs the credentials it checks;
# it runs in this process, but it is not the gateway.
TEST_SERVER_LOGGERS = (
    "authlib.oauth2.rfc6749.grants",
    "authlib.oauth2.rfc6749.authorization_server",
    "authlib.oauth2.rfc7009",
    "authlib.oauth2.rfc7636",
    "authlib.oauth2.rfc8693",
    "tests.",
)
