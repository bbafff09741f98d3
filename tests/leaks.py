"""Shared by the leak scans: the forms a secret can take, a detector that decodes whatever spelling
a text uses, and the loggers that are not the gateway's."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import re
from collections.abc import Iterable
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
    return list(dict.fromkeys(v for level in levels for v in (level, unquote(level), unquote_plus(level))))


def _base64_blobs(text: str) -> list[bytes]:
    """Every base64-looking run of `text` decoded, from each of the 4 offsets in a quantum."""
    blobs = []
    for run in _BASE64_RUN.findall(text):
        run = run.replace("-", "+").replace("_", "/")
        for offset in range(4):  # the run may start anywhere in a 4-character quantum
            chunk = run[offset:]
            rest = len(chunk) % 4  # unpadded or cut: pad what can be, drop a lone character
            chunk = chunk[:-1] if rest == 1 else chunk + "=" * ((4 - rest) % 4)
            with contextlib.suppress(binascii.Error, ValueError):
                blobs.append(base64.b64decode(chunk))
    return blobs


class Decoded:
    """A text decoded every way an agent (or a log reader) could: built once, asked per secret."""

    def __init__(self, text: str) -> None:
        self.views = _views(text)
        self.blobs = b"\0".join(blob for view in self.views for blob in _base64_blobs(view))

    def holds(self, secret: str) -> bool:
        """Whether the text holds `secret` in any spelling."""
        encodings = {secret.encode()}
        with contextlib.suppress(UnicodeEncodeError):
            encodings.add(secret.encode("latin-1"))
        return any(secret in view for view in self.views) or any(raw in self.blobs for raw in encodings)


def leaked(secret: str, text: str) -> bool:
    """Whether `text` holds `secret` in any spelling: as is, JSON-escaped (any depth, any hex case,
    surrogate pairs), percent-encoded, or base64 (either alphabet, at any alignment)."""
    return Decoded(text).holds(secret)


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


class LogCapture(logging.Handler):
    """Every record of every logger but the test servers', formatted (with its traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(TEST_SERVER_LOGGERS):
            self.lines.append(self.format(record))

    def text(self) -> str:
        return "\n".join(self.lines)


def assert_not_leaked(haystack: str, secrets: Iterable[str]) -> None:
    """Fails naming the lines where any of `secrets` shows, in any form or spelling."""
    decoded = Decoded(haystack)  # any other spelling: JSON escapes at any depth, base64 at any alignment...
    for secret in secrets:
        for form in forms(secret):
            where = [line[:200] for line in haystack.splitlines() if form in line][:3]
            assert not where, f"a secret leaked (form {form[:4]}…) in: {where}"
        if decoded.holds(secret):
            where = [line[:200] for line in haystack.splitlines() if leaked(secret, line)][:3]
            raise AssertionError(f"a secret leaked (spelled otherwise) in: {where}")
