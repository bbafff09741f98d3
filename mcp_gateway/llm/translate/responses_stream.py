"""Chat completion chunks written as an OpenAI Responses API stream, for a deployment the
Responses API reaches through chat (see `responses`).

The events, in the order the `openai` SDK's stream helper (`client.responses.stream(...)`)
requires them, each with its `event:` name, its `type` and a `sequence_number` counting from 0:
`response.created` and `response.in_progress` first; then, item by item, `output_item.added`,
the item's own events and `output_item.done`: for a message `content_part.added`,
`output_text.delta`... `output_text.done` (`refusal.delta`/`.done` for a refusal) and
`content_part.done`; for a function call `function_call_arguments.delta`... `.done`; for
reasoning `reasoning_summary_part.added`, `reasoning_summary_text.delta`... `.done`,
`reasoning_summary_part.done`. Last, `response.completed`, or `response.incomplete` (as OpenAI
ends a response cut short), with the whole response and its usage. No `[DONE]`: the Responses
API ends its streams without one. An error event the chat translator writes passes as it is.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from mcp_gateway.llm import sse
from mcp_gateway.llm.translate.responses_answer import (
    Ids,
    call_item,
    envelope,
    output_text,
    reasoning_item,
    reasoning_of,
    status_of,
    usage_of,
)


class _Open:
    """An output item being streamed: its number, its item, the text (or arguments) so far."""

    def __init__(self, index: int, item: dict[str, Any]) -> None:
        self.index = index
        self.item = item
        self.kind = item["type"]
        self.pieces: list[str] = []  # of the open content part, summary or arguments
        self.part: str | None = None  # the kind of the open content part (output_text, refusal, summary_text)
        self.parts: list[dict[str, Any]] = []  # the message's finished content parts
        self.blocks: list[Any] = []  # reasoning: thinking blocks, signed
        self.call: dict[str, Any] = {}  # function call: the chat tool call's head (id, name, extra_content)


class ResponseEvents:
    """Chat chunks in, Responses API events out, for one stream (a `relay.StreamState`)."""

    def __init__(self, asked: str, client_body: Mapping[str, Any]) -> None:
        self.asked = asked
        self.client_body = client_body
        self.ids = Ids()
        self.created = int(time.time())
        self.sequence = 0
        self.started = False
        self.items: list[_Open] = []  # every item so far, in output order
        self.open: _Open | None = None  # the reasoning or message item being streamed
        self.calls: dict[int, _Open] = {}  # chat tool call index -> its function call item, while open
        self.finish: str | None = None
        self.usage: dict[str, Any] | None = None
        self.done = False

    def _event(self, kind: str, **data: Any) -> bytes:
        framed = sse.encode({"type": kind, "sequence_number": self.sequence, **data}, kind)
        self.sequence += 1
        return framed

    def _response(self, status: str, incomplete: dict[str, str] | None = None) -> dict[str, Any]:
        output = [item.item for item in self.items] if status != "in_progress" else []
        usage = self.usage if status != "in_progress" else None
        return envelope(self.client_body, self.asked, self.ids, self.created, status, output, usage, incomplete)

    def feed(self, data: dict[str, Any]) -> list[bytes]:
        """The events for one chat chunk."""
        if isinstance(data.get("error"), dict):
            self.done = True
            return [sse.encode(data)]
        out = self._start()
        if data.get("usage"):
            self.usage = usage_of(data["usage"])
        for choice in data.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # one answer is asked for: no other choice comes
            delta = choice.get("delta") or {}
            if reasoning := reasoning_of(delta):
                out += self._summary(reasoning)
            if delta.get("thinking_blocks"):
                out += self._reasoning()
                self.open.blocks += delta["thinking_blocks"]  # type: ignore[union-attr]
            if isinstance(delta.get("content"), str) and delta["content"]:
                out += self._text("output_text", delta["content"])
            if isinstance(delta.get("refusal"), str) and delta["refusal"]:
                out += self._text("refusal", delta["refusal"])
            for call in delta.get("tool_calls") or ():
                out += self._call(call)
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
                out += self._close_all()
        return out

    def close(self, marked: bool) -> list[bytes] | None:
        """The end, once the chat stream has finished (its usage chunk read): the last event
        with the whole response. A stream that never finished cannot be completed."""
        if self.finish is None:
            return None
        self.done = True
        status, incomplete = status_of(self.finish)
        out = self._close_all()
        kind = "response.completed" if status == "completed" else "response.incomplete"
        out.append(self._event(kind, response=self._response(status, incomplete)))
        return out

    # -- items ------------------------------------------------------------------------------------

    def _start(self) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        return [
            self._event("response.created", response=self._response("in_progress")),
            self._event("response.in_progress", response=self._response("in_progress")),
        ]

    def _add(self, item: dict[str, Any]) -> tuple[_Open, bytes]:
        opened = _Open(len(self.items), item)
        self.items.append(opened)
        return opened, self._event("response.output_item.added", output_index=opened.index, item=item)

    def _reasoning(self) -> list[bytes]:
        """The reasoning item, opened unless it is open."""
        if self.open is not None and self.open.kind == "reasoning":
            return []
        out = self._close_all()
        self.open, added = self._add({"type": "reasoning", "id": self.ids.item("rs"), "summary": []})
        return [*out, added]

    def _summary(self, text: str) -> list[bytes]:
        out = self._reasoning()
        item = self.open
        assert item is not None
        at = {"item_id": item.item["id"], "output_index": item.index, "summary_index": 0}
        if item.part is None:
            item.part = "summary_text"
            out.append(self._event("response.reasoning_summary_part.added", **at,
                                   part={"type": "summary_text", "text": ""}))  # fmt: skip
        item.pieces.append(text)
        out.append(self._event("response.reasoning_summary_text.delta", **at, delta=text))
        return out

    def _text(self, part: str, text: str) -> list[bytes]:
        """Text (or a refusal) of the message item, opened unless it is open, in a part of its kind."""
        out: list[bytes] = []
        if self.open is None or self.open.kind != "message":
            out += self._close_all()
            item = {"type": "message", "id": self.ids.item("msg"), "status": "in_progress", "role": "assistant",
                    "content": []}  # fmt: skip
            self.open, added = self._add(item)
            out.append(added)
        message = self.open
        at = {"item_id": message.item["id"], "output_index": message.index, "content_index": len(message.parts)}
        if message.part != part:
            out += self._close_part(message)
            at["content_index"] = len(message.parts)
            message.part = part
            empty = output_text("") if part == "output_text" else {"type": "refusal", "refusal": ""}
            out.append(self._event("response.content_part.added", **at, part=empty))
        message.pieces.append(text)
        if part == "output_text":
            out.append(self._event("response.output_text.delta", **at, delta=text, logprobs=[]))
        else:
            out.append(self._event("response.refusal.delta", **at, delta=text))
        return out

    def _call(self, delta: dict[str, Any]) -> list[bytes]:
        """A tool call's head (its id: a new function call item) or a fragment of its arguments."""
        index = delta.get("index", 0)
        out: list[bytes] = []
        if delta.get("id"):
            if self.open is not None:
                out += self._close(self.open)
            if index in self.calls:
                out += self._close(self.calls[index])
            head = {"id": delta["id"], "function": {"name": delta["function"]["name"]},
                    "extra_content": delta.get("extra_content")}  # fmt: skip
            opened, added = self._add(call_item(self.ids.item("fc"), head, "", "in_progress"))
            opened.call = head
            self.calls[index] = opened
            out.append(added)
        call = self.calls[index]
        fragment = (delta.get("function") or {}).get("arguments")
        if isinstance(fragment, str) and fragment:
            call.pieces.append(fragment)
            out.append(self._event("response.function_call_arguments.delta", item_id=call.item["id"],
                                   output_index=call.index, delta=fragment))  # fmt: skip
        return out

    # -- closing ----------------------------------------------------------------------------------

    def _close_part(self, message: _Open) -> list[bytes]:
        if message.part is None:
            return []
        text = "".join(message.pieces)
        at = {"item_id": message.item["id"], "output_index": message.index, "content_index": len(message.parts)}
        if message.part == "output_text":
            part = output_text(text)
            done = self._event("response.output_text.done", **at, text=text, logprobs=[])
        else:
            part = {"type": "refusal", "refusal": text}
            done = self._event("response.refusal.done", **at, refusal=text)
        message.parts.append(part)
        message.part, message.pieces = None, []
        return [done, self._event("response.content_part.done", **at, part=part)]

    def _close(self, item: _Open) -> list[bytes]:
        """The events that finish `item`; its final form becomes the one in the response."""
        out: list[bytes] = []
        text = "".join(item.pieces)
        if item.kind == "reasoning":
            at = {"item_id": item.item["id"], "output_index": item.index, "summary_index": 0}
            if item.part is not None:
                out.append(self._event("response.reasoning_summary_text.done", **at, text=text))
                out.append(self._event("response.reasoning_summary_part.done", **at,
                                       part={"type": "summary_text", "text": text}))  # fmt: skip
            item.item = reasoning_item(item.item["id"], text, item.blocks)
        elif item.kind == "message":
            out += self._close_part(item)
            status, _ = status_of(self.finish)
            item.item = {**item.item, "status": status, "content": item.parts}
        else:
            out.append(self._event("response.function_call_arguments.done", item_id=item.item["id"],
                                   output_index=item.index, arguments=text, name=item.item["name"]))  # fmt: skip
            item.item = call_item(item.item["id"], item.call, text, "completed")
            self.calls = {k: v for k, v in self.calls.items() if v is not item}
        if item is self.open:
            self.open = None
        out.append(self._event("response.output_item.done", output_index=item.index, item=item.item))
        return out

    def _close_all(self) -> list[bytes]:
        """Finish every open item, in output order."""
        out: list[bytes] = []
        for item in sorted([*([self.open] if self.open else []), *self.calls.values()], key=lambda i: i.index):
            out += self._close(item)
        return out
