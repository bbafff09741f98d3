"""Reading the console's form posts (application/x-www-form-urlencoded) without a multipart
parser: uploaded specs are read by the browser into a text field (static/console.js)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

MAX_FORM = 64 * 1024
MAX_SPEC_FORM = 20 * 1024 * 1024  # an API registration with the spec's text in it


class FormError(ValueError):
    """A form post that cannot be read (413, 415)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


async def read_form(request: Request, limit: int = MAX_FORM) -> dict[str, str]:
    """The posted fields (the last value of a repeated one), at most `limit` bytes."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise FormError("the console takes form posts (application/x-www-form-urlencoded)", 415)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise FormError(f"form larger than {limit} bytes", 413)
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


def field(form: dict[str, str], name: str) -> str | None:
    """A field's value, stripped; None when absent or blank."""
    value = form.get(name, "").strip()
    return value or None
