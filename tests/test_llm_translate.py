"""Translation between OpenAI chat completions and Anthropic Messages, both ways.

First the pure translation functions, field by field (tables: what each client field becomes,
what is refused with a 400 naming it, what `drop_params` drops); then whole conversations with
the real `openai` and `anthropic` SDKs through the gateway to fake providers on loopback, tool
calls and their results round-tripping through each translation, streamed and not.
"""

from __future__ import annotations

import copy
import json
import logging
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import anyio
import openai
import pytest

from mcp_gateway.config.models import ModelConfig
from mcp_gateway.llm import sse, translate
from mcp_gateway.llm.errors import LlmError
from tests.fake_llm import THOUGHT, FakeProvider, Misbehave
from tests.servers import serve_in_thread
from tests.test_llm import ANTHROPIC_KEY, OPENAI_KEY, Running, _models, _start

TO_ANTHROPIC = translate.find("openai", "anthropic")
TO_OPENAI = translate.find("anthropic", "openai")
STRICT = ModelConfig.model_validate({"name": "m", "deployments": [{"provider": "anthropic"}]})
LENIENT = ModelConfig.model_validate({"name": "m", "drop_params": True, "deployments": [{"provider": "anthropic"}]})
HI = [{"role": "user", "content": "hi"}]
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
CLAUDE_TOOL = {"name": "get_weather", "input_schema": {"type": "object"}}
PNG = "iVBORw0KGgo="


def to_anthropic(extra: dict[str, Any], model: ModelConfig = STRICT, stream: bool = False) -> dict[str, Any]:
    """The Anthropic body for an OpenAI body (`messages` HI unless `extra` says otherwise)."""
    assert TO_ANTHROPIC is not None
    return TO_ANTHROPIC.request("chat", {"model": "m", "messages": HI, **extra}, model, "claude-x", stream)


def to_openai(extra: dict[str, Any], model: ModelConfig = STRICT, stream: bool = False) -> dict[str, Any]:
    """The OpenAI body for an Anthropic body (`messages` HI, `max_tokens` 100 unless `extra` says otherwise)."""
    assert TO_OPENAI is not None
    body = {"model": "m", "max_tokens": 100, "messages": HI, **extra}
    return TO_OPENAI.request("messages", body, model, "gpt-x", stream)


# -- OpenAI client -> Anthropic provider: the request ----------------------------------------------------

BASE_ANTHROPIC = {"model": "claude-x", "messages": HI, "max_tokens": 4096}

OPENAI_TO_ANTHROPIC = [
    ("plain", {}, {}),
    ("system prompt", {"messages": [{"role": "system", "content": "be brief"}, *HI]}, {"system": "be brief"}),
    (
        "developer and a later system message are hoisted in order",
        {
            "messages": [
                {"role": "developer", "content": "one"},
                *HI,
                {"role": "system", "content": [{"type": "text", "text": "two"}]},
            ]
        },
        {"system": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
    ),
    (
        "system part with cache_control",
        {
            "messages": [
                {"role": "system", "content": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}]},
                *HI,
            ]
        },
        {"system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}]},
    ),
    (
        "multi-turn",
        {"messages": [*HI, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}]},
        {"messages": [*HI, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}]},
    ),
    (
        "images by URL and base64",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what?"},
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "auto"}},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    ],
                }
            ]
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what?"},
                        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    ],
                }
            ]
        },
    ),
    (
        "tools and tool_choice auto",
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "description": "d",
                        "parameters": {"type": "object", "properties": {"a": {"type": "string"}}},
                        "strict": True,
                    },
                }
            ],
            "tool_choice": "auto",
        },
        {
            "tools": [
                {
                    "name": "f",
                    "description": "d",
                    "input_schema": {"type": "object", "properties": {"a": {"type": "string"}}},
                    "strict": True,
                }
            ],
            "tool_choice": {"type": "auto"},
        },
    ),
    (
        "a tool without parameters",
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        {"tools": [{"name": "f", "input_schema": {"type": "object", "properties": {}}}]},
    ),
    (
        "tool_choice none",
        {"tools": [WEATHER_TOOL], "tool_choice": "none"},
        {"tools": [CLAUDE_TOOL], "tool_choice": {"type": "none"}},
    ),
    (
        "tool_choice required",
        {"tools": [WEATHER_TOOL], "tool_choice": "required"},
        {"tools": [CLAUDE_TOOL], "tool_choice": {"type": "any"}},
    ),
    (
        "tool_choice one function",
        {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        {"tools": [CLAUDE_TOOL], "tool_choice": {"type": "tool", "name": "get_weather"}},
    ),
    (
        "parallel_tool_calls false",
        {"tools": [WEATHER_TOOL], "parallel_tool_calls": False},
        {"tools": [CLAUDE_TOOL], "tool_choice": {"type": "auto", "disable_parallel_tool_use": True}},
    ),
    (
        "parallel_tool_calls false with required",
        {"tools": [WEATHER_TOOL], "tool_choice": "required", "parallel_tool_calls": False},
        {"tools": [CLAUDE_TOOL], "tool_choice": {"type": "any", "disable_parallel_tool_use": True}},
    ),
    ("parallel_tool_calls true", {"tools": [WEATHER_TOOL], "parallel_tool_calls": True}, {"tools": [CLAUDE_TOOL]}),
    (
        "tool calls and their results: consecutive results and the next user text in one turn, ids kept",
        {
            "messages": [
                *HI,
                {
                    "role": "assistant",
                    "content": "checking",
                    "tool_calls": [
                        {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
                        {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": ""}},
                    ],
                },
                {"role": "tool", "tool_call_id": "call_a", "content": "one"},
                {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "two"}]},
                {"role": "user", "content": "and?"},
            ]
        },
        {
            "messages": [
                *HI,
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "checking"},
                        {"type": "tool_use", "id": "call_a", "name": "f", "input": {"x": 1}},
                        {"type": "tool_use", "id": "call_b", "name": "g", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "call_a", "content": "one"},
                        {"type": "tool_result", "tool_use_id": "call_b", "content": [{"type": "text", "text": "two"}]},
                        {"type": "text", "text": "and?"},
                    ],
                },
            ]
        },
    ),
    (
        "an answer echoed back as the SDK dumps it, thinking blocks first",
        {
            "messages": [
                *HI,
                {
                    "role": "assistant",
                    "content": "ok",
                    "refusal": None,
                    "annotations": [],
                    "audio": None,
                    "function_call": None,
                    "reasoning_content": "hm",
                    "thinking_blocks": [{"type": "thinking", "thinking": "hm", "signature": "s1"}],
                },
                {"role": "user", "content": "go"},
            ]
        },
        {
            "messages": [
                *HI,
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hm", "signature": "s1"},
                        {"type": "text", "text": "ok"},
                    ],
                },
                {"role": "user", "content": "go"},
            ]
        },
    ),
    ("stop as a string", {"stop": "END"}, {"stop_sequences": ["END"]}),
    ("stop as a list", {"stop": ["a", "b"]}, {"stop_sequences": ["a", "b"]}),
    ("sampling", {"temperature": 0.5, "top_p": 0.9, "top_k": 40}, {"temperature": 0.5, "top_p": 0.9, "top_k": 40}),
    ("max_tokens", {"max_tokens": 77}, {"max_tokens": 77}),
    ("max_completion_tokens wins", {"max_tokens": 77, "max_completion_tokens": 88}, {"max_tokens": 88}),
    (
        "json_schema is structured output",
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "strict": True, "schema": {"type": "object"}},
            }
        },
        {"output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}},
    ),
    (
        "json_object is a forced tool call",
        {"response_format": {"type": "json_object"}},
        {
            "tools": [
                {
                    "name": "json_object_answer",
                    "description": "Give your whole answer as a JSON object.",
                    "input_schema": {"type": "object"},
                }
            ],
            "tool_choice": {"type": "tool", "name": "json_object_answer"},
        },
    ),
    ("response_format text", {"response_format": {"type": "text"}}, {}),
    (
        "reasoning_effort: a budget on top of the default limit",
        {"reasoning_effort": "low"},
        {"thinking": {"type": "enabled", "budget_tokens": 2048}, "max_tokens": 4096 + 2048},
    ),
    (
        "reasoning_effort high",
        {"reasoning_effort": "high"},
        {"thinking": {"type": "enabled", "budget_tokens": 16384}, "max_tokens": 4096 + 16384},
    ),
    (
        "reasoning_effort within the client's limit",
        {"reasoning_effort": "medium", "max_completion_tokens": 6000},
        {"thinking": {"type": "enabled", "budget_tokens": 3000}, "max_tokens": 6000},
    ),
    ("reasoning_effort none", {"reasoning_effort": "none"}, {"thinking": {"type": "disabled"}}),
    (
        "adaptive thinking with an effort",
        {"thinking": {"type": "adaptive"}, "reasoning_effort": "high"},
        {"thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}},
    ),
    (
        "Anthropic thinking passed on",
        {"thinking": {"type": "enabled", "budget_tokens": 2000}},
        {"thinking": {"type": "enabled", "budget_tokens": 2000}, "max_tokens": 4096 + 2000},
    ),
    ("user", {"user": "u-1"}, {"metadata": {"user_id": "u-1"}}),
    ("safety_identifier", {"safety_identifier": "h-1", "user": "u-1"}, {"metadata": {"user_id": "h-1"}}),
    ("service_tier auto", {"service_tier": "auto"}, {"service_tier": "auto"}),
    ("service_tier default", {"service_tier": "default"}, {"service_tier": "standard_only"}),
    (
        "harmless values of fields Anthropic lacks",
        {
            "n": 1,
            "logprobs": False,
            "top_logprobs": 0,
            "logit_bias": {},
            "frequency_penalty": 0,
            "presence_penalty": 0.0,
            "seed": None,
            "store": False,
            "metadata": {},
            "modalities": ["text"],
            "stream_options": {"include_usage": True},
            "parallel_tool_calls": True,
            "audio": None,
        },
        {},
    ),
]


@pytest.mark.parametrize(
    ("extra", "changes"), [c[1:] for c in OPENAI_TO_ANTHROPIC], ids=[c[0] for c in OPENAI_TO_ANTHROPIC]
)
def test_openai_requests_become_anthropic_requests(extra: dict[str, Any], changes: dict[str, Any]) -> None:
    assert to_anthropic(extra) == {**BASE_ANTHROPIC, **changes}


def test_a_stream_is_asked_for() -> None:
    assert to_anthropic({"stream": True}, stream=True) == {**BASE_ANTHROPIC, "stream": True}


# (field(s), the param the 400 names, what remains under drop_params)
OPENAI_REFUSED = [
    ({"n": 2}, "n", {}),
    ({"logprobs": True}, "logprobs", {}),
    ({"top_logprobs": 3}, "top_logprobs", {}),
    ({"logit_bias": {"50256": -100}}, "logit_bias", {}),
    ({"frequency_penalty": 0.5}, "frequency_penalty", {}),
    ({"presence_penalty": 0.5}, "presence_penalty", {}),
    ({"seed": 7}, "seed", {}),
    ({"store": True}, "store", {}),
    ({"metadata": {"team": "a"}}, "metadata", {}),
    ({"modalities": ["text", "audio"]}, "modalities", {}),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio", {}),
    ({"prediction": {"type": "content", "content": "x"}}, "prediction", {}),
    ({"web_search_options": {}}, "web_search_options", {}),
    ({"verbosity": "low"}, "verbosity", {}),
    ({"prompt_cache_key": "k"}, "prompt_cache_key", {}),
    ({"functions": [{"name": "f"}]}, "functions", {}),
    ({"service_tier": "flex"}, "service_tier", {}),
    ({"some_new_field": 1}, "some_new_field", {}),
    ({"stream_options": {"include_usage": True, "chunk_size": 3}}, "stream_options.chunk_size", {}),
    ({"messages": [{"role": "user", "content": "hi", "name": "bob"}]}, "messages[0].name", {}),
    ({"messages": [{"role": "function", "name": "f", "content": "x"}, *HI]}, "messages[0]", {}),
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "hi"},
                        {"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}},
                    ],
                }
            ]
        },
        "messages[0].content[1]",
        {},
    ),
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "hi"},
                        {"type": "image_url", "image_url": {"url": "https://e.com/a.png", "detail": "high"}},
                    ],
                }
            ]
        },
        "messages[0].content[1].image_url.detail",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "hi"},
                        {"type": "image", "source": {"type": "url", "url": "https://e.com/a.png"}},
                    ],
                }
            ]
        },
    ),
    (
        {
            "messages": [
                {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://e.com/a.png"}}]},
                *HI,
            ]
        },
        "messages[0].content[0]",
        {},
    ),
    ({"tools": [{"type": "custom", "custom": {"name": "grammar"}}]}, "tools[0]", {}),
    (
        {
            "tools": [WEATHER_TOOL],
            "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}},
        },
        "tool_choice",
        {"tools": [CLAUDE_TOOL]},
    ),
    (
        {"tools": [WEATHER_TOOL], "response_format": {"type": "json_object"}},
        "response_format",
        {"tools": [CLAUDE_TOOL]},
    ),
    ({"reasoning_effort": "high", "max_completion_tokens": 1500}, "reasoning_effort", {"max_tokens": 1500}),
    (
        {"reasoning_effort": "high", "thinking": {"type": "enabled", "budget_tokens": 2000}},
        "reasoning_effort",
        {"thinking": {"type": "enabled", "budget_tokens": 2000}, "max_tokens": 4096 + 2000},
    ),
]


@pytest.mark.parametrize(("extra", "param", "dropped"), OPENAI_REFUSED, ids=[r[1] for r in OPENAI_REFUSED])
def test_what_anthropic_cannot_carry_is_a_400_naming_it_unless_dropped(
    extra: dict[str, Any], param: str, dropped: dict[str, Any], caplog
) -> None:
    with pytest.raises(LlmError) as caught:
        to_anthropic(extra)
    assert caught.value.status == 400 and caught.value.param == param
    assert f"`{param}` cannot be translated to Anthropic Messages" in caught.value.message
    caplog.set_level(logging.DEBUG, logger="mcp_gateway.models")
    assert to_anthropic(extra, LENIENT) == {**BASE_ANTHROPIC, **dropped}
    assert any(f"dropped {param}" in r.getMessage() for r in caplog.records)


MALFORMED_OPENAI = [
    ({"messages": "hi"}, "messages"),
    ({"messages": ["hi"]}, "messages[0]"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user"}]}, "messages[0].content"),
    (
        {
            "messages": [
                *HI,
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{nope"}}],
                },
            ]
        },
        "messages[1].tool_calls[0].function.arguments",
    ),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    (
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]},
        "messages[0].content[0].image_url.url",
    ),
    ({"max_tokens": "many"}, "max_tokens"),
    ({"reasoning_effort": "extreme"}, "reasoning_effort"),
    ({"response_format": {"type": "yaml"}}, "response_format.type"),
    ({"tool_choice": 3}, "tool_choice"),
]


@pytest.mark.parametrize(("extra", "param"), MALFORMED_OPENAI, ids=[m[1] for m in MALFORMED_OPENAI])
def test_a_malformed_openai_request_is_a_400_even_with_drop_params(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(LlmError) as caught:
        to_anthropic(extra, LENIENT)
    assert caught.value.status == 400 and caught.value.param == param


# -- Anthropic client -> OpenAI provider: the request ----------------------------------------------------

BASE_OPENAI = {"model": "gpt-x", "messages": HI, "max_completion_tokens": 100}

ANTHROPIC_TO_OPENAI = [
    ("plain", {}, {}),
    ("system string", {"system": "be brief"}, {"messages": [{"role": "system", "content": "be brief"}, *HI]}),
    (
        "system blocks, cache marks left to OpenAI's own caching",
        {
            "system": [
                {"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "b"},
            ],
            "cache_control": {"type": "ephemeral"},
        },
        {
            "messages": [
                {"role": "system", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                *HI,
            ]
        },
    ),
    (
        "multi-turn",
        {
            "messages": [
                *HI,
                {"role": "assistant", "content": [{"type": "text", "text": "hello", "citations": None}]},
                {"role": "user", "content": [{"type": "text", "text": "bye"}]},
            ]
        },
        {"messages": [*HI, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}]},
    ),
    (
        "images base64 and URL",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                        {"type": "text", "text": "what?"},
                    ],
                }
            ]
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                        {"type": "text", "text": "what?"},
                    ],
                }
            ]
        },
    ),
    (
        "tools and tool_choice auto",
        {
            "tools": [
                {
                    "name": "f",
                    "description": "d",
                    "input_schema": {"type": "object"},
                    "strict": True,
                    "cache_control": {"type": "ephemeral"},
                }
            ],
            "tool_choice": {"type": "auto"},
        },
        {
            "tools": [
                {
                    "type": "function",
                    "function": {"name": "f", "parameters": {"type": "object"}, "description": "d", "strict": True},
                }
            ],
            "tool_choice": "auto",
        },
    ),
    (
        "tool_choice any, one at a time",
        {"tools": [CLAUDE_TOOL], "tool_choice": {"type": "any", "disable_parallel_tool_use": True}},
        {"tools": [WEATHER_TOOL], "tool_choice": "required", "parallel_tool_calls": False},
    ),
    (
        "tool_choice tool",
        {"tools": [CLAUDE_TOOL], "tool_choice": {"type": "tool", "name": "get_weather"}},
        {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
    ),
    (
        "tool_choice none",
        {"tools": [CLAUDE_TOOL], "tool_choice": {"type": "none"}},
        {"tools": [WEATHER_TOOL], "tool_choice": "none"},
    ),
    (
        "tool use and results: results first as tool messages, ids kept, errors marked, earlier thinking left out",
        {
            "messages": [
                *HI,
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hm", "signature": "s"},
                        {"type": "redacted_thinking", "data": "xx"},
                        {"type": "text", "text": "checking"},
                        {"type": "tool_use", "id": "toolu_a", "name": "f", "input": {"x": 1}, "caller": None},
                        {"type": "tool_use", "id": "toolu_b", "name": "g", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_a", "content": "one"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_b",
                            "is_error": True,
                            "content": [{"type": "text", "text": "boom"}],
                        },
                        {"type": "text", "text": "and?"},
                    ],
                },
            ]
        },
        {
            "messages": [
                *HI,
                {
                    "role": "assistant",
                    "content": "checking",
                    "tool_calls": [
                        {"id": "toolu_a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
                        {"id": "toolu_b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
                    ],
                },
                {"role": "tool", "tool_call_id": "toolu_a", "content": "one"},
                {"role": "tool", "tool_call_id": "toolu_b", "content": "Error: boom"},
                {"role": "user", "content": "and?"},
            ]
        },
    ),
    (
        "an assistant turn of tool calls only has no content",
        {
            "messages": [
                *HI,
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]},
            ]
        },
        {
            "messages": [
                *HI,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                },
                {"role": "tool", "tool_call_id": "t", "content": ""},
            ]
        },
    ),
    ("stop_sequences", {"stop_sequences": ["END"]}, {"stop": ["END"]}),
    ("sampling", {"temperature": 0.2, "top_p": 0.8}, {"temperature": 0.2, "top_p": 0.8}),
    ("metadata.user_id", {"metadata": {"user_id": "u-1"}}, {"user": "u-1"}),
    ("a small thinking budget", {"thinking": {"type": "enabled", "budget_tokens": 1024}}, {"reasoning_effort": "low"}),
    (
        "a middle thinking budget",
        {"thinking": {"type": "enabled", "budget_tokens": 5000}},
        {"reasoning_effort": "medium"},
    ),
    (
        "a large thinking budget",
        {"thinking": {"type": "enabled", "budget_tokens": 20000, "display": "summarized"}},
        {"reasoning_effort": "high"},
    ),
    ("adaptive thinking: the provider's default", {"thinking": {"type": "adaptive"}}, {}),
    ("thinking disabled", {"thinking": {"type": "disabled"}}, {}),
    (
        "effort wins over a budget",
        {"thinking": {"type": "enabled", "budget_tokens": 20000}, "output_config": {"effort": "low"}},
        {"reasoning_effort": "low"},
    ),
    (
        "structured output",
        {"output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}},
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": {"type": "object"}, "strict": True},
            }
        },
    ),
    ("service_tier", {"service_tier": "standard_only"}, {"service_tier": "default"}),
    ("harmless values", {"speed": "standard", "top_k": None, "container": None}, {}),
]


@pytest.mark.parametrize(
    ("extra", "changes"), [c[1:] for c in ANTHROPIC_TO_OPENAI], ids=[c[0] for c in ANTHROPIC_TO_OPENAI]
)
def test_anthropic_requests_become_openai_requests(extra: dict[str, Any], changes: dict[str, Any]) -> None:
    assert to_openai(extra) == {**BASE_OPENAI, **changes}


def test_an_anthropic_stream_asks_the_openai_provider_for_usage() -> None:
    # The gateway's meter reads usage from the provider's own events: it must be asked for.
    assert to_openai({"stream": True}, stream=True) == {
        **BASE_OPENAI,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


ANTHROPIC_REFUSED = [
    ({"top_k": 5}, "top_k", {}),
    ({"container": "c-1"}, "container", {}),
    ({"mcp_servers": [{"type": "url", "url": "https://x", "name": "x"}]}, "mcp_servers", {}),
    ({"speed": "fast"}, "speed", {}),
    ({"inference_geo": "us"}, "inference_geo", {}),
    ({"service_tier": "priority"}, "service_tier", {}),
    ({"a_new_field": True}, "a_new_field", {}),
    ({"metadata": {"user_id": "u", "tenant": "t"}}, "metadata.tenant", {"user": "u"}),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0]", {}),
    ({"tools": [{**CLAUDE_TOOL, "input_examples": [{}]}]}, "tools[0].input_examples", {"tools": [WEATHER_TOOL]}),
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "document", "source": {"type": "text", "data": "x", "media_type": "text/plain"}},
                        {"type": "text", "text": "hi"},
                    ],
                }
            ]
        },
        "messages[0].content[0]",
        {},
    ),
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": {"type": "file", "file_id": "f"}},
                        {"type": "text", "text": "hi"},
                    ],
                }
            ]
        },
        "messages[0].content[0].source",
        {},
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "x": 1}]}]},
        "messages[0].content[0].x",
        {},
    ),
    (
        {
            "messages": [
                *HI,
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t",
                            "content": [
                                {"type": "text", "text": "see"},
                                {"type": "image", "source": {"type": "url", "url": "https://e.com/a.png"}},
                            ],
                        }
                    ],
                },
            ]
        },
        "messages[2].content[0].content[1]",
        {
            "messages": [
                *HI,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                },
                {"role": "tool", "tool_call_id": "t", "content": "see"},
            ]
        },
    ),
    (
        {
            "messages": [
                *HI,
                {
                    "role": "assistant",
                    "content": [{"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}],
                },
            ]
        },
        "messages[1].content[0]",
        {"messages": [*HI, {"role": "assistant", "content": ""}]},
    ),
]


@pytest.mark.parametrize(("extra", "param", "dropped"), ANTHROPIC_REFUSED, ids=[r[1] for r in ANTHROPIC_REFUSED])
def test_what_openai_cannot_carry_is_a_400_naming_it_unless_dropped(
    extra: dict[str, Any], param: str, dropped: dict[str, Any]
) -> None:
    with pytest.raises(LlmError) as caught:
        to_openai(extra)
    assert caught.value.status == 400 and caught.value.param == param
    assert f"`{param}` cannot be translated to OpenAI chat completions" in caught.value.message
    assert to_openai(extra, LENIENT) == {**BASE_OPENAI, **dropped}


MALFORMED_ANTHROPIC = [
    ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"system": [{"type": "image"}]}, "system[0].type"),
    ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
    ({"thinking": {"type": "sometimes"}}, "thinking.type"),
    ({"tool_choice": {"type": "whichever"}}, "tool_choice.type"),
    ({"output_config": {"format": {"type": "xml"}}}, "output_config.format.type"),
    (
        {
            "messages": [
                *HI,
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "x"}]},
            ]
        },
        "messages[1].content[0].input",
    ),
]


@pytest.mark.parametrize(("extra", "param"), MALFORMED_ANTHROPIC, ids=[m[1] for m in MALFORMED_ANTHROPIC])
def test_a_malformed_anthropic_request_is_a_400_even_with_drop_params(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(LlmError) as caught:
        to_openai(extra, LENIENT)
    assert caught.value.status == 400 and caught.value.param == param


def test_counting_tokens_is_not_translated() -> None:
    # An OpenAI-compatible provider has no token counting endpoint: not faked.
    assert TO_OPENAI is not None and TO_ANTHROPIC is not None
    assert TO_OPENAI.operation("count_tokens") is None and TO_OPENAI.operation("messages") == "chat"
    # Responses go through chat (tests/test_llm_responses.py); embeddings have nowhere to go.
    assert TO_ANTHROPIC.operation("embeddings") is None and TO_ANTHROPIC.operation("responses") == "messages"


def _junk(rng: random.Random) -> Any:
    return rng.choice([None, 0, -1, 1.5, True, "", "x", [], [1], {}, {"type": []}, {"type": "text"}, [{"role": []}]])


def _mutants(body: dict[str, Any], seed: int, count: int) -> Iterator[dict[str, Any]]:
    """`body` with one value somewhere replaced by junk, `count` times."""
    rng = random.Random(seed)

    def paths(value: Any, prefix: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        yield prefix
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in items:
            yield from paths(item, (*prefix, key))

    every = list(paths(body, ()))[1:]
    for _ in range(count):
        mutant = copy.deepcopy(body)
        *head, last = rng.choice(every)
        target = mutant
        for key in head:
            target = target[key]
        target[last] = _junk(rng)
        yield mutant


RICH_OPENAI = {
    "model": "m",
    "messages": [
        {"role": "system", "content": [{"type": "text", "text": "s"}]},
        {
            "role": "user",
            "content": [{"type": "text", "text": "q"}, {"type": "image_url", "image_url": {"url": "https://e/a.png"}}],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c", "content": "r"},
    ],
    "tools": [WEATHER_TOOL],
    "tool_choice": {"type": "function", "function": {"name": "f"}},
    "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}},
    "reasoning_effort": "low",
    "stop": ["x"],
}
RICH_ANTHROPIC = {
    "model": "m",
    "max_tokens": 10,
    "system": [{"type": "text", "text": "s"}],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "q"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "x"}},
            ],
        },
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "r"}]}],
        },
    ],
    "tools": [CLAUDE_TOOL],
    "tool_choice": {"type": "tool", "name": "f"},
    "thinking": {"type": "enabled", "budget_tokens": 2000},
    "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
    "metadata": {"user_id": "u"},
}


@pytest.mark.parametrize("model", [STRICT, LENIENT], ids=["strict", "drop_params"])
def test_any_malformed_request_is_a_clear_400_never_a_crash(model: ModelConfig) -> None:
    assert TO_OPENAI is not None and TO_ANTHROPIC is not None
    for translator, operation, rich in ((TO_ANTHROPIC, "chat", RICH_OPENAI), (TO_OPENAI, "messages", RICH_ANTHROPIC)):
        translator.request(operation, rich, model, "x", False)  # the unmutated body translates
        for mutant in _mutants(rich, seed=10, count=400):
            try:
                translator.request(operation, mutant, model, "x", False)
            except LlmError as error:
                assert error.status == 400 and error.message


# -- the answers ---------------------------------------------------------------------------------------------

CLAUDE_ANSWER = {
    "id": "msg_9",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "thinking", "thinking": "hm", "signature": "s1"},
        {"type": "redacted_thinking", "data": "xyz"},
        {"type": "text", "text": "Let me", "citations": None},
        {"type": "text", "text": " check."},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_read_input_tokens": 3,
        "cache_creation_input_tokens": 2,
        "output_tokens_details": {"thinking_tokens": 2},
    },
}


def test_a_claude_answer_becomes_a_chat_completion() -> None:
    assert TO_ANTHROPIC is not None
    answer = TO_ANTHROPIC.response("chat", CLAUDE_ANSWER, "my-claude", {})
    assert isinstance(answer.pop("created"), int)
    assert answer == {
        "id": "msg_9",
        "object": "chat.completion",
        "model": "my-claude",  # as the client asked
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "logprobs": None,
                "message": {
                    "role": "assistant",
                    "content": "Let me check.",
                    "refusal": None,
                    "tool_calls": [
                        {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
                    ],
                    "reasoning_content": "hm",
                    "thinking_blocks": [
                        {"type": "thinking", "thinking": "hm", "signature": "s1"},
                        {"type": "redacted_thinking", "data": "xyz"},
                    ],
                },
            }
        ],
        # Every prompt token in prompt_tokens (Anthropic's input_tokens leave the cache out).
        "usage": {
            "prompt_tokens": 15,
            "completion_tokens": 5,
            "total_tokens": 20,
            "prompt_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 2},
            "completion_tokens_details": {"reasoning_tokens": 2},
        },
        "system_fingerprint": None,
    }


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "length"),
        ("pause_turn", "stop"),
        (None, None),
    ],
)
def test_stop_reasons_become_finish_reasons(stop: str | None, finish: str | None) -> None:
    assert TO_ANTHROPIC is not None
    answer = {**CLAUDE_ANSWER, "content": [{"type": "text", "text": "x"}], "stop_reason": stop}
    assert TO_ANTHROPIC.response("chat", answer, "m", {})["choices"][0]["finish_reason"] == finish


def test_json_mode_is_unwrapped_from_its_tool_call() -> None:
    assert TO_ANTHROPIC is not None
    answer = {
        **CLAUDE_ANSWER,
        "content": [{"type": "tool_use", "id": "t", "name": "json_object_answer", "input": {"city": "Paris"}}],
    }
    client = {"response_format": {"type": "json_object"}}
    choice = TO_ANTHROPIC.response("chat", answer, "m", client)["choices"][0]
    assert choice["message"]["content"] == '{"city": "Paris"}' and "tool_calls" not in choice["message"]
    assert choice["finish_reason"] == "stop"


GPT_ANSWER = {
    "id": "chatcmpl-9",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": "Checking.",
                "reasoning_content": "hm",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
                    {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": ""}},
                ],
            },
        }
    ],
    "usage": {
        "prompt_tokens": 11,
        "completion_tokens": 7,
        "total_tokens": 18,
        "prompt_tokens_details": {"cached_tokens": 3},
        "completion_tokens_details": {"reasoning_tokens": 2},
    },
}


def test_a_chat_completion_becomes_a_claude_message() -> None:
    assert TO_OPENAI is not None
    assert TO_OPENAI.response("messages", GPT_ANSWER, "my-gpt", {}) == {
        "id": "chatcmpl-9",
        "type": "message",
        "role": "assistant",
        "model": "my-gpt",
        "content": [
            {"type": "thinking", "thinking": "hm", "signature": ""},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
            {"type": "tool_use", "id": "call_2", "name": "g", "input": {}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 8,
            "output_tokens": 7,
            "cache_read_input_tokens": 3,
            "cache_creation_input_tokens": 0,
            "output_tokens_details": {"thinking_tokens": 2},
        },
    }


@pytest.mark.parametrize(
    ("finish", "calls", "stop"),
    [
        ("stop", False, "end_turn"),
        ("length", False, "max_tokens"),
        ("content_filter", False, "refusal"),
        ("tool_calls", True, "tool_use"),
        ("stop", True, "tool_use"),
        (None, False, None),
    ],
)
def test_finish_reasons_become_stop_reasons(finish: str | None, calls: bool, stop: str | None) -> None:
    assert TO_OPENAI is not None
    message: dict[str, Any] = {"role": "assistant", "content": "x"}
    if calls:
        message["tool_calls"] = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    answer = {**GPT_ANSWER, "choices": [{"index": 0, "finish_reason": finish, "message": message}]}
    assert TO_OPENAI.response("messages", answer, "m", {})["stop_reason"] == stop


def test_a_refusal_and_vllm_reasoning_come_through() -> None:
    assert TO_OPENAI is not None
    message = {"role": "assistant", "content": None, "refusal": "I can't help with that.", "reasoning": "hm"}
    answer = {**GPT_ANSWER, "choices": [{"index": 0, "finish_reason": "stop", "message": message}]}
    translated = TO_OPENAI.response("messages", answer, "m", {})
    assert translated["stop_reason"] == "refusal"
    assert translated["content"] == [
        {"type": "thinking", "thinking": "hm", "signature": ""},
        {"type": "text", "text": "I can't help with that."},
    ]


@pytest.mark.parametrize(
    ("translator", "answer"),
    [
        (
            "to_openai",
            {
                **GPT_ANSWER,
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "tool_calls",
                        "message": {
                            "role": "assistant",
                            "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1, 2"}}],
                        },
                    }
                ],
            },
        ),
        ("to_openai", {**GPT_ANSWER, "choices": ["nope"]}),
        ("to_anthropic", {**CLAUDE_ANSWER, "content": [{"type": "text"}]}),
        ("to_anthropic", {**CLAUDE_ANSWER, "content": "nope"}),
    ],
)
def test_a_provider_answer_that_cannot_be_read_is_a_502(translator: str, answer: dict[str, Any]) -> None:
    chosen = TO_OPENAI if translator == "to_openai" else TO_ANTHROPIC
    assert chosen is not None
    with pytest.raises(LlmError) as caught:
        chosen.response("messages" if translator == "to_openai" else "chat", answer, "m", {})
    assert caught.value.status == 502


# -- the streams ---------------------------------------------------------------------------------------------


def _frames(*events: tuple[str | None, Any]) -> list[bytes]:
    return [sse.encode(data, name) for name, data in events]


def _run(translator: Any, operation: str, frames: list[bytes], client_body: dict[str, Any]) -> list[tuple[str, Any]]:
    """Run a translator's stream over `frames`; the events it wrote, as (name, JSON or text)."""

    async def go() -> list[tuple[str, Any]]:
        async def chunks() -> AsyncIterator[bytes]:
            for frame in frames:
                yield frame

        async def written() -> AsyncIterator[bytes]:
            async for framed in translator.stream(operation, sse.events(chunks()), "asked", client_body):
                yield framed

        return [(e.name, e.json() if e.json() is not None else e.data) async for e in sse.events(written())]

    return anyio.run(go)


def _claude_events(*blocks: list[tuple[str, Any]], stop: str = "end_turn", end: bool = True) -> list[bytes]:
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_7",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "c",
            "stop_reason": None,
            "usage": {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 3},
        },
    }
    events: list[tuple[str | None, Any]] = [("message_start", start)]
    for block in blocks:
        events += [(data["type"], data) for _, data in block]
    if end:
        events += [
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": 9},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
    return _frames(*events)


def _block(index: int, start: dict[str, Any], *deltas: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("", {"type": "content_block_start", "index": index, "content_block": start}),
        *(("", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas),
        ("", {"type": "content_block_stop", "index": index}),
    ]


THINKING_BLOCK = _block(
    0,
    {"type": "thinking", "thinking": "", "signature": ""},
    {"type": "thinking_delta", "thinking": "hm"},
    {"type": "signature_delta", "signature": "s1"},
)
TEXT_BLOCK = _block(1, {"type": "text", "text": ""}, {"type": "text_delta", "text": "Hi"})
TOOL_BLOCK = _block(
    2,
    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
    {"type": "input_json_delta", "partial_json": '{"a": '},
    {"type": "input_json_delta", "partial_json": ""},
    {"type": "input_json_delta", "partial_json": "1}"},
)


def _deltas(events: list[tuple[str, Any]]) -> list[tuple[dict[str, Any], str | None]]:
    return [
        (e["choices"][0]["delta"], e["choices"][0]["finish_reason"])
        for _, e in events
        if isinstance(e, dict) and e.get("choices")
    ]


def test_claude_stream_events_become_chat_chunks() -> None:
    frames = _claude_events(THINKING_BLOCK, TEXT_BLOCK, TOOL_BLOCK, stop="tool_use")
    frames.insert(2, sse.encode({"type": "ping"}, "ping"))
    events = _run(TO_ANTHROPIC, "chat", frames, {"stream_options": {"include_usage": True}})
    assert _deltas(events) == [
        ({"role": "assistant", "content": ""}, None),
        ({"reasoning_content": "hm"}, None),
        ({"thinking_blocks": [{"type": "thinking", "thinking": "hm", "signature": "s1"}]}, None),
        ({"content": "Hi"}, None),
        (
            {
                "tool_calls": [
                    {"index": 0, "id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": ""}}
                ]
            },
            None,
        ),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"a": '}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}, None),
        ({}, "tool_calls"),
    ]
    chunks = [e for _, e in events if isinstance(e, dict)]
    assert all(c["model"] == "asked" and c["id"] == "msg_7" and c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(c["usage"] is None for c in chunks[:-1])  # as OpenAI streams when usage is asked for
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 13
    assert chunks[-1]["usage"]["completion_tokens"] == 9 and events[-1] == ("", "[DONE]")


def test_without_include_usage_no_usage_chunk() -> None:
    events = _run(TO_ANTHROPIC, "chat", _claude_events(TEXT_BLOCK), {})
    chunks = [e for _, e in events if isinstance(e, dict)]
    assert all("usage" not in c and c["choices"] for c in chunks) and events[-1] == ("", "[DONE]")
    assert _deltas(events)[-1] == ({}, "stop")


def test_a_claude_stream_in_json_mode_streams_content() -> None:
    block = _block(
        0,
        {"type": "tool_use", "id": "t", "name": "json_object_answer", "input": {}},
        {"type": "input_json_delta", "partial_json": '{"a": 1}'},
    )
    events = _run(
        TO_ANTHROPIC, "chat", _claude_events(block, stop="tool_use"), {"response_format": {"type": "json_object"}}
    )
    assert _deltas(events)[1:] == [({"content": '{"a": 1}'}, None), ({}, "stop")]


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (_claude_events(TEXT_BLOCK, end=False), "ended before its end"),
        (
            _claude_events(TEXT_BLOCK, end=False)
            + _frames(("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})),
            "Overloaded",
        ),
        (_claude_events(_block(0, {"type": "text", "text": ""}, {"type": "text_delta"})), "could not be translated"),
    ],
    ids=["cut short", "error event", "malformed"],
)
def test_a_claude_stream_that_fails_ends_with_an_openai_error(frames: list[bytes], message: str) -> None:
    events = _run(TO_ANTHROPIC, "chat", frames, {})
    name, last = events[-1]
    assert name == "" and message in last["error"]["message"] and last["error"]["type"] == "api_error"
    assert ("", "[DONE]") not in events


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> tuple[None, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return None, {"id": "chatcmpl-7", "object": "chat.completion.chunk", "choices": choices, **extra}


GPT_CHUNKS = [
    _chunk({"role": "assistant", "content": ""}),
    _chunk({"reasoning_content": "h"}),
    _chunk({"reasoning_content": "m"}),
    _chunk({"content": "Hi"}),
    _chunk(
        {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]}
    ),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a": 1}'}}]}),
    _chunk(
        {"tool_calls": [{"index": 1, "id": "call_2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]}
    ),
    _chunk({}, "tool_calls"),
    _chunk(None, usage={"prompt_tokens": 11, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 3}}),
]


def test_chat_chunks_become_claude_stream_events() -> None:
    events = _run(TO_OPENAI, "messages", [*_frames(*GPT_CHUNKS), b"data: [DONE]\n\n"], {})
    assert all(name == data["type"] for name, data in events)  # each event named, as Anthropic streams
    assert [data for _, data in events[1:]] == [
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        },
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "h"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "m"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 1},
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "call_1", "name": "f", "input": {}},
        },
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"a": 1}'}},
        {"type": "content_block_stop", "index": 2},
        {
            "type": "content_block_start",
            "index": 3,
            "content_block": {"type": "tool_use", "id": "call_2", "name": "g", "input": {}},
        },
        {"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
        {"type": "content_block_stop", "index": 3},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {
                "input_tokens": 8,
                "output_tokens": 7,
                "cache_read_input_tokens": 3,
                "cache_creation_input_tokens": 0,
            },
        },
        {"type": "message_stop"},
    ]
    start = events[0][1]["message"]
    assert start["id"] == "chatcmpl-7" and start["model"] == "asked" and start["content"] == []


def test_a_chat_stream_finished_without_done_still_ends_properly() -> None:
    events = _run(TO_OPENAI, "messages", _frames(_chunk({"content": "x"}), _chunk({}, "length")), {})
    assert [name for name, _ in events][-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (_frames(_chunk({"content": "x"})), "ended before its end"),
        (
            _frames(_chunk({"content": "x"}), (None, {"error": {"message": "server melted", "type": "server_error"}})),
            "server melted",
        ),
        (_frames(_chunk({"content": "x"}), (None, {"choices": [7]})), "could not be translated"),
    ],
    ids=["cut short", "error chunk", "malformed"],
)
def test_a_chat_stream_that_fails_ends_with_an_anthropic_error(frames: list[bytes], message: str) -> None:
    events = _run(TO_OPENAI, "messages", frames, {})
    name, last = events[-1]
    assert name == "error" and last["type"] == "error" and message in last["error"]["message"]
    assert "message_stop" not in [n for n, _ in events]


# -- whole conversations: the real SDKs, the gateway, fake providers on loopback --------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CLAUDE_WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
IMAGE_PART = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
CLAUDE_IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeProvider, FakeProvider]]:
    """(the OpenAI fake, the Anthropic fake)."""
    openai_fake, anthropic_fake = FakeProvider(OPENAI_KEY), FakeProvider(ANTHROPIC_KEY)
    with serve_in_thread(openai_fake.app()) as one, serve_in_thread(anthropic_fake.app()) as other:
        openai_fake.url, anthropic_fake.url = one, other
        yield openai_fake, anthropic_fake


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, fakes: tuple[FakeProvider, FakeProvider]) -> Iterator[Running]:
    openai_fake, anthropic_fake = fakes
    lenient = [
        {
            "name": "claude-lenient",
            "drop_params": True,
            "deployments": [
                {
                    "provider": "anthropic",
                    "model": "claude-sonnet-4-5",
                    "base_url": anthropic_fake.url,
                    "api_key": "secret:anthropic-key",
                }
            ],
        },
        {
            "name": "gpt-lenient",
            "drop_params": True,
            "deployments": [
                {
                    "provider": "openai",
                    "model": "gpt-4o",
                    "base_url": openai_fake.url + "/v1",
                    "api_key": "secret:openai-key",
                }
            ],
        },
    ]
    yield from _start(tmp_path_factory.mktemp("translate"), _models(openai_fake.url, anthropic_fake.url, more=lenient))


def _openai(running: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=running.v1, api_key=running.key, max_retries=0)


def _anthropic(running: Running) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=running.url, api_key=running.key, max_retries=0)


def _usage_line(caplog: pytest.LogCaptureFixture) -> str:
    return [r.getMessage() for r in caplog.records if r.name == "mcp_gateway.models"][-1]


def test_openai_sdk_tool_conversation_with_a_claude_model(
    running: Running, fakes: tuple[FakeProvider, FakeProvider], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_gateway.models")
    _, claude = fakes
    client = _openai(running)
    messages: list[Any] = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "text", "text": "What is the weather here?"}, IMAGE_PART]},
    ]
    first = client.chat.completions.create(
        model="claude-test", messages=messages, tools=[WEATHER], parallel_tool_calls=False, stop=["END"]
    )
    assert claude.seen[-1].body == {
        "model": "claude-sonnet-4-5",
        "system": "Answer briefly.",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "What is the weather here?"}, CLAUDE_IMAGE]}
        ],
        "max_tokens": 4096,
        "stop_sequences": ["END"],
        "tools": [CLAUDE_WEATHER],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    }
    choice = first.choices[0]
    assert first.model == "claude-test" and choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (  # type: ignore[union-attr]
        "toolu_1",
        "get_weather",
        {"city": "Paris"},
    )
    messages += [choice.message, {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21°C"}]
    final = client.chat.completions.create(model="claude-test", messages=messages, tools=[WEATHER])
    assert final.choices[0].message.content == "the tool said: sunny, 21°C"
    assert final.choices[0].finish_reason == "stop"
    assert claude.seen[-1].body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny, 21°C"}]},
    ]
    usage = final.usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (18, 6)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 4
    line = _usage_line(caplog)
    assert "model=claude-test" in line and "in=18 out=6 cache_read=4 cache_write=2" in line


def test_openai_sdk_tool_conversation_with_a_claude_model_streamed(
    running: Running, fakes: tuple[FakeProvider, FakeProvider], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_gateway.models")
    _, claude = fakes
    client = _openai(running)
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    with client.chat.completions.stream(model="claude-test", messages=messages, tools=[WEATHER]) as stream:
        kinds = {event.type for event in stream}
        first = stream.get_final_completion()
    assert claude.seen[-1].body["stream"] is True
    assert "tool_calls.function.arguments.delta" in kinds and "content.delta" in kinds
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls" and message.content == "Let me check. "
    call = message.tool_calls[0]  # type: ignore[index]
    assert (call.id, json.loads(call.function.arguments)) == ("toolu_1", {"city": "Paris"})
    messages += [message, {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    chunks = list(
        client.chat.completions.create(
            model="claude-test", messages=messages, tools=[WEATHER], stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "the tool said: sunny "
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 18
    assert claude.seen[-1].body["messages"][-1] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}],
    }
    line = _usage_line(caplog)  # from Anthropic's own events, before translation
    assert "in=18 out=6 cache_read=4 cache_write=2" in line and "stream=True" in line and "estimated" not in line


def test_anthropic_sdk_tool_conversation_with_a_gpt_model(
    running: Running, fakes: tuple[FakeProvider, FakeProvider]
) -> None:
    gpt, _ = fakes
    client = _anthropic(running)
    messages: list[Any] = [
        {"role": "user", "content": [CLAUDE_IMAGE, {"type": "text", "text": "What is the weather here?"}]}
    ]
    first = client.messages.create(
        model="gpt-test",
        max_tokens=200,
        system=[{"type": "text", "text": "Answer briefly.", "cache_control": {"type": "ephemeral"}}],
        messages=messages,
        tools=[CLAUDE_WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        metadata={"user_id": "user-7"},
    )
    assert gpt.seen[-1].body == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": [IMAGE_PART, {"type": "text", "text": "What is the weather here?"}]},
        ],
        "max_completion_tokens": 200,
        "tools": [WEATHER],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "user": "user-7",
    }
    assert first.model == "gpt-test" and first.stop_reason == "tool_use"
    use = first.content[-1]
    assert use.type == "tool_use" and (use.id, use.name, use.input) == ("call_1", "get_weather", {"city": "Paris"})
    assert first.usage.input_tokens == 8 and first.usage.cache_read_input_tokens == 3  # 11 prompt tokens, 3 cached
    messages += [
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21°C"}]},
    ]
    final = client.messages.create(model="gpt-test", max_tokens=200, messages=messages, tools=[CLAUDE_WEATHER])  # type: ignore[list-item]
    assert final.stop_reason == "end_turn" and final.content[0].text == "the tool said: sunny, 21°C"  # type: ignore[union-attr]
    assert gpt.seen[-1].body["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21°C"},
    ]


def test_anthropic_sdk_tool_conversation_with_a_gpt_model_streamed(
    running: Running, fakes: tuple[FakeProvider, FakeProvider], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_gateway.models")
    gpt, _ = fakes
    client = _anthropic(running)
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    with client.messages.stream(model="gpt-test", max_tokens=200, messages=messages, tools=[CLAUDE_WEATHER]) as stream:  # type: ignore[list-item]
        kinds = {event.type for event in stream}
        first = stream.get_final_message()
    # The provider is asked for usage, which the gateway's meter reads from its own chunks.
    assert gpt.seen[-1].body["stream"] is True and gpt.seen[-1].body["stream_options"] == {"include_usage": True}
    assert {"message_start", "content_block_start", "input_json", "content_block_stop", "message_stop"} <= kinds
    assert first.stop_reason == "tool_use" and first.model == "gpt-test"
    use = first.content[-1]
    assert use.type == "tool_use" and (use.id, use.input) == ("call_1", {"city": "Paris"})
    assert (first.usage.input_tokens, first.usage.output_tokens, first.usage.cache_read_input_tokens) == (8, 7, 3)
    messages += [
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
    ]
    with client.messages.stream(model="gpt-test", max_tokens=200, messages=messages) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "the tool said: sunny " and final.stop_reason == "end_turn"
    line = _usage_line(caplog)
    assert "model=gpt-test" in line and "in=11 out=7 cache_read=3" in line and "reasoning=2" in line
    assert "estimated" not in line


def test_reasoning_both_ways(running: Running, fakes: tuple[FakeProvider, FakeProvider]) -> None:
    gpt, claude = fakes
    # OpenAI client, Claude model: reasoning_effort is a thinking budget; thinking comes back as
    # reasoning_content, with the signed blocks a tool loop must send back.
    client = _openai(running)
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(
        model="claude-test", messages=messages, tools=[WEATHER], reasoning_effort="low"
    )
    assert claude.seen[-1].body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert claude.seen[-1].body["max_tokens"] == 4096 + 2048
    message = first.choices[0].message
    extra = message.model_extra or {}
    assert extra["reasoning_content"] == THOUGHT
    assert extra["thinking_blocks"] == [{"type": "thinking", "thinking": THOUGHT, "signature": "sig-1"}]
    assert first.usage is not None and first.usage.completion_tokens_details is not None
    assert first.usage.completion_tokens_details.reasoning_tokens == 3
    messages += [message, {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "sunny"}]  # type: ignore[index]
    client.chat.completions.create(model="claude-test", messages=messages, tools=[WEATHER], reasoning_effort="low")
    assert claude.seen[-1].body["messages"][1]["content"][0] == {
        "type": "thinking",
        "thinking": THOUGHT,
        "signature": "sig-1",
    }
    chunks = list(
        client.chat.completions.create(model="claude-test", messages=messages[:1], reasoning_effort="low", stream=True)
    )
    assert "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content", "") for c in chunks) == THOUGHT
    # Anthropic client, GPT model: a thinking budget is a reasoning_effort; reasoning comes back as thinking.
    answer = _anthropic(running).messages.create(
        model="gpt-test",
        max_tokens=9000,
        messages=[{"role": "user", "content": "hello"}],
        thinking={"type": "enabled", "budget_tokens": 5000},
    )
    assert gpt.seen[-1].body["reasoning_effort"] == "medium"
    assert answer.content[0].type == "thinking" and answer.content[0].thinking == THOUGHT
    assert answer.content[1].text == "echo: hello"  # type: ignore[union-attr]
    with _anthropic(running).messages.stream(
        model="gpt-test",
        max_tokens=9000,
        messages=[{"role": "user", "content": "hello"}],
        thinking={"type": "enabled", "budget_tokens": 5000},
    ) as stream:
        thought = "".join(e.thinking for e in stream if e.type == "thinking")
    assert thought == THOUGHT


def test_json_mode_and_structured_output_both_ways(running: Running, fakes: tuple[FakeProvider, FakeProvider]) -> None:
    gpt, claude = fakes
    client = _openai(running)
    hello = [{"role": "user", "content": "hello"}]
    # JSON mode: Anthropic has none; a forced tool call whose input is the answer.
    answer = client.chat.completions.create(
        model="claude-test", messages=hello, response_format={"type": "json_object"}
    )
    assert claude.seen[-1].body["tool_choice"] == {"type": "tool", "name": "json_object_answer"}
    assert json.loads(answer.choices[0].message.content or "") == {"city": "Paris"}
    assert answer.choices[0].finish_reason == "stop" and answer.choices[0].message.tool_calls is None
    chunks = list(
        client.chat.completions.create(
            model="claude-test", messages=hello, stream=True, response_format={"type": "json_object"}
        )
    )
    assert json.loads("".join(c.choices[0].delta.content or "" for c in chunks)) == {"city": "Paris"}
    # json_schema: Anthropic's structured output; the SDK's own parsing reads the answer.
    from pydantic import BaseModel

    class Echo(BaseModel):
        echo: str

    parsed = client.chat.completions.parse(model="claude-test", messages=hello, response_format=Echo)
    assert parsed.choices[0].message.parsed == Echo(echo="echo: hello")
    assert claude.seen[-1].body["output_config"]["format"]["type"] == "json_schema"
    assert claude.seen[-1].body["output_config"]["format"]["schema"]["properties"] == {
        "echo": {"title": "Echo", "type": "string"}
    }
    # And the other way: Anthropic's structured output is a strict json_schema response format.
    schema = {
        "type": "object",
        "properties": {"echo": {"type": "string"}},
        "required": ["echo"],
        "additionalProperties": False,
    }
    message = _anthropic(running).messages.create(
        model="gpt-test",
        max_tokens=100,
        messages=hello,  # type: ignore[arg-type]
        output_config={"format": {"type": "json_schema", "schema": schema}},
    )
    assert gpt.seen[-1].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }
    assert json.loads(message.content[0].text) == {"echo": "echo: hello"}  # type: ignore[union-attr]


def test_a_field_that_cannot_be_translated_is_a_400_in_the_clients_shape_and_no_call(
    running: Running, fakes: tuple[FakeProvider, FakeProvider]
) -> None:
    gpt, claude = fakes
    before = (len(gpt.seen), len(claude.seen))
    with pytest.raises(openai.BadRequestError) as caught:
        _openai(running).chat.completions.create(model="claude-test", messages=HI, seed=7)  # type: ignore[arg-type]
    assert caught.value.body["param"] == "seed" and caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    assert "`seed` cannot be translated to Anthropic Messages" in caught.value.body["message"]  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as refused:
        _anthropic(running).messages.create(model="gpt-test", max_tokens=10, messages=HI, extra_body={"top_k": 5})  # type: ignore[arg-type]
    assert refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "`top_k` cannot be translated to OpenAI chat completions" in refused.value.body["error"]["message"]  # type: ignore[index]
    # Counting tokens has no OpenAI equivalent: refused, never estimated.
    with pytest.raises(anthropic.BadRequestError) as counted:
        _anthropic(running).messages.count_tokens(model="gpt-test", messages=HI)  # type: ignore[arg-type]
    assert "cannot be translated" in str(counted.value)
    assert (len(gpt.seen), len(claude.seen)) == before  # no provider saw any of them
    # A model with drop_params drops them.
    _openai(running).chat.completions.create(model="claude-lenient", messages=HI, seed=7)  # type: ignore[arg-type]
    assert "seed" not in claude.seen[-1].body and claude.seen[-1].body["messages"] == HI
    _anthropic(running).messages.create(model="gpt-lenient", max_tokens=10, messages=HI, extra_body={"top_k": 5})  # type: ignore[arg-type]
    assert "top_k" not in gpt.seen[-1].body


def test_a_providers_error_reaches_the_other_format_with_its_message(
    running: Running, fakes: tuple[FakeProvider, FakeProvider]
) -> None:
    gpt, _ = fakes
    # Claude refuses thinking with a forced tool: the OpenAI client reads Anthropic's words in OpenAI's shape.
    with pytest.raises(openai.BadRequestError) as caught:
        _openai(running).chat.completions.create(
            model="claude-test", messages=HI, tools=[WEATHER], tool_choice="required", reasoning_effort="low"
        )
    assert caught.value.body["message"] == "Thinking may not be enabled when tool_choice forces tool use."  # type: ignore[index]
    gpt.script.append(
        Misbehave(
            status=400,
            body={
                "error": {
                    "message": "messages are too long",
                    "type": "invalid_request_error",
                    "param": "messages",
                    "code": None,
                }
            },
        )
    )
    with pytest.raises(anthropic.BadRequestError) as refused:
        _anthropic(running).messages.create(model="gpt-test", max_tokens=10, messages=HI)  # type: ignore[arg-type]
    assert refused.value.body == {  # type: ignore[comparison-overlap]
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "messages are too long"},
    }


def test_a_stream_that_breaks_ends_with_an_error_in_the_clients_format(
    running: Running, fakes: tuple[FakeProvider, FakeProvider]
) -> None:
    gpt, claude = fakes
    claude.script.append(Misbehave(break_after=4))
    stream = _openai(running).chat.completions.create(
        model="claude-test", messages=[{"role": "user", "content": "one two three four"}], stream=True
    )
    got = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            got.append(chunk)
    assert got and "broke off" in str(caught.value)
    gpt.script.append(Misbehave(break_after=3))
    with (
        pytest.raises(anthropic.APIStatusError) as broken,
        _anthropic(running).messages.stream(
            model="gpt-test", max_tokens=10, messages=[{"role": "user", "content": "one two three four"}]
        ) as events,
    ):
        for _ in events:
            pass
    assert "broke off" in str(broken.value)


def test_a_provider_key_echoed_on_the_translated_path_is_scrubbed(
    tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    openai_fake, anthropic_fake = fakes
    wrong = ("sk-wrong-openai-key-echoed-31", "sk-ant-wrong-key-echoed-42")
    for running in _start(tmp_path, _models(openai_fake.url, anthropic_fake.url)):
        running.gateway.vault.put("openai-key", wrong[0])
        running.gateway.vault.put("anthropic-key", wrong[1])
        anyio.run(running.gateway.refresh_credentials)
        for stream in (False, True):
            # The fakes answer 401 quoting the key they were given, as some servers do.
            with pytest.raises(openai.AuthenticationError) as caught:
                _openai(running).chat.completions.create(model="claude-test", messages=HI, stream=stream)  # type: ignore[call-overload]
            assert "Incorrect API key provided" in caught.value.body["message"]  # type: ignore[index]
            with pytest.raises(anthropic.AuthenticationError) as refused:
                _anthropic(running).messages.create(model="gpt-test", max_tokens=5, messages=HI, stream=stream)  # type: ignore[call-overload,arg-type]
            assert refused.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
            for text in (json.dumps(caught.value.body), json.dumps(refused.value.body)):
                assert "Incorrect API key provided" in text and not any(key in text for key in wrong)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert not any(key in logged for key in (*wrong, OPENAI_KEY, ANTHROPIC_KEY))


def test_sse_events_are_grouped_by_the_read_that_completed_them() -> None:
    """What arrives together is written on together (one write, not one per event); an event cut
    between reads waits for its end."""

    async def grouped(chunks: list[bytes]) -> list[list[str]]:
        async def source() -> Any:
            for chunk in chunks:
                yield chunk

        return [[event.data for event in batch] async for batch in sse.batches(source())]

    reads = [b"data: 1\n\ndata: 2\n\ndata: 3", b"\n\n", b"event: x\r\ndata: 4\r\n\r\ndata: 5\n\ndata: [DONE]"]
    assert anyio.run(grouped, reads) == [["1", "2"], ["3"], ["4", "5"], ["[DONE]"]]
