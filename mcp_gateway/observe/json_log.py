"""`log_format: json`: every log record, the gateway's and the libraries' (uvicorn, the SDK,
httpx2), as one JSON object per line.

Keys: `time` (UTC, ISO 8601 with milliseconds), `level`, `logger`, `pid`, `message`, and `exception`
when there is one; a call's access line adds its fields (observe/access_log.py) as keys. The
message is the record's after the PayloadFilter has cut payloads out of it.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.gmtime(record.created)
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,  # which worker, with --workers N
            "message": record.getMessage(),
        }
        fields = getattr(record, "call", None)  # an access line's (observe/access_log.py)
        if callable(fields):
            fields = fields()
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)
