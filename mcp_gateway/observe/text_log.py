"""`log_format: text` (the default): `time level logger: message`, one line per record.

The formatter is the standard one, with the time's text kept for the second it names: an access
line per call made `strftime` run for every call."""

from __future__ import annotations

import logging

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    """logging.Formatter(TEXT_FORMAT), with each second's local time formatted once."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second = -1
        self._text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """As logging.Formatter's (local time, then `,` and milliseconds)."""
        second = int(record.created)
        if second != self._second or datefmt is not None:
            text = super().formatTime(record, datefmt)
            if datefmt is not None:
                return text
            # The milliseconds are the default format's last part: keep the rest for this second.
            self._second, self._text = second, text[: text.rindex(",")]
        return self.default_msec_format % (self._text, record.msecs)
