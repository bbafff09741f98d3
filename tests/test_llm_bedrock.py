"""AWS Bedrock (the Converse API) behind the /v1 front doors, reached by the official `openai`
and `anthropic` SDKs through the gateway's translations.

First the pure translations, field by field (what each client field becomes, what is refused
with a 400 naming it, what `drop_params` drops, how answers and stream events come back) and
the provider's own pieces (the model id in the URL as botocore encodes it, the event stream
decoded by botocore however its bytes arrive); then whole conversations through the gateway to
a fake Bedrock on loopback that verifies every request's SigV4 signature with botocore's
signer, speaks Converse JSON and the binary event stream, and refuses what Bedrock refuses.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import anyio
import httpx2
import openai
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from mcp_gateway.config.models import DeploymentConfig, ModelConfig
from mcp_gateway.llm import sse, translate
from mcp_gateway.llm.errors import LlmError
from mcp_gateway.llm.providers import build_provider
from mcp_gateway.llm.usage import from_bedrock
from mcp_gateway.upstream.client import UpstreamError
from tests.fake_bedrock import (
    REASONING_SIGNATURE,
    SIGNATURE_MISMATCH,
    FakeBedrock,
    aws_error,
    event_frame,
    exception_frame,
)
from tests.fake_llm import THOUGHT, Misbehave
from tests.servers import serve_in_thread
from tests.test_llm import Running
from tests.test_llm import _start as start_gateway
from tests.test_llm_translate import CLAUDE_WEATHER, PNG, WEATHER, _anthropic, _openai, _usage_line

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEJr-session-token-secret-Zm9vYmFy"
REGION = "us-east-1"
# An inference profile's ARN: a `:` and a `/` the URL must carry encoded, as AWS signs them.
ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0"
CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
OPENAI_TO = translate.find("openai", "bedrock")
ANTHROPIC_TO = translate.find("anthropic", "bedrock")
DEPLOYMENT = {
    "provider": "bedrock",
    "region": REGION,
    "aws_access_key_id": KEY_ID,
    "aws_secret_access_key": "secret:aws-secret",
}
STRICT = ModelConfig.model_validate({"name": "m", "deployments": [DEPLOYMENT]})
LENIENT = ModelConfig.model_validate({"name": "m", "drop_params": True, "deployments": [DEPLOYMENT]})
HI = [{"role": "user", "content": "hi"}]
USER_HI = {"role": "user", "content": [{"text": "hi"}]}
SPEC = {
    "toolSpec": {
        "name": "get_weather",
        "description": "The weather in a city",
        "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
    }
}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
USE = {"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}}}


def from_openai(extra: dict[str, Any], model: ModelConfig = STRICT) -> dict[str, Any]:
    assert OPENAI_TO is not None
    return OPENAI_TO.request("chat", {"model": "m", "messages": HI, **extra}, model, CLAUDE, False)


def from_anthropic(extra: dict[str, Any], model: ModelConfig = STRICT, operation: str = "messages") -> dict[str, Any]:
    assert ANTHROPIC_TO is not None
    body = {"model": "m", "max_tokens": 100, "messages": HI, **extra}
    return ANTHROPIC_TO.request(operation, body, model, CLAUDE, False)


# -- OpenAI chat -> Converse: the request -------------------------------------------------------------------

OPENAI_CASES = [
    ("plain", {}, {"messages": [USER_HI]}),
    (
        "system and developer messages are hoisted, in order",
        {"messages": [{"role": "system", "content": "one"}, *HI, {"role": "developer", "content": "two"}]},
        {"messages": [USER_HI], "system": [{"text": "one"}, {"text": "two"}]},
    ),
    (
        "multi-turn; consecutive user messages merge into one turn",
        {"messages": [*HI, {"role": "user", "content": "again"}, {"role": "assistant", "content": "hello"}]},
        {
            "messages": [
                {"role": "user", "content": [{"text": "hi"}, {"text": "again"}]},
                {"role": "assistant", "content": [{"text": "hello"}]},
            ]
        },
    ),
    (
        "an image as base64 bytes, a PDF as a document, a cache point after a marked part",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what?", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "auto"}},
                        {
                            "type": "file",
                            "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"},
                        },
                    ],
                }
            ]
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"text": "what?"},
                        {"cachePoint": {"type": "default", "ttl": "1h"}},
                        {"image": {"format": "png", "source": {"bytes": PNG}}},
                        {"document": {"format": "pdf", "name": "a pdf", "source": {"bytes": "JVBERi0="}}},
                    ],
                }
            ]
        },
    ),
    (
        "tools: the JSON Schema as it is; tool_choice required is any",
        {"tools": [WEATHER], "tool_choice": "required", "parallel_tool_calls": True},
        {"messages": [USER_HI], "toolConfig": {"tools": [SPEC], "toolChoice": {"any": {}}}},
    ),
    (
        "tool_choice one function; strict kept",
        {
            "tools": [{"type": "function", "function": {**WEATHER["function"], "strict": True}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        },
        {
            "messages": [USER_HI],
            "toolConfig": {
                "tools": [{"toolSpec": {**SPEC["toolSpec"], "strict": True}}],
                "toolChoice": {"tool": {"name": "get_weather"}},
            },
        },
    ),
    (
        "tool_choice none sends no tools when none was used yet",
        {"tools": [WEATHER], "tool_choice": "none"},
        {"messages": [USER_HI]},
    ),
    (
        "a tool call and its result: toolUse, then toolResult first in the next user turn",
        {
            "messages": [
                *HI,
                {"role": "assistant", "content": "", "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "user", "content": "and tomorrow?"},
            ],
            "tools": [WEATHER],
            "tool_choice": "auto",
        },
        {
            "messages": [
                USER_HI,
                {"role": "assistant", "content": [USE]},
                {
                    "role": "user",
                    "content": [
                        {"toolResult": {"toolUseId": "call_1", "content": [{"text": "sunny"}]}},
                        {"text": "and tomorrow?"},
                    ],
                },
            ],
            "toolConfig": {"tools": [SPEC], "toolChoice": {"auto": {}}},
        },
    ),
    (
        "signed thinking sent back becomes reasoningContent, ahead of the text",
        {
            "messages": [
                *HI,
                {
                    "role": "assistant",
                    "content": "hello",
                    "reasoning_content": "hmm",
                    "thinking_blocks": [
                        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                        {"type": "redacted_thinking", "data": "cmVkYWN0ZWQ="},
                    ],
                },
                {"role": "user", "content": "go on"},
            ]
        },
        {
            "messages": [
                USER_HI,
                {
                    "role": "assistant",
                    "content": [
                        {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig"}}},
                        {"reasoningContent": {"redactedContent": "cmVkYWN0ZWQ="}},
                        {"text": "hello"},
                    ],
                },
                {"role": "user", "content": [{"text": "go on"}]},
            ]
        },
    ),
    (
        "inferenceConfig: limit, sampling, a stop string",
        {"max_completion_tokens": 50, "temperature": 0.2, "top_p": 0.9, "stop": "END"},
        {
            "messages": [USER_HI],
            "inferenceConfig": {"maxTokens": 50, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]},
        },
    ),
    (
        "json_schema is outputConfig.textFormat, the schema as a string",
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "echo", "schema": {"type": "object"}, "strict": True},
            }
        },
        {
            "messages": [USER_HI],
            "outputConfig": {
                "textFormat": {
                    "type": "json_schema",
                    "structure": {"jsonSchema": {"schema": '{"type": "object"}', "name": "echo"}},
                }
            },
        },
    ),
    (
        "top_k and a reasoning effort go to the model's own fields; a tier by its name",
        {"top_k": 5, "reasoning_effort": "low", "service_tier": "flex", "user": "u-1", "n": 1, "seed": None},
        {
            "messages": [USER_HI],
            "additionalModelRequestFields": {"top_k": 5, "thinking": {"type": "enabled", "budget_tokens": 2048}},
            "serviceTier": {"type": "flex"},
        },
    ),
    (
        "a reasoning budget stays within half of the client's limit",
        {"reasoning_effort": "high", "max_tokens": 4000},
        {
            "messages": [USER_HI],
            "inferenceConfig": {"maxTokens": 4000},
            "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 2000}},
        },
    ),
]


@pytest.mark.parametrize(("extra", "expected"), [c[1:] for c in OPENAI_CASES], ids=[c[0] for c in OPENAI_CASES])
def test_openai_requests_become_converse_requests(extra: dict[str, Any], expected: dict[str, Any]) -> None:
    assert from_openai(extra) == expected


OPENAI_REFUSED = [
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"tools": [WEATHER], "parallel_tool_calls": False}, "parallel_tool_calls"),
    ({"seed": 7}, "seed"),
    ({"logprobs": True}, "logprobs"),
    ({"n": 2}, "n"),
    ({"frequency_penalty": 0.5}, "frequency_penalty"),
    ({"service_tier": "scale"}, "service_tier"),
    ({"audio": {"voice": "x"}}, "audio"),
    ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0]"),
    (
        {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
        "messages[0].content[0]",
    ),
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AA=="}}],
                }
            ]
        },
        "messages[0].content[0].image_url.url",
    ),
    (
        {
            "messages": [
                *HI,
                {"role": "assistant", "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "x"},
            ],
            "tools": [WEATHER],
            "tool_choice": "none",
        },
        "tool_choice",
    ),
    ({"frobnicate": 1}, "frobnicate"),
]


@pytest.mark.parametrize(("extra", "param"), OPENAI_REFUSED, ids=[p for _, p in OPENAI_REFUSED])
def test_what_converse_cannot_carry_is_a_400_naming_it_unless_dropped(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(LlmError) as caught:
        from_openai(extra)
    assert caught.value.status == 400 and caught.value.param == param, caught.value.message
    from_openai(extra, LENIENT)  # dropped, with a debug line


def test_an_image_url_is_refused_naming_it_and_never_fetched() -> None:
    fetched: list[str] = []

    async def record(request: Any) -> Any:
        fetched.append(request.url.path)

    from starlette.applications import Starlette
    from starlette.routing import Route

    with serve_in_thread(Starlette(routes=[Route("/{p:path}", record)])) as url:
        image = {"type": "image_url", "image_url": {"url": f"{url}/cat.png"}}
        with pytest.raises(LlmError) as caught:
            from_openai({"messages": [{"role": "user", "content": [image]}]})
        claude = {"type": "image", "source": {"type": "url", "url": f"{url}/cat.png"}}
        with pytest.raises(LlmError) as refused:
            from_anthropic({"messages": [{"role": "user", "content": [claude]}]})
    assert caught.value.param == "messages[0].content[0].image_url.url"
    assert refused.value.param == "messages[0].content[0].source.url"
    assert "send base64 data" in caught.value.message and fetched == []


# -- Anthropic Messages -> Converse: the request --------------------------------------------------------

ANTHROPIC_CASES = [
    ("plain; max_tokens is inferenceConfig", {}, {"messages": [USER_HI], "inferenceConfig": {"maxTokens": 100}}),
    (
        "system blocks, a cache point after a marked one; stop sequences, sampling",
        {
            "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            "stop_sequences": ["END"],
            "temperature": 0.5,
            "top_p": 0.8,
            "top_k": 4,
            "metadata": {"user_id": "u-1"},
        },
        {
            "messages": [USER_HI],
            "system": [{"text": "be brief"}, {"cachePoint": {"type": "default"}}],
            "inferenceConfig": {"maxTokens": 100, "temperature": 0.5, "topP": 0.8, "stopSequences": ["END"]},
            "additionalModelRequestFields": {"top_k": 4},
        },
    ),
    (
        "a tool loop: tool_use, a failed tool_result first in its turn, an image in it",
        {
            "messages": [
                *HI,
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "here:"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "is_error": True,
                            "content": [
                                {"type": "text", "text": "no network"},
                                {
                                    "type": "image",
                                    "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG},
                                },
                            ],
                        },
                    ],
                },
            ],
            "tools": [{**CLAUDE_WEATHER, "cache_control": {"type": "ephemeral"}}],
            "tool_choice": {"type": "any"},
            "thinking": {"type": "enabled", "budget_tokens": 1024},
        },
        {
            "messages": [
                USER_HI,
                {
                    "role": "assistant",
                    "content": [
                        {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig"}}},
                        {"toolUse": {"toolUseId": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "toolResult": {
                                "toolUseId": "toolu_1",
                                "content": [
                                    {"text": "no network"},
                                    {"image": {"format": "jpeg", "source": {"bytes": PNG}}},
                                ],
                                "status": "error",
                            }
                        },
                        {"text": "here:"},
                    ],
                },
            ],
            "toolConfig": {"tools": [SPEC, {"cachePoint": {"type": "default"}}], "toolChoice": {"any": {}}},
            "inferenceConfig": {"maxTokens": 100},
            "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 1024}},
        },
    ),
    (
        "documents: base64 PDF with a title and context, plain text",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "title": "Q3 report!",
                            "context": "finance",
                            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
                        },
                        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}},
                    ],
                },
            ]
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "document": {
                                "format": "pdf",
                                "name": "Q3 report",
                                "source": {"bytes": "JVBERi0="},
                                "context": "finance",
                            }
                        },
                        {"document": {"format": "txt", "name": "document", "source": {"text": "notes"}}},
                    ],
                }
            ],
            "inferenceConfig": {"maxTokens": 100},
        },
    ),
    (
        "structured output and effort are outputConfig; tool_choice tool",
        {
            "output_config": {"effort": "low", "format": {"type": "json_schema", "schema": {"type": "object"}}},
            "tools": [CLAUDE_WEATHER],
            "tool_choice": {"type": "tool", "name": "get_weather"},
            "service_tier": "standard_only",
        },
        {
            "messages": [USER_HI],
            "toolConfig": {"tools": [SPEC], "toolChoice": {"tool": {"name": "get_weather"}}},
            "inferenceConfig": {"maxTokens": 100},
            "outputConfig": {
                "effort": "low",
                "textFormat": {"type": "json_schema", "structure": {"jsonSchema": {"schema": '{"type": "object"}'}}},
            },
            "serviceTier": {"type": "default"},
        },
    ),
]


@pytest.mark.parametrize(("extra", "expected"), [c[1:] for c in ANTHROPIC_CASES], ids=[c[0] for c in ANTHROPIC_CASES])
def test_anthropic_requests_become_converse_requests(extra: dict[str, Any], expected: dict[str, Any]) -> None:
    assert from_anthropic(extra) == expected


def test_token_counting_sends_what_counts_as_input() -> None:
    body = from_anthropic({"system": "s", "tools": [CLAUDE_WEATHER], "temperature": 1}, operation="count_tokens")
    assert body == {
        "input": {"converse": {"messages": [USER_HI], "system": [{"text": "s"}], "toolConfig": {"tools": [SPEC]}}}
    }


ANTHROPIC_REFUSED = [
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0]"),
    (
        {"tools": [CLAUDE_WEATHER], "tool_choice": {"type": "auto", "disable_parallel_tool_use": True}},
        "tool_choice.disable_parallel_tool_use",
    ),
    ({"cache_control": {"type": "ephemeral"}}, "cache_control"),
    ({"service_tier": "priority"}, "service_tier"),
    ({"container": "c-1"}, "container"),
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "document", "citations": {"enabled": True}, "source": {"type": "text", "data": "x"}}
                    ],
                }
            ]
        },
        "messages[0].content[0].citations",
    ),
    ({"messages": [{"role": "user", "content": [{"type": "search_result"}]}]}, "messages[0].content[0]"),
]


@pytest.mark.parametrize(("extra", "param"), ANTHROPIC_REFUSED, ids=[p for _, p in ANTHROPIC_REFUSED])
def test_what_converse_cannot_carry_from_anthropic_is_a_400_unless_dropped(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(LlmError) as caught:
        from_anthropic(extra)
    assert caught.value.status == 400 and caught.value.param == param, caught.value.message
    from_anthropic(extra, LENIENT)


# -- answers ------------------------------------------------------------------------------------------------

ANSWER = {
    "output": {
        "message": {
            "role": "assistant",
            "content": [
                {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig"}}},
                {"text": "Let me check."},
                {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}},
            ],
        }
    },
    "stopReason": "tool_use",
    "usage": {
        "inputTokens": 9,
        "outputTokens": 5,
        "totalTokens": 20,
        "cacheReadInputTokens": 4,
        "cacheWriteInputTokens": 2,
    },
    "metrics": {"latencyMs": 100},
}


def test_bedrock_usage_counts_cache_reads_and_writes_as_input() -> None:
    usage = from_bedrock(ANSWER["usage"])
    assert usage is not None
    assert (usage.input, usage.output, usage.cache_read, usage.cache_write) == (15, 5, 4, 2)
    assert from_bedrock(None) is None


def test_a_converse_answer_becomes_a_chat_completion() -> None:
    assert OPENAI_TO is not None
    reply = OPENAI_TO.response("chat", ANSWER, "m", {})
    message = reply["choices"][0]["message"]
    assert message["content"] == "Let me check." and message["reasoning_content"] == "hmm"
    assert message["thinking_blocks"] == [{"type": "thinking", "thinking": "hmm", "signature": "sig"}]
    assert message["tool_calls"] == [
        {"id": "tooluse_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    ]
    assert reply["choices"][0]["finish_reason"] == "tool_calls" and reply["model"] == "m"
    assert reply["usage"] == {
        "prompt_tokens": 15,
        "completion_tokens": 5,
        "total_tokens": 20,
        "prompt_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 2},
    }


def test_a_converse_answer_becomes_a_claude_message() -> None:
    assert ANTHROPIC_TO is not None
    reply = ANTHROPIC_TO.response("messages", ANSWER, "m", {})
    assert reply["content"] == [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}},
    ]
    assert reply["stop_reason"] == "tool_use"
    assert reply["usage"] == {
        "input_tokens": 9,
        "output_tokens": 5,
        "cache_read_input_tokens": 4,
        "cache_creation_input_tokens": 2,
    }
    assert ANTHROPIC_TO.response("count_tokens", {"inputTokens": 12}, "m", {}) == {"input_tokens": 12}


@pytest.mark.parametrize(
    ("stop", "finish", "claude"),
    [
        ("end_turn", "stop", "end_turn"),
        ("stop_sequence", "stop", "stop_sequence"),
        ("max_tokens", "length", "max_tokens"),
        ("model_context_window_exceeded", "length", "model_context_window_exceeded"),
        ("tool_use", "tool_calls", "tool_use"),
        ("guardrail_intervened", "content_filter", "refusal"),
        ("content_filtered", "content_filter", "refusal"),
        ("malformed_model_output", "stop", "end_turn"),
    ],
)
def test_stop_reasons(stop: str, finish: str, claude: str) -> None:
    assert OPENAI_TO is not None and ANTHROPIC_TO is not None
    answer = {"output": {"message": {"role": "assistant", "content": [{"text": "x"}]}}, "stopReason": stop}
    assert OPENAI_TO.response("chat", answer, "m", {})["choices"][0]["finish_reason"] == finish
    assert ANTHROPIC_TO.response("messages", answer, "m", {})["stop_reason"] == claude


def test_an_answer_that_cannot_be_read_is_a_502() -> None:
    assert OPENAI_TO is not None and ANTHROPIC_TO is not None
    for translator, operation in ((OPENAI_TO, "chat"), (ANTHROPIC_TO, "messages"), (ANTHROPIC_TO, "count_tokens")):
        with pytest.raises(LlmError) as caught:
            translator.response(operation, {"output": {}}, "m", {})
        assert caught.value.status == 502


# -- streams ------------------------------------------------------------------------------------------------


def _event(kind: str, data: dict[str, Any]) -> sse.Event:
    return sse.Event(b"", kind, json.dumps({kind: data}))


STREAM = [
    _event("messageStart", {"role": "assistant"}),
    _event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hmm"}}}),
    _event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig"}}}),
    _event("contentBlockStop", {"contentBlockIndex": 0}),
    _event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "Let "}}),
    _event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "me."}}),
    _event("contentBlockStop", {"contentBlockIndex": 1}),
    _event(
        "contentBlockStart",
        {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}}},
    ),
    _event("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '{"city": '}}}),
    _event("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '"Paris"}'}}}),
    _event("contentBlockStop", {"contentBlockIndex": 2}),
    _event("messageStop", {"stopReason": "tool_use"}),
    _event("metadata", {"usage": ANSWER["usage"], "metrics": {"latencyMs": 1}}),
]


def _run(translator: Any, events: list[sse.Event], client_body: dict[str, Any]) -> list[tuple[str, Any]]:
    async def go() -> list[tuple[str, Any]]:
        async def native() -> Any:
            for item in events:
                yield item

        async def one(data: bytes) -> Any:
            yield data

        out = []
        operation = "chat" if translator is OPENAI_TO else "messages"
        async for framed in translator.stream(operation, native(), "m", client_body):
            async for event in sse.events(one(framed)):
                out.append((event.name, event.json() if event.data != "[DONE]" else "[DONE]"))
        return out

    return anyio.run(go)


def test_converse_stream_events_become_chat_chunks() -> None:
    chunks = [data for _, data in _run(OPENAI_TO, STREAM, {"stream_options": {"include_usage": True}})]
    assert chunks[-1] == "[DONE]"
    deltas = [c["choices"][0]["delta"] for c in chunks[:-2]]
    assert deltas[:3] == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "hmm"},
        {"thinking_blocks": [{"type": "thinking", "thinking": "hmm", "signature": "sig"}]},
    ]
    assert deltas[3:5] == [{"content": "Let "}, {"content": "me."}]
    assert deltas[5]["tool_calls"] == [
        {"index": 0, "id": "tooluse_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    ]
    assert [d["tool_calls"][0]["function"]["arguments"] for d in deltas[6:8]] == ['{"city": ', '"Paris"}']
    assert chunks[-3]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-2]["choices"] == [] and chunks[-2]["usage"]["prompt_tokens"] == 15
    assert all("usage" not in c for _, c in _run(OPENAI_TO, STREAM, {}) if c != "[DONE]")


def test_converse_stream_events_become_claude_stream_events() -> None:
    events = _run(ANTHROPIC_TO, STREAM, {})
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    blocks = [(d["index"], d["content_block"]["type"]) for n, d in events if n == "content_block_start"]
    assert blocks == [(0, "thinking"), (1, "text"), (2, "tool_use")]
    deltas = [d["delta"] for n, d in events if n == "content_block_delta"]
    assert deltas == [
        {"type": "thinking_delta", "thinking": "hmm"},
        {"type": "signature_delta", "signature": "sig"},
        {"type": "text_delta", "text": "Let "},
        {"type": "text_delta", "text": "me."},
        {"type": "input_json_delta", "partial_json": '{"city": '},
        {"type": "input_json_delta", "partial_json": '"Paris"}'},
    ]
    assert names.count("content_block_stop") == 3
    final = events[-2][1]
    assert final["delta"]["stop_reason"] == "tool_use"
    assert final["usage"] == {
        "input_tokens": 9,
        "output_tokens": 5,
        "cache_read_input_tokens": 4,
        "cache_creation_input_tokens": 2,
    }


def test_a_stream_that_stops_early_or_fails_ends_with_an_error_in_the_clients_format() -> None:
    cut = STREAM[:6]
    assert "ended before its end" in _run(OPENAI_TO, cut, {})[-1][1]["error"]["message"]
    claude = _run(ANTHROPIC_TO, cut, {})
    assert claude[-1][0] == "error" and "ended before its end" in claude[-1][1]["error"]["message"]
    failed = [
        *cut,
        sse.Event(b"", "error", json.dumps({"error": {"code": "throttlingException", "message": "slow down"}})),
    ]
    assert _run(OPENAI_TO, failed, {})[-1][1]["error"]["message"] == "slow down"
    assert _run(ANTHROPIC_TO, failed, {})[-1][1]["error"]["message"] == "slow down"
    # Stopped but without the metadata event: complete, usage unknown.
    assert _run(OPENAI_TO, STREAM[:-1], {})[-1] == ("", "[DONE]")


# -- the provider: URL, signature, event stream ----------------------------------------------------------------


def _provider(**extra: Any) -> Any:
    secrets = {"aws-secret": SECRET, "aws-token": SESSION_TOKEN}
    deployment = DeploymentConfig(**{**DEPLOYMENT, **extra})
    return build_provider(deployment, lambda ref: secrets.get(ref.removeprefix("secret:"), ref), "test")


@pytest.mark.parametrize("model", [ARN, CLAUDE, "amazon.nova-pro-v1:0", "weird id/with space"])
def test_the_model_id_is_encoded_as_botocores_serializer_encodes_it(model: str) -> None:
    from botocore.serialize import create_serializer
    from botocore.session import get_session

    operation = get_session().get_service_model("bedrock-runtime").operation_model("Converse")
    serialized = create_serializer("rest-json").serialize_to_request({"modelId": model, "messages": []}, operation)
    provider = _provider()
    request = provider.request("converse", model, b"{}", False, {})
    assert request.url == f"https://bedrock-runtime.{REGION}.amazonaws.com{serialized['url_path']}"
    assert provider.request("converse", model, b"{}", True, {}).url.endswith("/converse-stream")
    assert provider.request("count_tokens", model, b"{}", False, {}).url.endswith("/count-tokens")
    anyio.run(provider.aclose)


def test_the_event_stream_is_decoded_by_botocore_however_its_bytes_arrive() -> None:
    frames = [
        event_frame("messageStart", {"role": "assistant"}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "héllo"}}),
        exception_frame("throttlingException", "Too many tokens, please wait before trying again."),
    ]
    whole = b"".join(frames)
    provider = _provider()

    async def decode(chunks: list[bytes]) -> list[tuple[str, Any]]:
        async def source() -> Any:
            for chunk in chunks:
                yield chunk

        return [(event.name, event.json()) async for event in sse.flatten(provider.batches(source()))]

    expected = anyio.run(decode, [whole])
    assert expected[0] == (
        "messageStart",
        {"messageStart": {"role": "assistant", "p": expected[0][1]["messageStart"]["p"]}},
    )
    assert expected[1][1]["contentBlockDelta"]["delta"] == {"text": "héllo"}
    assert expected[2] == (
        "error",
        {"error": {"code": "throttlingException", "message": "Too many tokens, please wait before trying again."}},
    )
    assert anyio.run(decode, [whole[i : i + 1] for i in range(len(whole))]) == expected  # a byte at a time
    corrupt = bytearray(whole)
    corrupt[len(frames[0]) + 20] ^= 0xFF  # a flipped bit in the second frame: its checksum fails
    with pytest.raises(UpstreamError) as caught:
        anyio.run(decode, [bytes(corrupt)])
    assert "event stream is corrupt" in str(caught.value)
    anyio.run(provider.aclose)


def test_bedrock_deployments_are_checked() -> None:
    DeploymentConfig(**DEPLOYMENT, aws_session_token="secret:aws-token")
    bad: list[dict[str, Any]] = [
        {"provider": "bedrock", "aws_access_key_id": KEY_ID, "aws_secret_access_key": "secret:s"},
        {"provider": "bedrock", "region": REGION, "aws_secret_access_key": "secret:s"},
        {"provider": "bedrock", "region": REGION, "aws_access_key_id": KEY_ID},
        {**DEPLOYMENT, "api_key": "secret:k"},
        {**DEPLOYMENT, "region": "us-east-1.evil.com"},
        {"provider": "openai", "aws_access_key_id": KEY_ID},
        {"provider": "anthropic", "region": REGION},
    ]
    for fields in bad:
        with pytest.raises(ValueError):
            DeploymentConfig(**fields)
    assert {"aws_secret_access_key", "aws_session_token"} <= set(DeploymentConfig.SECRET_FIELDS)


def test_without_botocore_a_bedrock_deployment_names_the_extra_that_installs_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [m for m in sys.modules if m == "botocore" or m.startswith("botocore.")]:
        monkeypatch.setitem(sys.modules, name, None)  # an import of it fails, as when it is not installed
    monkeypatch.setitem(sys.modules, "botocore", None)
    with pytest.raises(ValueError) as caught:
        _provider()
    assert "pip install 'mcp-gateway[bedrock]'" in str(caught.value)

    from mcp_gateway.llm.probe import probe_deployment

    result = anyio.run(probe_deployment, STRICT, STRICT.deployments[0], lambda ref: SECRET, "test")
    assert result.failure == "setup" and "mcp-gateway[bedrock]" in (result.message or "")


# -- the fake's signature check can fail ------------------------------------------------------------------------


def test_the_fake_refuses_a_wrong_secret_and_a_body_changed_after_signing(bedrock: FakeBedrock) -> None:
    url = f"{bedrock.url}/model/{CLAUDE.replace(':', '%3A')}/converse"
    body = json.dumps({"messages": [USER_HI]}).encode()

    def signed(secret: str, content: bytes) -> httpx2.Response:
        request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
        SigV4Auth(Credentials(KEY_ID, secret, SESSION_TOKEN), "bedrock", REGION).add_auth(request)
        return httpx2.post(url, content=content, headers=dict(request.headers.items()))

    assert signed(SECRET, body).status_code == 200
    for wrong in (signed("not-the-secret", body), signed(SECRET, body.replace(b"hi", b"ho"))):
        assert wrong.status_code == 403 and wrong.json()["message"].startswith(SIGNATURE_MISMATCH)
        assert wrong.headers["x-amzn-errortype"].startswith("InvalidSignatureException")


# -- through the gateway, with the real SDKs -------------------------------------------------------------------


@pytest.fixture(scope="module")
def bedrock() -> Iterator[FakeBedrock]:
    fake = FakeBedrock(KEY_ID, SECRET, SESSION_TOKEN, REGION)
    with serve_in_thread(fake.app()) as url:
        fake.url = url
        yield fake


def _models(url: str) -> list[dict[str, Any]]:
    deployment = {**DEPLOYMENT, "base_url": url, "aws_session_token": "secret:aws-token"}
    return [
        {"name": "claude-bedrock", "deployments": [{**deployment, "model": ARN}]},
        {"name": "nova", "retries": 0, "deployments": [{**deployment, "model": "amazon.nova-pro-v1:0"}]},
        {"name": "bedrock-lenient", "drop_params": True, "deployments": [{**deployment, "model": CLAUDE}]},
    ]


def _start(tmp_path: Path, url: str) -> Iterator[Running]:
    for running in start_gateway(tmp_path, _models(url)):
        # Providers are built at their first call: the AWS key is in the vault by then.
        running.gateway.vault.put("aws-secret", SECRET)
        running.gateway.vault.put("aws-token", SESSION_TOKEN)
        yield running


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, bedrock: FakeBedrock) -> Iterator[Running]:
    yield from _start(tmp_path_factory.mktemp("bedrock"), bedrock.url)


@pytest.fixture
def fresh(tmp_path: Path, bedrock: FakeBedrock) -> Iterator[Running]:
    """A gateway of its own (its vault can be changed without touching the others)."""
    yield from _start(tmp_path, bedrock.url)


ENCODED_ARN = ARN.replace(":", "%3A").replace("/", "%2F")


def test_openai_sdk_text_signed_and_counted(
    running: Running, bedrock: FakeBedrock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_gateway.models")
    verified = bedrock.verified
    reply = _openai(running).chat.completions.create(
        model="claude-bedrock",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
    )
    assert reply.choices[0].message.content == "echo: hello" and reply.model == "claude-bedrock"
    assert reply.choices[0].finish_reason == "stop"
    seen = bedrock.seen[-1]
    # The ARN travels as one encoded path segment, and the signature over it checked out.
    assert seen.path == f"/model/{ENCODED_ARN}/converse" and bedrock.verified == verified + 1
    assert (
        seen.headers["x-amz-security-token"] == SESSION_TOKEN
        and "x-amz-security-token" in seen.headers["authorization"]
    )
    assert seen.body == {
        "messages": [{"role": "user", "content": [{"text": "hello"}]}],
        "system": [{"text": "be brief"}],
    }
    assert running.key not in json.dumps(seen.headers) + json.dumps(seen.body)
    usage = reply.usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (15, 5, 20)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 4
    assert getattr(usage.prompt_tokens_details, "cache_write_tokens", None) == 2
    line = _usage_line(caplog)
    assert "model=claude-bedrock" in line and "in=15 out=5 cache_read=4 cache_write=2 reasoning=0" in line
    assert "estimated" not in line


def test_openai_sdk_stream_with_usage_from_the_metadata_event(
    running: Running, bedrock: FakeBedrock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_gateway.models")
    client = _openai(running)
    messages = [{"role": "user", "content": "one two three"}]
    chunks = list(
        client.chat.completions.create(
            model="claude-bedrock", messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    assert bedrock.seen[-1].path == f"/model/{ENCODED_ARN}/converse-stream"
    assert bedrock.seen[-1].headers["accept"] == "application/vnd.amazon.eventstream"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: one two three"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (15, 5)
    line = _usage_line(caplog)
    assert "in=15 out=5 cache_read=4 cache_write=2" in line and "stream=True" in line and "estimated" not in line
    plain = list(client.chat.completions.create(model="claude-bedrock", messages=messages, stream=True))
    assert all(c.choices for c in plain)


def test_openai_sdk_tool_conversation_with_an_image(running: Running, bedrock: FakeBedrock) -> None:
    client = _openai(running)
    messages: list[Any] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is the weather here?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            ],
        }
    ]
    first = client.chat.completions.create(model="claude-bedrock", messages=messages, tools=[WEATHER])  # type: ignore[list-item]
    sent = bedrock.seen[-1].body
    assert sent["toolConfig"] == {"tools": [SPEC]}
    assert sent["messages"][0]["content"][1] == {"image": {"format": "png", "source": {"bytes": PNG}}}
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    messages += [choice.message, {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21°C"}]
    final = client.chat.completions.create(model="claude-bedrock", messages=messages, tools=[WEATHER])  # type: ignore[list-item]
    assert final.choices[0].message.content == "the tool said: sunny, 21°C"
    assert bedrock.seen[-1].body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [{"toolUse": {"toolUseId": call.id, "name": "get_weather", "input": {"city": "Paris"}}}],
        },
        {"role": "user", "content": [{"toolResult": {"toolUseId": call.id, "content": [{"text": "sunny, 21°C"}]}}]},
    ]


def test_openai_sdk_tool_conversation_streamed(running: Running, bedrock: FakeBedrock) -> None:
    client = _openai(running)
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    with client.chat.completions.stream(model="claude-bedrock", messages=messages, tools=[WEATHER]) as stream:  # type: ignore[list-item]
        kinds = {event.type for event in stream}
        first = stream.get_final_completion()
    assert "tool_calls.function.arguments.done" in kinds
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert first.choices[0].finish_reason == "tool_calls" and json.loads(call.function.arguments) == {"city": "Paris"}
    messages += [
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    chunks = list(
        client.chat.completions.create(model="claude-bedrock", messages=messages, tools=[WEATHER], stream=True)
    )  # type: ignore[list-item]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "the tool said: sunny"


def test_anthropic_sdk_tool_conversation_with_a_failed_tool(
    running: Running, bedrock: FakeBedrock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_gateway.models")
    client = _anthropic(running)
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    messages: list[Any] = [{"role": "user", "content": [image, {"type": "text", "text": "What is the weather here?"}]}]
    first = client.messages.create(
        model="claude-bedrock",
        max_tokens=200,
        system="Answer briefly.",
        messages=messages,
        tools=[CLAUDE_WEATHER],  # type: ignore[list-item]
    )
    assert bedrock.seen[-1].body["inferenceConfig"] == {"maxTokens": 200}
    assert first.stop_reason == "tool_use" and first.model == "claude-bedrock"
    (use,) = first.content
    assert use.type == "tool_use" and (use.name, use.input) == ("get_weather", {"city": "Paris"})
    usage = first.usage
    assert (
        usage.input_tokens,
        usage.cache_read_input_tokens,
        usage.cache_creation_input_tokens,
        usage.output_tokens,
    ) == (9, 4, 2, 5)
    messages += [
        {"role": "assistant", "content": first.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "timeout", "is_error": True}],
        },
    ]
    final = client.messages.create(model="claude-bedrock", max_tokens=200, messages=messages, tools=[CLAUDE_WEATHER])  # type: ignore[list-item]
    assert final.stop_reason == "end_turn" and final.content[0].text == "the tool failed: timeout"  # type: ignore[union-attr]
    result = bedrock.seen[-1].body["messages"][-1]["content"][0]["toolResult"]
    assert result == {"toolUseId": use.id, "content": [{"text": "timeout"}], "status": "error"}
    assert "in=15 out=5 cache_read=4 cache_write=2" in _usage_line(caplog)


def test_anthropic_sdk_stream_with_thinking_and_a_tool_loop(running: Running, bedrock: FakeBedrock) -> None:
    client = _anthropic(running)
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    with client.messages.stream(
        model="claude-bedrock",
        max_tokens=4000,
        messages=messages,
        tools=[CLAUDE_WEATHER],  # type: ignore[list-item]
        thinking={"type": "enabled", "budget_tokens": 2048},
    ) as stream:
        kinds = {event.type for event in stream}
        first = stream.get_final_message()
    assert bedrock.seen[-1].body["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 2048}
    }
    assert {"message_start", "thinking", "signature", "input_json", "message_stop"} <= kinds
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    assert (first.content[0].thinking, first.content[0].signature) == (THOUGHT, REASONING_SIGNATURE)  # type: ignore[union-attr]
    assert first.stop_reason == "tool_use" and (first.usage.input_tokens, first.usage.output_tokens) == (9, 5)
    messages += [
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": first.content[1].id, "content": "sunny"}]},  # type: ignore[union-attr]
    ]
    with client.messages.stream(
        model="claude-bedrock", max_tokens=4000, messages=messages, tools=[CLAUDE_WEATHER]
    ) as stream:  # type: ignore[list-item]
        text = "".join(stream.text_stream)
    assert text == "the tool said: sunny"
    # The signed thinking went back with the call it came with.
    assert bedrock.seen[-1].body["messages"][1]["content"][0] == {
        "reasoningContent": {"reasoningText": {"text": THOUGHT, "signature": REASONING_SIGNATURE}}
    }


def test_structured_output_stop_sequences_and_token_counting(running: Running, bedrock: FakeBedrock) -> None:
    from pydantic import BaseModel

    class Echo(BaseModel):
        echo: str

    hello = [{"role": "user", "content": "hello"}]
    parsed = _openai(running).chat.completions.parse(model="claude-bedrock", messages=hello, response_format=Echo)  # type: ignore[arg-type]
    assert parsed.choices[0].message.parsed == Echo(echo="echo: hello")
    form = bedrock.seen[-1].body["outputConfig"]["textFormat"]["structure"]["jsonSchema"]
    assert form["name"] == "Echo" and json.loads(form["schema"])["properties"] == {
        "echo": {"title": "Echo", "type": "string"}
    }
    stopped = _openai(running).chat.completions.create(model="claude-bedrock", messages=hello, stop=["llo"])  # type: ignore[arg-type]
    assert stopped.choices[0].message.content == "echo: he" and stopped.choices[0].finish_reason == "stop"
    cut = _anthropic(running).messages.create(model="claude-bedrock", max_tokens=1, messages=hello)  # type: ignore[arg-type]
    assert cut.stop_reason == "max_tokens" and cut.content[0].text == "echo:"  # type: ignore[union-attr]
    filtered = _openai(running).chat.completions.create(
        model="claude-bedrock", messages=[{"role": "user", "content": "forbidden"}]
    )
    assert filtered.choices[0].finish_reason == "content_filter"
    counted = _anthropic(running).messages.count_tokens(
        model="claude-bedrock",
        system="s",
        messages=[{"role": "user", "content": "count me"}],
        tools=[CLAUDE_WEATHER],  # type: ignore[list-item]
    )
    seen = bedrock.seen[-1]
    assert seen.path == f"/model/{ENCODED_ARN}/count-tokens"
    assert counted.input_tokens == len(json.dumps(seen.body["input"]["converse"])) // 4


def test_throttling_and_unavailable_are_retried(running: Running, bedrock: FakeBedrock) -> None:
    for plan in (
        aws_error(429, "ThrottlingException", "Too many requests, please wait before trying again."),
        aws_error(503, "ServiceUnavailableException", "Bedrock is unable to process your request."),
    ):
        bedrock.script.append(plan)
        before = len(bedrock.seen)
        reply = _openai(running).chat.completions.create(model="claude-bedrock", messages=HI)  # type: ignore[arg-type]
        assert reply.choices[0].message.content == "echo: hi" and len(bedrock.seen) - before == 2
    bedrock.script.append(aws_error(429, "ThrottlingException", "Too many requests, please wait before trying again."))
    with pytest.raises(openai.RateLimitError) as caught:
        _openai(running).chat.completions.create(model="nova", messages=HI)  # type: ignore[arg-type]
    assert caught.value.body["message"] == "Too many requests, please wait before trying again."  # type: ignore[index]
    assert caught.value.body["code"] == "ThrottlingException"  # type: ignore[index]


def test_a_validation_error_reaches_each_client_with_bedrocks_message(running: Running, bedrock: FakeBedrock) -> None:
    message = "Malformed input request: #/temperature: 9.0 is not less or equal to 1.0, please reformat your input."
    bedrock.script.append(aws_error(400, "ValidationException", message))
    with pytest.raises(openai.BadRequestError) as caught:
        _openai(running).chat.completions.create(model="claude-bedrock", messages=HI, temperature=9)  # type: ignore[arg-type]
    assert caught.value.body["message"] == message and caught.value.body["code"] == "ValidationException"  # type: ignore[index]
    bedrock.script.append(aws_error(400, "ValidationException", message))
    with pytest.raises(anthropic.BadRequestError) as refused:
        _anthropic(running).messages.create(model="claude-bedrock", max_tokens=5, messages=HI)  # type: ignore[arg-type]
    assert refused.value.body == {"type": "error", "error": {"type": "invalid_request_error", "message": message}}  # type: ignore[comparison-overlap]
    # What Converse cannot carry is refused before any call; drop_params drops it.
    before = len(bedrock.seen)
    with pytest.raises(openai.BadRequestError) as unsent:
        _openai(running).chat.completions.create(
            model="claude-bedrock", messages=HI, response_format={"type": "json_object"}
        )  # type: ignore[arg-type]
    assert unsent.value.body["param"] == "response_format" and len(bedrock.seen) == before  # type: ignore[index]
    _openai(running).chat.completions.create(
        model="bedrock-lenient", messages=HI, response_format={"type": "json_object"}
    )  # type: ignore[arg-type]
    assert "outputConfig" not in bedrock.seen[-1].body


def test_a_stream_that_breaks_or_fails_ends_with_an_error_in_the_clients_format(
    running: Running, bedrock: FakeBedrock
) -> None:
    long = [{"role": "user", "content": "one two three four five"}]
    bedrock.script.append(Misbehave(break_after=3))
    with pytest.raises(openai.APIError) as caught:
        for _ in _openai(running).chat.completions.create(model="claude-bedrock", messages=long, stream=True):  # type: ignore[arg-type]
            pass
    assert "broke off" in str(caught.value)
    bedrock.script.append(Misbehave(error_event=exception_frame("modelStreamErrorException", "the model broke")))
    with (
        pytest.raises(anthropic.APIStatusError) as failed,
        _anthropic(running).messages.stream(model="claude-bedrock", max_tokens=10, messages=long) as events,  # type: ignore[arg-type]
    ):
        for _ in events:
            pass
    assert "the model broke" in str(failed.value)


def test_keys_never_reach_a_response_or_a_debug_log(
    fresh: Running, bedrock: FakeBedrock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = _openai(fresh)
    client.chat.completions.create(model="claude-bedrock", messages=HI)  # type: ignore[arg-type]
    answers = []
    # A provider that quotes the credentials it got in an error, streamed and not.
    for stream in (False, True):
        bedrock.script.append(aws_error(400, "ValidationException", f"bad token {SESSION_TOKEN} and key {SECRET}"))
        answers.append(
            httpx2.post(
                fresh.v1 + "/chat/completions",
                json={"model": "claude-bedrock", "messages": HI, "stream": stream},
                headers={"Authorization": f"Bearer {fresh.key}"},
            ).text
        )
    # A wrong secret: AWS's 403 quotes the canonical request, the session token in it.
    fresh.gateway.vault.put("aws-secret", "wrong-secret-but-still-a-secret-123")
    anyio.run(fresh.gateway.refresh_credentials)
    for stream in (False, True):
        with pytest.raises(anthropic.PermissionDeniedError) as caught:
            _anthropic(fresh).messages.create(model="claude-bedrock", max_tokens=5, messages=HI, stream=stream)  # type: ignore[arg-type,call-overload]
        answers.append(json.dumps(caught.value.body))
    assert all("[REDACTED]" in a for a in answers) and SIGNATURE_MISMATCH in answers[-1]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for text in (*answers, logged):
        for secret in (SECRET, SESSION_TOKEN, "wrong-secret-but-still-a-secret-123"):
            assert secret not in text
    assert not [r for r in caplog.records if r.name == "botocore.auth" and r.levelno <= logging.DEBUG]


def test_models_test_probes_bedrock_deployments(fresh: Running, bedrock: FakeBedrock) -> None:
    from mcp_gateway.llm.probe import probe_deployment

    model = fresh.gateway.models.find("claude-bedrock")
    assert model is not None
    result = anyio.run(probe_deployment, model, model.deployments[0], fresh.gateway.vault.resolve, "test")
    assert result.ok and result.status == 200, result
    seen = bedrock.seen[-1]
    assert seen.path == f"/model/{ENCODED_ARN}/converse" and seen.body["inferenceConfig"] == {"maxTokens": 1}
    fresh.gateway.vault.put("aws-secret", "wrong-secret-9876543210")
    refused = anyio.run(probe_deployment, model, model.deployments[0], fresh.gateway.vault.resolve, "test")
    assert not refused.ok and refused.status == 403 and "signature" in (refused.message or "")
    assert "wrong-secret-9876543210" not in json.dumps(refused.public())


def test_the_first_event_reaches_the_client_before_the_stream_ends(running: Running, bedrock: FakeBedrock) -> None:
    bedrock.script.append(Misbehave(hang=True))
    started = time.monotonic()
    stream = (
        _openai(running)
        .with_options(timeout=2)
        .chat.completions.create(
            model="claude-bedrock",
            messages=HI,
            stream=True,  # type: ignore[arg-type]
        )
    )
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant" and time.monotonic() - started < 1.5
    stream.close()


def test_the_responses_api_reaches_bedrock_models_through_chat(running: Running) -> None:
    """/v1/responses is carried by the chat translation: Bedrock models get it too, streamed and not."""
    client = _openai(running)
    answer = client.responses.create(model="claude-bedrock", input="hello there")
    assert answer.output_text == "echo: hello there" and answer.status == "completed"
    assert answer.usage is not None and answer.usage.input_tokens > 0
    with client.responses.stream(model="claude-bedrock", input="one two") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text.strip() == "echo: one two" and final.usage is not None
