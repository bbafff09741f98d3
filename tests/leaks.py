"""Shared by the leak scans: the forms a secret can take, and the loggers that are not the gateway's."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus


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
