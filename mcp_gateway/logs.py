"""What the gateway's logs may say: never a message payload (tool arguments and results, prompts)
unless the operator sets `log_payloads: true`.

The gateway's own loggers never log payloads. Libraries do, at DEBUG: sse_starlette every SSE
chunk it sends (each a JSON-RPC message, results included), the SDK's SSE transport every
message it receives or sends, httpcore2 the upstream's response headers, and uvicorn's access
log each request's query string (connect tickets, OAuth codes and states). `PayloadFilter`,
attached to the gateway's log handlers, cuts those parts out of every record that reaches them,
whichever logger made it.
"""

from __future__ import annotations

import logging

HIDDEN = "[payload hidden; log_payloads: true logs it]"
_JSONRPC = "jsonrpc"  # in every JSON-RPC message, as JSON or as a model's repr
_RESPONSE_HEADERS = "receive_response_headers.complete"


class PayloadFilter(logging.Filter):
    """Rewrites records that carry payloads; lets every record through."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access":
            _hide_query(record)
            return True
        try:
            message = record.getMessage()
        except Exception:  # a library's bad log call: its arguments are not shown either
            message = f"{record.msg} [arguments hidden: they do not fit the message]"
        if record.name.startswith("httpcore") and message.startswith(_RESPONSE_HEADERS):
            message = _RESPONSE_HEADERS  # the headers are the upstream's answer
        elif (at := message.find(_JSONRPC)) >= 0:
            # Keep what the library says it is doing ("chunk: ", "Received JSON: "), not the message.
            colon = message.find(": ", 0, at)
            message = (message[: colon + 2] if colon >= 0 else "") + HIDDEN
        # Formatted once, here: the handlers reuse it.
        record.msg, record.args = message, ()
        return True


def _hide_query(record: logging.LogRecord) -> None:
    # uvicorn's access line: (client address, method, path with query, HTTP version, status).
    args = record.args
    if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str) and "?" in args[2]:
        record.args = (*args[:2], args[2].split("?", 1)[0] + "?[query hidden]", *args[3:])


def hide_payloads(log_payloads: bool = False) -> None:
    """Attach a `PayloadFilter` to each handler of the root logger (once), unless `log_payloads`."""
    for handler in logging.getLogger().handlers:
        present = [f for f in handler.filters if isinstance(f, PayloadFilter)]
        if log_payloads:
            for found in present:
                handler.removeFilter(found)
        elif not present:
            handler.addFilter(PayloadFilter())
