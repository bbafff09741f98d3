"""The OpenAI Responses API (`/v1/responses`) for models that do not speak it: Claude and Gemini
(through chat and their chat translators), and OpenAI-compatible servers without `/responses`
(`responses_api: false`).

First the conversions, table by table: a Responses request as chat (and as the provider's
format, with refusals naming the field as the client wrote it), a chat completion as a response
object, chat chunks as Responses stream events, each checked against the `openai` SDK's own
types. Then whole conversations with the real `openai` SDK through the gateway to the fake
Anthropic, Gemini and OpenAI-compatible providers on loopback: text, streams read with
`client.responses.stream(...)`, a function-calling round trip, images, JSON schema output,
reasoning, a response cut short, refusals, and the usage each call is metered with.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx2
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import BaseModel, TypeAdapter

from mcp_gateway.config.models import DeploymentConfig, ModelConfig
from mcp_gateway.llm import sse, translate
from mcp_gateway.llm.errors import LlmError
from mcp_gateway.llm.translate.responses_answer import response_object
from mcp_gateway.llm.translate.responses_request import to_chat
from tests.fake_gemini import SIGNATURE, FakeGemini
from tests.fake_llm import THOUGHT, FakeProvider, Misbehave
from tests.servers import serve_in_thread
from tests.test_llm import ANTHROPIC_KEY, OPENAI_KEY, Running, _start, usage_lines
from tests.test_llm_gemini import GEMINI_KEY
from tests.test_llm_translate import PNG

STRICT = ModelConfig.model_validate({"name": "m", "deployments": [{"provider": "anthropic"}]})
LENIENT = ModelConfig.model_validate({"name": "m", "drop_params": True, "deployments": [{"provider": "anthropic"}]})
GEMINI = ModelConfig.model_validate({"name": "m", "deployments": [{"provider": "gemini", "api_key": "secret:k"}]})
TO_ANTHROPIC = translate.find("openai", "anthropic")
TO_GEMINI = translate.find("openai", "gemini")
TO_OPENAI_CHAT = translate.find("openai", "openai")
HI = [{"role": "user", "content": "hi"}]
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}
CHAT_WEATHER = {
    "type": "function",
    "function": {k: v for k, v in WEATHER.items() if k != "type"},
}
EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


def chat_of(extra: dict[str, Any], model: ModelConfig = STRICT, stream: bool = False) -> dict[str, Any]:
    """The chat body for a Responses body (`input` "hi" unless `extra` says otherwise)."""
    body, _ = to_chat({"model": "m", "input": "hi", **extra}, model, "Anthropic Messages", stream)
    return body


def refused(translator: Any, extra: dict[str, Any], model: ModelConfig = STRICT) -> LlmError:
    with pytest.raises(LlmError) as caught:
        translator.request("responses", {"model": "m", "input": "hi", **extra}, model, "x", False)
    return caught.value


# -- the request, as chat ------------------------------------------------------------------------------

CALL = {"type": "function_call", "call_id": "call_7", "name": "get_weather", "arguments": '{"city": "Paris"}'}
CHAT_CALL = {"id": "call_7", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
BLOCKS = [{"type": "thinking", "thinking": "hm", "signature": "sig"}]

REQUESTS = [
    ("a string input", {}, {"messages": HI}),
    (
        "instructions are a system message first",
        {"instructions": "be brief", "input": [{"role": "user", "content": "hi"}]},
        {"messages": [{"role": "system", "content": "be brief"}, *HI]},
    ),
    (
        "message items: text, images by URL and base64, developer role",
        {
            "input": [
                {"role": "developer", "content": [{"type": "input_text", "text": "d"}]},
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "what?"},
                        {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "auto"},
                        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"},
                    ],
                },
            ]
        },
        {
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "d"}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what?"},
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "auto"}},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    ],
                },
            ]
        },
    ),
    (
        "an earlier answer as the SDK sends it back: output_text, id and status",
        {
            "input": [
                *HI,
                {
                    "type": "message",
                    "id": "msg_1",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "hello", "annotations": [], "logprobs": []}],
                },
                {"role": "user", "content": "bye"},
            ]
        },
        {"messages": [*HI, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}]},
    ),
    (
        "a turn: reasoning (its thinking blocks carried), text and calls make one assistant message; "
        "outputs are tool messages, call ids kept",
        {
            "input": [
                *HI,
                {
                    "type": "reasoning",
                    "id": "rs_1",
                    "summary": [{"type": "summary_text", "text": "hm"}],
                    "encrypted_content": json.dumps({"thinking_blocks": BLOCKS}),
                },
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "checking"}]},
                {**CALL, "id": "fc_1", "status": "completed"},
                {**CALL, "call_id": "call_8", "extra_content": {"google": {"thought_signature": "s"}}},
                {"type": "function_call_output", "call_id": "call_7", "output": "sunny"},
                {
                    "type": "function_call_output",
                    "call_id": "call_8",
                    "output": [{"type": "input_text", "text": "rainy"}],
                },
            ]
        },
        {
            "messages": [
                *HI,
                {
                    "role": "assistant",
                    "content": "checking",
                    "thinking_blocks": BLOCKS,
                    "tool_calls": [
                        CHAT_CALL,
                        {**CHAT_CALL, "id": "call_8", "extra_content": {"google": {"thought_signature": "s"}}},
                    ],
                },
                {"role": "tool", "tool_call_id": "call_7", "content": "sunny"},
                {"role": "tool", "tool_call_id": "call_8", "content": [{"type": "text", "text": "rainy"}]},
            ]
        },
    ),
    (
        "calls without text; reasoning no other provider can read is left to the provider",
        {"input": [*HI, {"type": "reasoning", "id": "rs", "summary": [], "encrypted_content": "gAAAA..."}, CALL]},
        {"messages": [*HI, {"role": "assistant", "content": None, "tool_calls": [CHAT_CALL]}]},
    ),
    (
        "two assistant messages stay two",
        {"input": [*HI, {"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]},
        {"messages": [*HI, {"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]},
    ),
    (
        "function tools, tool_choice, parallel_tool_calls",
        {"tools": [WEATHER], "tool_choice": {"type": "function", "name": "get_weather"}, "parallel_tool_calls": False},
        {
            "tools": [CHAT_WEATHER],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": False,
        },
    ),
    (
        "allowed_tools",
        {
            "tools": [WEATHER],
            "tool_choice": {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "f"}]},
        },
        {
            "tools": [CHAT_WEATHER],
            "tool_choice": {
                "type": "allowed_tools",
                "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "f"}}]},
            },
        },
    ),
    (
        "limits and sampling",
        {"max_output_tokens": 300, "temperature": 0.2, "top_p": 0.9, "user": "u-1", "safety_identifier": "s"},
        {"max_completion_tokens": 300, "temperature": 0.2, "top_p": 0.9, "user": "u-1", "safety_identifier": "s"},
    ),
    (
        "text.format json_schema and verbosity",
        {
            "text": {
                "format": {"type": "json_schema", "name": "e", "schema": {"type": "object"}, "strict": True},
                "verbosity": "low",
            }
        },
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "e", "schema": {"type": "object"}, "strict": True},
            },
            "verbosity": "low",
        },
    ),
    (
        "text.format json_object",
        {"text": {"format": {"type": "json_object"}}},
        {"response_format": {"type": "json_object"}},
    ),
    ("text.format text", {"text": {"format": {"type": "text"}}}, {}),
    (
        "reasoning effort; the summary wanted changes nothing",
        {"reasoning": {"effort": "low", "summary": "auto"}},
        {"reasoning_effort": "low"},
    ),
    (
        "what changes nothing or is kept with the answer: metadata, store false, truncation disabled, "
        "include reasoning.encrypted_content, background false, max_tool_calls",
        {
            "metadata": {"k": "v"},
            "store": False,
            "truncation": "disabled",
            "include": ["reasoning.encrypted_content"],
            "background": False,
            "max_tool_calls": 3,
            "stream_options": {"include_obfuscation": False},
        },
        {},
    ),
]


@pytest.mark.parametrize(("extra", "changes"), [c[1:] for c in REQUESTS], ids=[c[0] for c in REQUESTS])
def test_responses_requests_become_chat_requests(extra: dict[str, Any], changes: dict[str, Any]) -> None:
    assert chat_of(extra) == {"model": "m", "messages": HI, **changes}


def test_a_stream_asks_for_the_usage_chunk() -> None:
    assert chat_of({"stream": True}, stream=True) == {
        "model": "m",
        "messages": HI,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_through_the_chat_translators_to_claude_and_gemini() -> None:
    assert TO_ANTHROPIC is not None and TO_GEMINI is not None
    body = {
        "model": "m",
        "instructions": "be brief",
        "input": [
            *HI,
            {**CALL, "call_id": "toolu_1"},
            {"type": "function_call_output", "call_id": "toolu_1", "output": "sunny"},
        ],
        "tools": [WEATHER],
        "max_output_tokens": 100,
    }
    assert TO_ANTHROPIC.operation("responses") == "messages" and TO_GEMINI.operation("responses") == "generate"
    assert TO_ANTHROPIC.request("responses", body, STRICT, "claude-x", False) == {
        "model": "claude-x",
        "system": "be brief",
        "messages": [
            *HI,
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
        ],
        "max_tokens": 100,
        "tools": [
            {
                "name": "get_weather",
                "description": "The weather in a city",
                "strict": True,
                "input_schema": WEATHER["parameters"],
            }
        ],
    }
    sent = TO_GEMINI.request("responses", body, GEMINI, "gemini-2.5-flash", False)
    assert sent["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert sent["contents"][1:] == [
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}}]},
    ]
    assert sent["generationConfig"] == {"maxOutputTokens": 100}
    # Chat and its other operations are the chat translator's, unchanged.
    assert TO_ANTHROPIC.operation("chat") == "messages" and TO_GEMINI.operation("embeddings") == "batch_embed"


# -- what is refused, named as the client wrote it ----------------------------------------------------------

IMAGE = {"type": "input_image", "image_url": "https://example.com/a.png"}
REFUSED = [
    # (extra, param, translator) -- OpenAI's built-in tools and what needs OpenAI's side
    ({"tools": [WEATHER, {"type": "web_search"}]}, "tools[1]", "anthropic"),
    ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[0]", "gemini"),
    ({"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}, "tools[0]", "anthropic"),
    ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice", "anthropic"),
    ({"input": [{"type": "web_search_call", "id": "ws_1", "status": "completed"}]}, "input[0]", "anthropic"),
    ({"store": True}, "store", "anthropic"),
    ({"background": True}, "background", "gemini"),
    ({"truncation": "auto"}, "truncation", "anthropic"),
    ({"include": ["reasoning.encrypted_content", "message.output_text.logprobs"]}, "include[1]", "anthropic"),
    (
        {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]},
        "input[0].content[0].file_id",
        "anthropic",
    ),
    (
        {"input": [{"role": "user", "content": [{"type": "input_file", "file_url": "https://x/a.pdf"}]}]},
        "input[0].content[0].file_url",
        "gemini",
    ),
    ({"context_management": [{"type": "compaction"}]}, "context_management", "anthropic"),
    # ... and what the provider's chat translator refuses, renamed back
    (
        {"input": [{"role": "user", "content": [{**IMAGE, "detail": "high"}]}]},
        "input[0].content[0].detail",
        "anthropic",
    ),
    ({"input": [{"role": "user", "content": [IMAGE]}]}, "input[0].content[0].image_url", "gemini"),
    (
        {
            "input": [
                {"role": "user", "content": [{"type": "input_file", "file_data": "data:application/pdf;base64,AA"}]}
            ]
        },
        "input[0].content[0]",
        "anthropic",
    ),
    (
        {"input": [*HI, {**CALL, "call_id": "c"}, {"type": "function_call_output", "call_id": "c", "output": [IMAGE]}]},
        "input[2].output[0]",
        "anthropic",
    ),
    ({"text": {"verbosity": "high"}}, "text.verbosity", "anthropic"),
    ({"max_output_tokens": 1500, "reasoning": {"effort": "low"}}, "reasoning.effort", "anthropic"),
    ({"tools": [WEATHER], "parallel_tool_calls": False}, "parallel_tool_calls", "gemini"),
    ({"top_logprobs": 3}, "top_logprobs", "anthropic"),
    ({"prompt_cache_key": "k"}, "prompt_cache_key", "gemini"),
    ({"tools": [WEATHER], "text": {"format": {"type": "json_object"}}}, "text.format", "anthropic"),
]


def _translator(name: str) -> Any:
    return TO_ANTHROPIC if name == "anthropic" else TO_GEMINI


def _config(name: str, drop: bool) -> ModelConfig:
    deployment = {"provider": name, "api_key": "secret:k"}
    return ModelConfig.model_validate({"name": "m", "drop_params": drop, "deployments": [deployment]})


@pytest.mark.parametrize(("extra", "param", "provider"), REFUSED, ids=[r[1] for r in REFUSED])
def test_what_cannot_be_translated_is_a_400_naming_the_clients_field_unless_dropped(
    extra: dict[str, Any], param: str, provider: str
) -> None:
    error = refused(_translator(provider), extra, _config(provider, drop=False))
    assert error.status == 400 and error.param == param, error.message
    assert f"`{param}`" in error.message  # the message names it as the client wrote it, too
    # With drop_params, the request goes through without it.
    _translator(provider).request(
        "responses", {"model": "m", "input": "hi", **extra}, _config(provider, True), "x", False
    )


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
    ],
)
def test_what_needs_openais_stored_state_is_refused_even_with_drop_params(extra: dict[str, Any], param: str) -> None:
    for model in (STRICT, LENIENT):
        error = refused(TO_ANTHROPIC, extra, model)
        assert error.status == 400 and error.param == param
        assert "send the" in error.message


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"input": None}, "input"),
        ({"input": 7}, "input"),
        ({"input": [{"content": "no role, no type"}]}, "input[0].type"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"input": [{"role": "user", "content": [{"text": "no type"}]}]}, "input[0].content[0].type"),
        ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id"),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
        ({"input": [*HI, {**CALL, "arguments": "[1]"}]}, "input[1].arguments"),
        ({"instructions": ["x"]}, "instructions"),
        ({"text": {"format": {"type": "xml"}}}, "text.format.type"),
        ({"text": {"format": {"type": "json_schema", "schema": "no"}}}, "text.format.schema"),
        ({"tool_choice": {"type": "allowed_tools", "mode": "maybe", "tools": []}}, "tool_choice.mode"),
        ({"tool_choice": 3}, "tool_choice"),
        ({"max_output_tokens": "many"}, "max_output_tokens"),
        ({"reasoning": {"summary": "long"}}, "reasoning.summary"),
        ({"metadata": {"k": 1}}, "metadata.k"),
    ],
)
def test_a_malformed_request_is_a_400_naming_the_field_even_with_drop_params(extra: dict[str, Any], param: str) -> None:
    error = refused(TO_ANTHROPIC, extra, LENIENT)
    assert error.status == 400 and error.param == param, error.message


# -- the answer -----------------------------------------------------------------------------------------


def _completion(message: dict[str, Any], finish: str = "stop", usage: dict[str, Any] | None = None) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "x",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
        "usage": usage,
    }


CHAT_USAGE = {
    "prompt_tokens": 18,
    "completion_tokens": 6,
    "total_tokens": 24,
    "prompt_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 2},
    "completion_tokens_details": {"reasoning_tokens": 3},
}


def test_a_chat_completion_becomes_a_response() -> None:
    message = {
        "content": "Let me check.",
        "reasoning_content": THOUGHT,
        "thinking_blocks": BLOCKS,
        "tool_calls": [{**CHAT_CALL, "extra_content": {"google": {"thought_signature": "s"}}}],
    }
    body = {"model": "asked", "input": "hi", "instructions": "be brief", "tools": [WEATHER], "metadata": {"k": "v"}}
    answer = response_object(_completion(message, "tool_calls", CHAT_USAGE), "asked", body)
    Response.model_validate(answer)  # the SDK's own type, strictly
    assert answer["id"].startswith("resp_") and answer["object"] == "response" and answer["model"] == "asked"
    assert answer["status"] == "completed" and answer["incomplete_details"] is None
    assert (answer["instructions"], answer["metadata"], answer["store"]) == ("be brief", {"k": "v"}, False)
    assert answer["tools"] == [WEATHER]
    reasoning, text, call = answer["output"]
    assert reasoning["type"] == "reasoning" and reasoning["summary"] == [{"type": "summary_text", "text": THOUGHT}]
    assert json.loads(reasoning["encrypted_content"]) == {"thinking_blocks": BLOCKS}
    assert text["type"] == "message" and text["status"] == "completed" and text["role"] == "assistant"
    assert text["content"] == [{"type": "output_text", "text": "Let me check.", "annotations": [], "logprobs": []}]
    assert {k: call[k] for k in ("type", "call_id", "name", "arguments", "status")} == {
        "type": "function_call",
        "call_id": "call_7",
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
        "status": "completed",
    }
    assert call["extra_content"] == {"google": {"thought_signature": "s"}}
    assert len({reasoning["id"], text["id"], call["id"]}) == 3
    assert answer["usage"] == {
        "input_tokens": 18,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 2},
        "output_tokens": 6,
        "output_tokens_details": {"reasoning_tokens": 3},
        "total_tokens": 24,
    }


@pytest.mark.parametrize(
    ("finish", "status", "reason"),
    [
        ("stop", "completed", None),
        ("tool_calls", "completed", None),
        ("length", "incomplete", "max_output_tokens"),
        ("content_filter", "incomplete", "content_filter"),
    ],
)
def test_finish_reasons_become_statuses(finish: str, status: str, reason: str | None) -> None:
    answer = response_object(_completion({"content": "x"}, finish), "asked", {})
    assert answer["status"] == status and answer["output"][0]["status"] == status
    assert answer["incomplete_details"] == (None if reason is None else {"reason": reason})
    Response.model_validate(answer)


def test_a_refusal_and_vllm_reasoning_come_through() -> None:
    answer = response_object(_completion({"content": None, "refusal": "no", "reasoning": "hm"}), "asked", {})
    assert [item["type"] for item in answer["output"]] == ["reasoning", "message"]
    assert answer["output"][0]["summary"][0]["text"] == "hm"
    assert answer["output"][1]["content"] == [{"type": "refusal", "refusal": "no"}]
    assert answer["usage"] is None and "encrypted_content" not in answer["output"][0]


def test_a_provider_answer_that_cannot_be_read_is_a_502() -> None:
    assert TO_OPENAI_CHAT is not None
    with pytest.raises(LlmError) as caught:
        TO_OPENAI_CHAT.response("responses", {"choices": []}, "asked", {})
    assert caught.value.status == 502


# -- the stream -------------------------------------------------------------------------------------------


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return sse.encode(
        {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "x", "choices": choices, **extra}
    )


def _run(frames: list[bytes], client_body: dict[str, Any]) -> list[tuple[str, Any]]:
    """The Responses events for chat chunks `frames` (through the chat passthrough), as (name, data)."""
    assert TO_OPENAI_CHAT is not None

    async def go() -> list[tuple[str, Any]]:
        async def chunks() -> AsyncIterator[bytes]:
            for frame in frames:
                yield frame

        written = TO_OPENAI_CHAT.stream("responses", sse.events(chunks()), "asked", client_body)
        return [(e.name, e.json() if e.json() is not None else e.data) async for e in sse.events(written)]

    return anyio.run(go)


def _checked(events: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """The events' data, each checked against the SDK's event types, numbered 0, 1, 2..."""
    data = [d for _, d in events]
    for name, event in events:
        assert name == event["type"]
        EVENTS.validate_python(event)
    assert [e["sequence_number"] for e in data] == list(range(len(data)))
    return data


def test_chat_chunks_become_responses_events() -> None:
    frames = [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"reasoning_content": "hm "}),
        _chunk({"reasoning_content": "ok"}),
        _chunk({"thinking_blocks": BLOCKS}),
        _chunk({"content": "Let me "}),
        _chunk({"content": "check."}),
        _chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_7",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        _chunk({}, "tool_calls"),
        _chunk(None, usage=CHAT_USAGE),
        sse.encode("[DONE]"),
    ]
    events = _checked(_run(frames, {"model": "asked", "input": "hi", "tools": [WEATHER]}))
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    created, last = events[0]["response"], events[-1]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["id"] == last["id"]
    assert events[13]["text"] == "Let me check." and events[19]["arguments"] == '{"city": "Paris"}'
    assert [e["output_index"] for e in events if e["type"] == "response.output_item.added"] == [0, 1, 2]
    Response.model_validate(last)
    assert last["status"] == "completed" and last["usage"]["input_tokens"] == 18
    reasoning, message, call = last["output"]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "hm ok"}]
    assert json.loads(reasoning["encrypted_content"]) == {"thinking_blocks": BLOCKS}
    assert message["content"][0]["text"] == "Let me check." and message["status"] == "completed"
    assert (call["call_id"], call["arguments"], call["status"]) == ("call_7", '{"city": "Paris"}', "completed")
    # What each item was when it was done is what the response holds.
    assert [e["item"] for e in events if e["type"] == "response.output_item.done"] == last["output"]


def test_a_stream_cut_short_ends_incomplete() -> None:
    frames = [_chunk({"content": "echo"}), _chunk({}, "length"), sse.encode("[DONE]")]
    events = _checked(_run(frames, {}))
    last = events[-1]
    assert last["type"] == "response.incomplete" and last["response"]["status"] == "incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert last["response"]["output"][0]["status"] == "incomplete" and last["response"]["usage"] is None


def test_parallel_calls_and_a_refusal_stream_as_items_of_their_own() -> None:
    frames = [
        _chunk({"refusal": "I can"}),
        _chunk({"refusal": "not."}),
        _chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "a", "function": {"name": "f", "arguments": "{}"}},
                    {"index": 1, "id": "b", "function": {"name": "g", "arguments": ""}},
                ]
            }
        ),
        _chunk({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
        _chunk({}, "tool_calls"),
        sse.encode("[DONE]"),
    ]
    events = _checked(_run(frames, {}))
    done = [e for e in events if e["type"] == "response.refusal.done"]
    assert done[0]["refusal"] == "I cannot."
    output = events[-1]["response"]["output"]
    assert output[0]["content"] == [{"type": "refusal", "refusal": "I cannot."}]
    assert [(o["call_id"], o["name"], o["arguments"]) for o in output[1:]] == [("a", "f", "{}"), ("b", "g", "{}")]


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([_chunk({"content": "x"})], "ended before its end"),  # no finish: never looks complete
        (
            [_chunk({"content": "x"}), sse.encode({"error": {"message": "overloaded", "type": "api_error"}})],
            "overloaded",
        ),
        ([_chunk({"tool_calls": [{"index": 3, "function": {"arguments": "{"}}]})], "could not be translated"),
    ],
)
def test_a_stream_that_fails_ends_with_an_error_event(frames: list[bytes], message: str) -> None:
    events = _run(frames, {})
    assert message in events[-1][1]["error"]["message"]
    assert all(d.get("type") != "response.completed" for _, d in events[:-1])


# -- through the gateway, with the openai SDK -------------------------------------------------------------


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeProvider, FakeProvider, FakeGemini]]:
    """(an OpenAI-compatible server, Anthropic, Gemini)."""
    compatible, claude, gemini = FakeProvider(OPENAI_KEY), FakeProvider(ANTHROPIC_KEY), FakeGemini(GEMINI_KEY)
    with (
        serve_in_thread(compatible.app()) as one,
        serve_in_thread(claude.app()) as two,
        serve_in_thread(gemini.app()) as three,
    ):
        compatible.url, claude.url, gemini.url = one, two, three
        yield compatible, claude, gemini


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory, fakes: tuple[FakeProvider, FakeProvider, FakeGemini]
) -> Iterator[Running]:
    compatible, claude, gemini = fakes
    anthropic = {"provider": "anthropic", "base_url": claude.url, "api_key": "secret:anthropic-key"}
    ai_studio = {"provider": "gemini", "base_url": gemini.url, "api_key": "secret:gemini-key"}
    models = [
        {"name": "claude-test", "deployments": [{**anthropic, "model": "claude-sonnet-4-5"}]},
        {"name": "claude-lenient", "drop_params": True, "deployments": [{**anthropic, "model": "claude-sonnet-4-5"}]},
        {"name": "gemini-test", "deployments": [{**ai_studio, "model": "gemini-2.5-flash"}]},
        {"name": "gemini-3-test", "deployments": [{**ai_studio, "model": "gemini-3-pro-preview"}]},
        {
            "name": "vllm-test",
            "deployments": [
                {
                    "provider": "openai",
                    "model": "qwen3",
                    "base_url": compatible.url + "/v1",
                    "api_key": "secret:openai-key",
                    "responses_api": False,
                }
            ],
        },
    ]
    for running in _start(tmp_path_factory.mktemp("responses"), models):
        running.gateway.vault.put("gemini-key", GEMINI_KEY)  # read when a Gemini deployment is first used
        yield running


def _client(running: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=running.v1, api_key=running.key, max_retries=0)


def _line(caplog: pytest.LogCaptureFixture, model: str) -> str:
    """The newest usage line of a call to `model`."""
    return [line for line in usage_lines(caplog) if f"model={model} " in line][-1]


def test_text_from_claude_and_gemini(
    running: Running, fakes: tuple[FakeProvider, FakeProvider, FakeGemini], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_gateway.models")
    _, claude, gemini = fakes
    client = _client(running)
    answer = client.responses.create(model="claude-test", instructions="be brief", input="hello")
    assert answer.output_text == "echo: hello" and answer.model == "claude-test" and answer.status == "completed"
    assert claude.seen[-1].path == "/v1/messages"
    assert claude.seen[-1].body == {
        "model": "claude-sonnet-4-5",
        "system": "be brief",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "hello"}],
    }
    usage = answer.usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (18, 6, 24)
    assert (usage.input_tokens_details.cached_tokens, usage.input_tokens_details.cache_write_tokens) == (4, 2)
    # Metered from Anthropic's own answer, exactly.
    line = _line(caplog, "claude-test")
    assert "in=18 out=6 cache_read=4 cache_write=2" in line and "estimated" not in line
    answer = client.responses.create(model="gemini-test", input=[{"role": "user", "content": "hello"}])
    assert answer.output_text == "echo: hello" and answer.model == "gemini-test"
    assert gemini.seen[-1].path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert answer.usage is not None and (answer.usage.input_tokens, answer.usage.output_tokens) == (13, 5)
    assert "in=13 out=5 cache_read=4" in _line(caplog, "gemini-test")


@pytest.mark.parametrize("model", ["claude-test", "gemini-test"])
def test_a_stream_with_the_sdks_stream_helper(running: Running, caplog: pytest.LogCaptureFixture, model: str) -> None:
    caplog.set_level(logging.INFO, logger="mcp_gateway.models")
    with _client(running).responses.stream(model=model, input="one two three") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "echo: one two three "
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.output_text == "echo: one two three " and final.status == "completed" and final.model == model
    expected = (18, 6) if model == "claude-test" else (13, 5)
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens) == expected
    # Metered from the provider's own events (Anthropic's message_delta, Gemini's last running total).
    line = _line(caplog, model)
    assert f"in={expected[0]} out={expected[1]} cache_read=4" in line
    assert "stream=True" in line and "estimated" not in line


@pytest.mark.parametrize("model", ["claude-test", "gemini-3-test"])
@pytest.mark.parametrize("streamed", [False, True])
def test_a_function_calling_round_trip(
    running: Running, fakes: tuple[FakeProvider, FakeProvider, FakeGemini], model: str, streamed: bool
) -> None:
    _, claude, gemini = fakes
    client = _client(running)
    question: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]

    def ask(items: list[Any]) -> Any:
        if not streamed:
            return client.responses.create(model=model, input=items, tools=[WEATHER])  # type: ignore[list-item]
        with client.responses.stream(model=model, input=items, tools=[WEATHER]) as stream:  # type: ignore[list-item]
            kinds = {e.type for e in stream}
            assert "response.function_call_arguments.delta" in kinds or "response.output_text.delta" in kinds
            return stream.get_final_response()

    first = ask(question)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and json.loads(calls[0].arguments) == {"city": "Paris"}
    if model == "claude-test":
        assert calls[0].call_id == "toolu_1" and first.output_text.strip() == "Let me check."
    else:  # Gemini 3 signs its calls; the signature travels with the item
        assert (calls[0].model_extra or {})["extra_content"] == {"google": {"thought_signature": SIGNATURE}}
    final = ask(
        [
            *question,
            *first.output,
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21°C"},
        ]
    )
    assert final.output_text.strip() == "the tool said: sunny, 21°C" and final.status == "completed"
    if model == "claude-test":
        sent = claude.seen[-1].body["messages"]
        assert sent[1]["content"][-1] == {
            "type": "tool_use",
            "id": "toolu_1",
            "name": "get_weather",
            "input": {"city": "Paris"},
        }
        assert sent[2]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny, 21°C"}]
    else:  # the fake, like Gemini 3, refuses a call sent back without its signature
        sent = gemini.seen[-1].body["contents"]
        assert sent[1]["parts"][0]["thoughtSignature"] == SIGNATURE
        assert sent[2]["parts"] == [
            {"functionResponse": {"name": "get_weather", "response": {"output": "sunny, 21°C"}}}
        ]


@pytest.mark.parametrize("model", ["claude-test", "gemini-test"])
def test_images_as_base64(running: Running, model: str) -> None:
    image = {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "auto"}
    answer = _client(running).responses.create(
        model=model, input=[{"role": "user", "content": [{"type": "input_text", "text": "what is it?"}, image]}]
    )
    assert answer.output_text == "echo: what is it? [image]"


def test_json_schema_output(running: Running, fakes: tuple[FakeProvider, FakeProvider, FakeGemini]) -> None:
    _, claude, gemini = fakes

    class Echo(BaseModel):
        echo: str

    client = _client(running)
    parsed = client.responses.parse(model="claude-test", input="hello", text_format=Echo)
    assert parsed.output_parsed == Echo(echo="echo: hello")
    assert claude.seen[-1].body["output_config"]["format"]["schema"]["properties"]["echo"]["type"] == "string"
    with client.responses.stream(model="gemini-test", input="hello", text_format=Echo) as stream:
        final = stream.get_final_response()
    assert final.output_parsed == Echo(echo="echo: hello")
    assert gemini.seen[-1].body["generationConfig"]["responseMimeType"] == "application/json"
    # JSON mode: Claude's forced tool call comes back as the message's text, streamed and not.
    json_mode: Any = {"format": {"type": "json_object"}}
    answer = client.responses.create(model="claude-test", input="hello", text=json_mode)
    assert claude.seen[-1].body["tool_choice"] == {"type": "tool", "name": "json_object_answer"}
    assert json.loads(answer.output_text) == {"city": "Paris"} and [i.type for i in answer.output] == ["message"]
    with client.responses.stream(model="claude-test", input="hello", text=json_mode) as stream:
        final = stream.get_final_response()
    assert json.loads(final.output_text) == {"city": "Paris"} and [i.type for i in final.output] == ["message"]


def test_reasoning_comes_back_and_goes_back(
    running: Running, fakes: tuple[FakeProvider, FakeProvider, FakeGemini]
) -> None:
    _, claude, _ = fakes
    client = _client(running)
    question: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.responses.create(model="claude-test", input=question, tools=[WEATHER], reasoning={"effort": "low"})  # type: ignore[list-item]
    assert claude.seen[-1].body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    reasoning = first.output[0]
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == THOUGHT
    assert first.usage is not None and first.usage.output_tokens_details.reasoning_tokens == 3
    call = first.output[-1]
    assert call.type == "function_call"
    # Sent back as it came, the signed thinking block goes back to Claude ahead of the call.
    client.responses.create(
        model="claude-test",
        input=[*question, *first.output, {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=[WEATHER],  # type: ignore[list-item]
        reasoning={"effort": "low"},
    )
    assert claude.seen[-1].body["messages"][1]["content"][0] == {
        "type": "thinking",
        "thinking": THOUGHT,
        "signature": "sig-1",
    }
    with client.responses.stream(model="claude-test", input="hello", reasoning={"effort": "low"}) as stream:
        thought = "".join(e.delta for e in stream if e.type == "response.reasoning_summary_text.delta")
        final = stream.get_final_response()
    assert thought == THOUGHT and final.output[0].type == "reasoning" and final.output_text == "echo: hello "


def test_a_response_cut_short_is_incomplete(running: Running) -> None:
    client = _client(running)
    answer = client.responses.create(model="claude-test", input="one two three", max_output_tokens=2)
    assert answer.status == "incomplete" and answer.incomplete_details is not None
    assert answer.incomplete_details.reason == "max_output_tokens" and answer.output_text == "echo:"
    with client.responses.stream(model="claude-test", input="one two three", max_output_tokens=2) as stream:
        events = list(stream)
    last = events[-1]
    assert last.type == "response.incomplete" and last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"


def test_refusals_name_the_field_and_call_no_provider(
    running: Running, fakes: tuple[FakeProvider, FakeProvider, FakeGemini]
) -> None:
    _, claude, gemini = fakes
    client = _client(running)
    before = len(claude.seen), len(gemini.seen)
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("claude-test", {"previous_response_id": "resp_1"}, "previous_response_id"),
        ("claude-lenient", {"previous_response_id": "resp_1"}, "previous_response_id"),
        ("claude-test", {"tools": [{"type": "web_search"}]}, "tools[0]"),
        ("gemini-test", {"tools": [WEATHER, {"type": "code_interpreter", "container": {"type": "auto"}}]}, "tools[1]"),
        ("claude-test", {"store": True}, "store"),
        ("gemini-test", {"input": [{"role": "user", "content": [IMAGE]}]}, "input[0].content[0].image_url"),
    ]
    for model, extra, param in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(**{"model": model, "input": "hi", **extra})
        body = caught.value.body
        assert body["param"] == param and body["type"] == "invalid_request_error", body  # type: ignore[index]
        assert f"`{param}`" in body["message"]  # type: ignore[index]
    assert (len(claude.seen), len(gemini.seen)) == before
    # A model with drop_params goes without what cannot be carried (never without stored state).
    answer = client.responses.create(model="claude-lenient", input="hi", tools=[{"type": "web_search"}], store=True)
    assert answer.output_text == "echo: hi" and "tools" not in claude.seen[-1].body


def test_an_openai_compatible_server_without_responses_is_served_through_chat(
    running: Running, fakes: tuple[FakeProvider, FakeProvider, FakeGemini], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_gateway.models")
    compatible, _, _ = fakes
    client = _client(running)
    answer = client.responses.create(
        model="vllm-test", input="hello", instructions="be brief", reasoning={"effort": "low"}
    )
    assert compatible.seen[-1].path == "/v1/chat/completions"
    assert compatible.seen[-1].body == {
        "model": "qwen3",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
        "reasoning_effort": "low",
    }
    assert answer.output_text == "echo: hello" and answer.output[0].type == "reasoning"
    assert answer.usage is not None and answer.usage.output_tokens_details.reasoning_tokens == 2
    assert "in=11 out=7 cache_read=3 cache_write=0 reasoning=2" in _line(caplog, "vllm-test")
    with client.responses.stream(
        model="vllm-test", input=[{"role": "user", "content": "What is the weather?"}], tools=[WEATHER]
    ) as stream:  # type: ignore[list-item]
        final = stream.get_final_response()
    assert compatible.seen[-1].body["stream_options"] == {"include_usage": True}
    assert compatible.seen[-1].body["tools"] == [CHAT_WEATHER]
    call = final.output[-1]
    assert call.type == "function_call" and (call.call_id, call.arguments) == ("call_1", '{"city": "Paris"}')
    line = _line(caplog, "vllm-test")
    assert "in=11 out=7" in line and "stream=True" in line and "estimated" not in line
    # A Responses field chat has no form of is refused before any call.
    seen = len(compatible.seen)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="vllm-test", input="hi", previous_response_id="resp_1")
    assert caught.value.body["param"] == "previous_response_id" and len(compatible.seen) == seen  # type: ignore[index]


def test_the_option_is_for_openai_format_deployments_only() -> None:
    assert DeploymentConfig(provider="azure", base_url="https://x.openai.azure.com", model="d", responses_api=False)
    with pytest.raises(ValueError, match="responses_api is for openai and azure"):
        DeploymentConfig(provider="anthropic", responses_api=False)


def test_a_stream_that_breaks_ends_with_an_error(
    running: Running, fakes: tuple[FakeProvider, FakeProvider, FakeGemini]
) -> None:
    _, claude, _ = fakes
    claude.script.append(Misbehave(break_after=3))
    stream = _client(running).responses.stream(model="claude-test", input="one two three")
    with pytest.raises(openai.APIError) as caught, stream as events:
        list(events)
    assert "broke off" in str(caught.value)


def test_a_provider_key_a_server_reflects_never_reaches_the_client(
    running: Running, fakes: tuple[FakeProvider, FakeProvider, FakeGemini]
) -> None:
    compatible, _, _ = fakes
    auth = {"Authorization": f"Bearer {running.key}"}
    for stream in (False, True):
        compatible.script.append(Misbehave(reflect_key=True))
        body = {"model": "vllm-test", "input": "hi", "stream": stream}
        answer = httpx2.post(running.v1 + "/responses", json=body, headers=auth)
        assert answer.status_code == 200 and "your key is" in answer.text
        assert OPENAI_KEY not in answer.text
