"""Scrubbing a call's secrets from what leaves the upstream layer: tool results and errors.

A secret can come back in many spellings: as is, percent-encoded (upper or lower case hex,
`+` for a space), base64 (standard or URL-safe, at any alignment inside a longer blob, as
in `Basic base64(user:secret)`), and inside JSON, where any character may be escaped
(`\\/`, `\\u0026`, `\\u00E9`, surrogate pairs) and JSON inside a JSON string escapes those
escapes again. Rather than list spellings, each form of a secret becomes a pattern in which
every character may be written literally, as any JSON escape of it at any nesting depth,
or percent-encoded; so a secret split across an escape is still one match.

Cheap when absent (the usual case). Each form has an anchor: its longest run of characters
that no JSON or URL encoder escapes (ASCII letters, digits, `_`, `-`, `.`). A text without
any anchor cannot hold the form in any spelling, and costs one substring search per form.
When an anchor is there, the pattern is matched around it only: forwards from the anchor
for the rest of the form, backwards (on the reversed text) for the part before it.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

REDACTED = "[REDACTED]"
MIN_SECRET_CHARS = 4  # shorter values cannot be scrubbed without mangling ordinary text
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.")
_SHORT_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t"}
# Backslashes before an escape: 1 in JSON, 3 in JSON in a JSON string, 7, 15, 31 deeper.
_MAX_BACKSLASHES = 31
_ANY_BACKSLASHES = rf"\\{{0,{_MAX_BACKSLASHES}}}"
_SOME_BACKSLASHES = rf"\\{{1,{_MAX_BACKSLASHES}}}"
_CHAR_SPAN = 2 * (_MAX_BACKSLASHES + 5)  # the longest spelling of one character: a surrogate pair


def _hex(value: int, width: int = 4) -> list[str]:
    """Regex tokens for a hex number, any letter case (`\\u00e9` or `\\u00E9`)."""
    return [f"[{d.lower()}{d.upper()}]" if d.isalpha() else d for d in f"{value:0{width}x}"]


def _spellings(chars: str) -> list[list[str]]:
    """Token lists (regex fragments, in text order) each matching one spelling of a character
    written as any of `chars` (several when the form allows either, e.g. base64's `+` or `-`)."""
    out = [[_ANY_BACKSLASHES, "[" + "".join(re.escape(c) for c in chars) + "]"]]
    for char in chars:
        if char in _SHORT_ESCAPES:
            out.append([_SOME_BACKSLASHES, re.escape(_SHORT_ESCAPES[char])])
        code = ord(char)
        if code < 0x10000:
            out.append([_SOME_BACKSLASHES, "u", *_hex(code)])
        else:  # a UTF-16 surrogate pair
            high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
            out.append([_SOME_BACKSLASHES, "u", *_hex(high), _SOME_BACKSLASHES, "u", *_hex(low)])
        if char == " ":
            out.append([r"\+"])
        # Percent-encoded (its UTF-8 bytes): a query string or form body echoed back.
        out.append([token for byte in char.encode() for token in ("%", *_hex(byte, 2))])
    return out


def _piece(chars: str, reverse: bool) -> str:
    options = _spellings(chars)
    return "(?:" + "|".join("".join(reversed(t) if reverse else t) for t in options) + ")"


@dataclass(frozen=True, slots=True)
class _Form:
    """One form of a secret (the secret itself, or its base64 at one alignment)."""

    anchor: str  # never escaped; "" when the form has no such character (then matched everywhere)
    after: re.Pattern[str]  # the anchor and what follows it in the form
    before: re.Pattern[str] | None  # what precedes the anchor, spelled backwards
    before_span: int  # the most text `before` can cover

    @classmethod
    def of(cls, classes: list[str]) -> _Form:
        """`classes`: per character of the form, the characters it may be written as."""
        start, length, run = 0, 0, 0
        for i, chars in enumerate(classes):
            run = run + 1 if len(chars) == 1 and chars in _SAFE else 0
            if run > length:
                start, length = i - run + 1, run
        head, tail = classes[:start], classes[start + length :]
        anchor = "".join(classes[start : start + length])
        after = re.compile(re.escape(anchor) + "".join(_piece(c, False) for c in tail))
        before = re.compile("".join(_piece(c, True) for c in reversed(head))) if head else None
        return cls(anchor, after, before, _CHAR_SPAN * len(head))

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where the form occurs in `text`, in any spelling."""
        found: list[tuple[int, int]] = []
        pos = 0
        while True:
            if self.anchor:  # str.find outruns the regex engine's own literal search
                start = text.find(self.anchor, pos)
                match = self.after.match(text, start) if start >= 0 else None
                if start >= 0 and match is None:
                    pos = start + 1
                    continue
            else:
                match = self.after.search(text, pos)
            if match is None:
                return found
            start = match.start()
            if self.before is not None:
                prefix = self.before.match(text[max(0, start - self.before_span) : start][::-1])
                if prefix is None:  # the anchor without the rest: look again just after it
                    pos = start + 1
                    continue
                start -= prefix.end()
            found.append((start, match.end()))
            pos = max(match.end(), pos + 1)


def _base64_forms(raw: bytes) -> list[list[str]]:
    """The base64 of `raw` at each alignment in a longer blob, only the characters that `raw`
    alone decides; `+`/`-` and `/`/`_` either way (standard or URL-safe alphabet)."""
    forms = []
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + raw).decode("ascii")
        first = (0, 2, 3)[offset]  # characters that mix in bits of the bytes before
        last = (8 * (offset + len(raw))) // 6  # the final partial character mixes in bits after
        middle = encoded[first:last]
        if len(middle) >= MIN_SECRET_CHARS:
            forms.append([{"+": "+-", "/": "/_"}.get(c, c) for c in middle])
    return forms


def _forms(secret: str) -> list[list[str]]:
    forms = [list(secret)]
    encodings = {secret.encode()}
    with contextlib.suppress(UnicodeEncodeError):
        encodings.add(secret.encode("latin-1"))  # authlib encodes Basic credentials as latin-1
    for raw in encodings:
        forms += _base64_forms(raw)
    return forms


class Scrubber:
    """Replaces a set of secrets, in every spelling, with `[REDACTED]`. Get one from `scrubber()`."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self.secrets = secrets
        self._forms = [_Form.of(f) for s in secrets if len(s) >= MIN_SECRET_CHARS for f in _forms(s)]
        # Longest anchors first: checked most cheaply and most often decisive.
        self._forms.sort(key=lambda f: len(f.anchor), reverse=True)

    def __bool__(self) -> bool:
        return bool(self._forms)

    def present(self, text: str) -> bool:
        """Whether `text` may hold a secret (an anchor is there); False means it certainly does not."""
        return any(form.anchor in text for form in self._forms)

    def text(self, text: str) -> str:
        """`text` with every secret replaced."""
        for form in self._forms:
            if form.anchor not in text:
                continue
            # Each spelling found, replaced wherever it is: one new string, not one per slice
            # (a fresh megabyte costs more in page faults than the search itself).
            for spelling in sorted({text[start:end] for start, end in form.spans(text)}, key=len, reverse=True):
                text = text.replace(spelling, REDACTED)
        return text

    def data(self, value: Any) -> Any:
        """A decoded JSON value with every secret replaced in its strings (keys too), numbers and
        strings that themselves hold JSON; the same object when nothing was found."""
        if isinstance(value, str):
            return self._string(value)
        if isinstance(value, dict):
            items = [(self._string(k), self.data(v)) for k, v in value.items()]
            if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items(), strict=True)):
                return value
            return dict(items)
        if isinstance(value, list):
            cleaned = [self.data(v) for v in value]
            return value if all(a is b for a, b in zip(cleaned, value, strict=True)) else cleaned
        if isinstance(value, int | float) and not isinstance(value, bool):
            shown = json.dumps(value)
            return value if self.text(shown) == shown else REDACTED
        return value

    def _string(self, text: str) -> str:
        if not self.present(text):
            return text
        if text.lstrip()[:1] in ("{", "["):  # JSON inside a string: scrub it as data, keep it JSON
            try:
                inner = json.loads(text)
            except ValueError:
                pass
            else:
                cleaned = self.data(inner)
                if cleaned is not inner:
                    text = json.dumps(cleaned, ensure_ascii=False)
        return self.text(text)

    def binary(self, body: bytes) -> bytes:
        """A body shown as base64 (an image, a file): its bytes scrubbed as Latin-1 text, where
        a UTF-8 secret is its bytes' Latin-1 reading."""
        if not self:
            return body
        return _binary_scrubber(self.secrets).text(body.decode("latin-1")).encode("latin-1")


@functools.lru_cache(maxsize=1024)
def _scrubber(secrets: tuple[str, ...]) -> Scrubber:
    return Scrubber(secrets)


def scrubber(secrets: Iterable[str | None]) -> Scrubber:
    """The scrubber of a set of secrets (None and duplicates ignored). Memoised: a call's secrets
    are usually those of the call before (the same key or token)."""
    return _scrubber(tuple(sorted({s for s in secrets if s})))


@functools.lru_cache(maxsize=64)
def _binary_scrubber(secrets: tuple[str, ...]) -> Scrubber:
    mojibake = {s.encode().decode("latin-1") for s in secrets}
    return Scrubber(tuple(sorted(mojibake | set(secrets))))


NO_SECRETS = scrubber(())
