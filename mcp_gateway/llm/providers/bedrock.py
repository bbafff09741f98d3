"""AWS Bedrock: the Converse API, streamed (ConverseStream) or not, signed with SigV4.

What must not be hand-rolled comes from botocore (the optional extra `mcp-gateway[bedrock]`):
the signature (`SigV4Auth` on an `AWSRequest`, service `bedrock`, as boto3 signs
`bedrock-runtime` calls), the model id in the URL (percent-encoded as botocore's serializer
encodes a path label: `:` and `/` too), and the framing of ConverseStream's binary event stream
(`application/vnd.amazon.eventstream`, decoded by `EventStreamBuffer`, which checks each frame's
checksums). Each frame becomes an `sse.Event` named after its event type, whose data is the
event as boto3 hands it out: `{"contentBlockDelta": {...}}`. An exception the stream sends
(`throttlingException`, `modelStreamErrorException`...) becomes `{"error": {"code", "message"}}`.

Credentials come from the vault: `aws_access_key_id` (plain or a reference),
`aws_secret_access_key` and, for temporary credentials, `aws_session_token`. AWS's default
credential chain (environment, ~/.aws, instance metadata) is deliberately not used: a
provider's credentials live in the vault like every other key, are rotated there, and are
scrubbed from whatever the provider says back (the secret key and the session token, which
AWS quotes in a signature mismatch's canonical request). botocore logs each canonical request,
session token included, at DEBUG: its signer's logger is kept above DEBUG.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

from mcp_gateway.config.models import BEDROCK_BASE_URL, DeploymentConfig
from mcp_gateway.llm import sse
from mcp_gateway.llm.providers import Provider, Resolve
from mcp_gateway.llm.transport import ProviderRequest, ProviderResponse, host_of
from mcp_gateway.upstream.client import UpstreamError

EXTRA = "pip install 'mcp-gateway[bedrock]'"
SIGNING_NAME = "bedrock"  # the service name Bedrock Runtime signs with (not its endpoint prefix)
EVENT_STREAM = "application/vnd.amazon.eventstream"
JSON = ("Content-Type", "application/json")
_EVENT_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,63}$")


def _botocore() -> Any:
    """botocore, or a ValueError naming the extra that installs it."""
    try:
        import botocore.auth
        import botocore.awsrequest
        import botocore.credentials
        import botocore.eventstream
        import botocore.utils
    except ImportError:
        raise ValueError(f"AWS Bedrock deployments need botocore, which is not installed: {EXTRA}") from None
    # Its DEBUG lines quote each canonical request, with the session token in it.
    logging.getLogger("botocore.auth").setLevel(logging.INFO)
    return botocore


class BedrockProvider(Provider):
    """`https://bedrock-runtime.<region>.amazonaws.com/model/<model id>/converse` (streamed:
    `/converse-stream`; token counting: `/count-tokens`), signed with the deployment's AWS
    access key."""

    wire: ClassVar[str] = "bedrock"
    operations: ClassVar[frozenset[str]] = frozenset({"converse", "count_tokens"})
    stream_type: ClassVar[str] = EVENT_STREAM

    def __init__(self, deployment: DeploymentConfig, resolve: Resolve, user_agent: str) -> None:
        self._boto = _botocore()  # first: without botocore there is nothing to set up
        super().__init__(deployment, resolve, user_agent)
        # The config requires all three of these.
        assert deployment.region and deployment.aws_access_key_id and deployment.aws_secret_access_key
        secret = resolve(deployment.aws_secret_access_key)
        token = resolve(deployment.aws_session_token) if deployment.aws_session_token else None
        credentials = self._boto.credentials.Credentials(resolve(deployment.aws_access_key_id), secret, token)
        self._signer = self._boto.auth.SigV4Auth(credentials, SIGNING_NAME, deployment.region)
        self._secrets = [secret, *([token] if token else [])]
        self._base = deployment.base_url or BEDROCK_BASE_URL.format(region=deployment.region)

    @property
    def secrets(self) -> list[str]:
        """The secret access key and the session token."""
        return self._secrets

    def model_url(self, model: str) -> str:
        """The model's URL: its id is one path segment, encoded as botocore encodes it (and signs it)."""
        return f"{self._base}/model/{self._boto.utils.percent_encode(model)}"

    def request(
        self, operation: str, model: str, body: bytes, stream: bool, client_headers: Mapping[str, str]
    ) -> ProviderRequest:
        headers = [JSON, *self.deployment.headers.items()]
        if stream:
            headers.append(("Accept", EVENT_STREAM))
        action = "count-tokens" if operation == "count_tokens" else "converse-stream" if stream else "converse"
        return ProviderRequest("POST", f"{self.model_url(model)}/{action}", headers, body)

    async def send(self, request: ProviderRequest) -> ProviderResponse:
        """Sign the request (its method, URL, headers and body) now, and send it."""
        aws = self._boto.awsrequest.AWSRequest(
            method=request.method, url=request.url, data=request.content, headers=dict(request.headers)
        )
        self._signer.add_auth(aws)
        request.headers = list(aws.headers.items())
        return await self.transport.send(request)

    async def batches(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[list[sse.Event]]:
        """ConverseStream's frames as events, decoded by botocore as they arrive (those one read
        completed together)."""
        buffer = self._boto.eventstream.EventStreamBuffer()
        async for chunk in chunks:
            buffer.add_data(chunk)
            try:
                messages = list(buffer)
            except self._boto.eventstream.ParserError as exc:
                raise UpstreamError(
                    f"the provider's event stream is corrupt ({type(exc).__name__})", host_of(self._base), "protocol"
                ) from None
            if messages:
                yield [_event(message.headers, message.payload) for message in messages]


def _event(headers: Mapping[str, Any], payload: bytes) -> sse.Event:
    """One event stream message as an event: `{"<event type>": <payload>}`, or an exception's
    `{"error": {"code", "message"}}`."""
    kind = headers.get(":message-type")
    name = headers.get(":event-type")
    if kind == "event" and isinstance(name, str) and _EVENT_TYPE.match(name):
        # The payload is the event's JSON object: wrapped as it is, not parsed here.
        text = payload.decode("utf-8", errors="replace").strip() or "{}"
        return sse.Event(payload, name, f'{{"{name}":{text}}}')
    if kind == "exception":
        code = str(headers.get(":exception-type") or "exception")
        message = _message(payload) or code
    else:  # an `error` message (or one of a type never documented): its code and message are headers
        code = str(headers.get(":error-code") or name or "error")
        message = str(headers.get(":error-message") or _message(payload) or code)
    return sse.Event(payload, "error", json.dumps({"error": {"code": code, "message": message}}))


def _message(payload: bytes) -> str | None:
    try:
        data = json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", errors="replace").strip() or None
    found = data.get("message") or data.get("Message") if isinstance(data, dict) else None
    return str(found) if found else None
