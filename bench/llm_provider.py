"""The model provider used by bench/llm_proxy.py: OpenAI's chat completions on a bare uvloop + httptools server.

Deliberately lean (no framework, answers built from prepared bytes), so that on a 2-core
machine the benchmark's CPU goes to the proxies being measured, not to the provider they
call. It speaks the wire format as OpenAI does, as far as a proxy can tell:

- `POST .../chat/completions` with `Authorization: Bearer <key>` (401 otherwise, so a proxy
  that forwards the wrong credential fails the benchmark's checks), answered with the model
  the request named;
- not streamed: one JSON answer with `usage`;
- streamed (`"stream": true`): `text/event-stream` in chunked transfer encoding, one HTTP
  chunk per event: a first chunk with the role and the first token (`Hello`, which the
  benchmark's TTFT client looks for), more content chunks, a finish chunk, the usage chunk
  (`choices: []`) only when `stream_options.include_usage` asks for it, then `[DONE]`.
  With `--gap-ms`, the events after the first come that many milliseconds apart.
- `GET /health`: 200.

    python bench/llm_provider.py PORT KEY [--gap-ms 0] [--tokens 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json

import httptools
import uvloop

CREATED = 1_700_000_000
WORDS = ["Hello", " there", ",", " this", " is", " a", " benchmark", " answer", " from", " the", " fake", " model", "."]


def _json(data: object) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


class Answers:
    """The prepared bytes of every answer, per model name (requests name one or two models)."""

    def __init__(self, tokens: int) -> None:
        self.tokens = [WORDS[i % len(WORDS)] for i in range(tokens)]
        self._cache: dict[str, tuple[bytes, list[bytes], bytes]] = {}

    def of(self, model: str) -> tuple[bytes, list[bytes], bytes]:
        """(whole JSON answer, stream events without usage, the usage event) for `model`."""
        found = self._cache.get(model)
        if found is None:
            found = self._cache[model] = self._build(model)
        return found

    def _build(self, model: str) -> tuple[bytes, list[bytes], bytes]:
        text = "".join(self.tokens)
        usage = {
            "prompt_tokens": 120,
            "completion_tokens": len(self.tokens),
            "total_tokens": 120 + len(self.tokens),
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
        head = {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "system_fingerprint": "fp_bench",
        }
        whole = _json(
            {
                **head,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        )
        chunk = {**head, "object": "chat.completion.chunk"}

        def event(choices: list, **extra: object) -> bytes:
            return b"data: " + _json({**chunk, "choices": choices, **extra}) + b"\n\n"

        def delta(content: dict, finish: str | None = None) -> list:
            return [{"index": 0, "delta": content, "logprobs": None, "finish_reason": finish}]

        events = [event(delta({"role": "assistant", "content": self.tokens[0]}))]
        events += [event(delta({"content": token})) for token in self.tokens[1:]]
        events.append(event(delta({}, "stop")))
        return whole, events, event([], usage=usage)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


JSON_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
DONE = _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"


class _Handler(asyncio.Protocol):
    answers: Answers
    authorization: bytes
    gap: float

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.body = bytearray()
        self.authorized = False
        self.header = b""

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"authorization" and value == self.authorization:
            self.authorized = True

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        url, body, authorized = self.url, bytes(self.body), self.authorized
        self._reset()
        if url == b"/health":
            self._send(200, b'{"status":"ok"}')
        elif not url.endswith(b"/chat/completions"):
            self._send(404, b'{"error":{"message":"not found","type":"invalid_request_error"}}')
        elif not authorized:
            self._send(401, b'{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}')
        else:
            self._answer(body)
        if not self.parser.should_keep_alive():
            self.transport.close()

    def _send(self, status: int, body: bytes) -> None:
        reason = {200: b"OK", 401: b"Unauthorized", 404: b"Not Found"}[status]
        head = b"HTTP/1.1 %d %b\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        self.transport.write(head % (status, reason, len(body)) + body)

    def _answer(self, raw: bytes) -> None:
        request = json.loads(raw)
        whole, events, usage = self.answers.of(str(request.get("model")))
        if request.get("stream") is not True:
            self.transport.write(JSON_HEAD % len(whole) + whole)
            return
        options = request.get("stream_options")
        tail = [*events[1:], usage] if isinstance(options, dict) and options.get("include_usage") else events[1:]
        first = SSE_HEAD + _chunk(events[0])
        if self.gap <= 0:
            self.transport.write(first + b"".join(_chunk(e) for e in tail) + DONE)
        else:
            self.transport.write(first)
            asyncio.get_running_loop().create_task(self._paced(tail))

    async def _paced(self, tail: list[bytes]) -> None:
        for event in tail:
            await asyncio.sleep(self.gap)
            if self.transport.is_closing():
                return
            self.transport.write(_chunk(event))
        self.transport.write(DONE)


async def serve(port: int, key: str, gap_ms: float, tokens: int) -> None:
    _Handler.answers = Answers(tokens)
    _Handler.authorization = b"Bearer " + key.encode()
    _Handler.gap = gap_ms / 1000
    server = await asyncio.get_running_loop().create_server(_Handler, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("port", type=int)
    parser.add_argument("key", help="the API key the provider accepts")
    parser.add_argument("--gap-ms", type=float, default=0.0, help="pause between stream events after the first")
    parser.add_argument("--tokens", type=int, default=16, help="content tokens per answer")
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.key, args.gap_ms, args.tokens))
