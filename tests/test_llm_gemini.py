"""Google Gemini behind the /v1 front doors: AI Studio and Vertex AI, reached by the official
`openai` and `anthropic` SDKs through the gateway's translations.

First the pure translations, field by field (what each client field becomes, what is refused
with a 400 naming it, what `drop_params` drops, how answers and stream chunks come back); then
whole conversations through the gateway to a fake Gemini on loopback that speaks Gemini's wire
format and refuses what Gemini refuses, and a fake OAuth token endpoint for Vertex's service
account.
"""

from __future__ import annotations

import base64
import json
import logging
import struct
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import anyio
import httpx2
import openai
import pytest

from mcp_gateway.auth import keys
from mcp_gateway.config import GatewayConfig
from mcp_gateway.config.models import DeploymentConfig, ModelConfig, models_from_environment
from mcp_gateway.gateway import Gateway
from mcp_gateway.llm import sse, translate
from mcp_gateway.llm.errors import LlmError
from mcp_gateway.llm.usage import from_gemini
from mcp_gateway.store.identities import Selector
from tests.fake_gemini import SIGNATURE, VECTOR, FakeGemini, FakeTokenEndpoint
from tests.fake_llm import THOUGHT, Misbehave
from tests.servers import serve_in_thread
from tests.test_llm import Running
from tests.test_llm_translate import CLAUDE_WEATHER, PNG, WEATHER, _anthropic, _openai, _usage_line

GEMINI_KEY = "AIzaSy-gemini-upstream-secret-4e5f6a7b8c"
OPENAI_TO = translate.find("openai", "gemini")
ANTHROPIC_TO = translate.find("anthropic", "gemini")
STRICT = ModelConfig.model_validate({"name": "m", "deployments": [{"provider": "gemini", "api_key": "secret:k"}]})
LENIENT = ModelConfig.model_validate(
    {"name": "m", "drop_params": True, "deployments": [{"provider": "gemini", "api_key": "secret:k"}]}
)
HI = [{"role": "user", "content": "hi"}]
USER_HI = {"role": "user", "parts": [{"text": "hi"}]}
DECLARATION = {
    "name": "get_weather",
    "description": "The weather in a city",
    "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def from_openai(extra: dict[str, Any], model: ModelConfig = STRICT, provider_model: str = "gemini-2.5-flash") -> dict:
    assert OPENAI_TO is not None
    return OPENAI_TO.request("chat", {"model": "m", "messages": HI, **extra}, model, provider_model, False)


def from_anthropic(
    extra: dict[str, Any], model: ModelConfig = STRICT, provider_model: str = "gemini-2.5-flash"
) -> dict:
    assert ANTHROPIC_TO is not None
    body = {"model": "m", "max_tokens": 100, "messages": HI, **extra}
    return ANTHROPIC_TO.request("messages", body, model, provider_model, False)


# -- OpenAI chat -> Gemini: the request ---------------------------------------------------------------------

OPENAI_CASES = [
    ("plain", {}, {"contents": [USER_HI]}),
    (
        "system and developer messages are hoisted, in order",
        {"messages": [{"role": "system", "content": "one"}, *HI, {"role": "developer", "content": "two"}]},
        {"contents": [USER_HI], "systemInstruction": {"parts": [{"text": "one"}, {"text": "two"}]}},
    ),
    (
        "multi-turn: assistant is model",
        {"messages": [*HI, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}]},
        {
            "contents": [
                USER_HI,
                {"role": "model", "parts": [{"text": "hello"}]},
                {"role": "user", "parts": [{"text": "bye"}]},
            ]
        },
    ),
    (
        "images: base64 inline, gs:// as a file",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what?"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "auto"}},
                        {"type": "image_url", "image_url": {"url": "gs://bucket/cat.jpg"}},
                    ],
                }
            ]
        },
        {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"text": "what?"},
                        {"inlineData": {"mimeType": "image/png", "data": PNG}},
                        {"fileData": {"fileUri": "gs://bucket/cat.jpg", "mimeType": "image/jpeg"}},
                    ],
                }
            ]
        },
    ),
    (
        "audio and a PDF file inline",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                        {
                            "type": "file",
                            "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a"},
                        },
                    ],
                }
            ]
        },
        {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
                        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
                    ],
                }
            ]
        },
    ),
    (
        "tools: the JSON Schema as it is",
        {"tools": [WEATHER]},
        {"contents": [USER_HI], "tools": [{"functionDeclarations": [DECLARATION]}]},
    ),
    (
        "a strict tool asks for validated calls",
        {"tools": [{"type": "function", "function": {**WEATHER["function"], "strict": True}}], "tool_choice": "auto"},
        {
            "contents": [USER_HI],
            "tools": [{"functionDeclarations": [DECLARATION]}],
            "toolConfig": {"functionCallingConfig": {"mode": "VALIDATED"}},
        },
    ),
    (
        "tool_choice none",
        {"tools": [WEATHER], "tool_choice": "none"},
        {
            "contents": [USER_HI],
            "tools": [{"functionDeclarations": [DECLARATION]}],
            "toolConfig": {"functionCallingConfig": {"mode": "NONE"}},
        },
    ),
    (
        "tool_choice required",
        {"tools": [WEATHER], "tool_choice": "required", "parallel_tool_calls": True},
        {
            "contents": [USER_HI],
            "tools": [{"functionDeclarations": [DECLARATION]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        },
    ),
    (
        "tool_choice one function",
        {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        {
            "contents": [USER_HI],
            "tools": [{"functionDeclarations": [DECLARATION]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
        },
    ),
    (
        "tool_choice allowed_tools, auto",
        {
            "tools": [WEATHER],
            "tool_choice": {
                "type": "allowed_tools",
                "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {"name": "get_weather"}}]},
            },
        },
        {
            "contents": [USER_HI],
            "tools": [{"functionDeclarations": [DECLARATION]}],
            "toolConfig": {"functionCallingConfig": {"mode": "VALIDATED", "allowedFunctionNames": ["get_weather"]}},
        },
    ),
    (
        "tool calls (with their thought signature) and results: in the order of the calls, named after them",
        {
            "messages": [
                *HI,
                {
                    "role": "assistant",
                    "content": "checking",
                    "tool_calls": [
                        {
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"x": 1}'},
                            "extra_content": {"google": {"thought_signature": "sig-a"}},
                        },
                        {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": ""}},
                    ],
                },
                {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "two"}]},
                {"role": "tool", "tool_call_id": "call_a", "content": "one"},
                {"role": "user", "content": "and?"},
            ]
        },
        {
            "contents": [
                USER_HI,
                {
                    "role": "model",
                    "parts": [
                        {"text": "checking"},
                        {"functionCall": {"name": "f", "args": {"x": 1}}, "thoughtSignature": "sig-a"},
                        {"functionCall": {"name": "g", "args": {}}},
                    ],
                },
                {
                    "role": "user",
                    "parts": [
                        {"functionResponse": {"name": "f", "response": {"output": "one"}}},
                        {"functionResponse": {"name": "g", "response": {"output": "two"}}},
                        {"text": "and?"},
                    ],
                },
            ]
        },
    ),
    (
        "sampling, limits, stop, candidates, seed, penalties",
        {
            "temperature": 0.2,
            "top_p": 0.9,
            "top_k": 40,
            "max_completion_tokens": 300,
            "stop": "END",
            "n": 2,
            "seed": 7,
            "presence_penalty": 0.5,
            "frequency_penalty": 0.25,
        },
        {
            "contents": [USER_HI],
            "generationConfig": {
                "temperature": 0.2,
                "topP": 0.9,
                "topK": 40,
                "seed": 7,
                "presencePenalty": 0.5,
                "frequencyPenalty": 0.25,
                "maxOutputTokens": 300,
                "stopSequences": ["END"],
                "candidateCount": 2,
            },
        },
    ),
    (
        "max_tokens when max_completion_tokens is absent",
        {"max_tokens": 9},
        {"generationConfig": {"maxOutputTokens": 9}},
    ),
    (
        "JSON mode",
        {"response_format": {"type": "json_object"}},
        {"generationConfig": {"responseMimeType": "application/json"}},
    ),
    (
        "json_schema",
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "x",
                    "strict": True,
                    "schema": {"type": "object", "additionalProperties": False},
                },
            }
        },
        {
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseJsonSchema": {"type": "object", "additionalProperties": False},
            }
        },
    ),
    (
        "reasoning_effort: a thinking budget for Gemini 2.5, thoughts included",
        {"reasoning_effort": "medium"},
        {"generationConfig": {"thinkingConfig": {"thinkingBudget": 8192, "includeThoughts": True}}},
    ),
    (
        "reasoning_effort none: no thinking",
        {"reasoning_effort": "none"},
        {"generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}},
    ),
    (
        "values that change nothing pass, and an end-user id is not sent",
        {"n": 1, "logprobs": False, "store": False, "user": "u-1", "service_tier": "auto", "seed": None},
        {"contents": [USER_HI]},
    ),
]


@pytest.mark.parametrize(("extra", "expected"), [c[1:] for c in OPENAI_CASES], ids=[c[0] for c in OPENAI_CASES])
def test_openai_requests_become_gemini_requests(extra: dict[str, Any], expected: dict[str, Any]) -> None:
    body = from_openai(extra)
    assert {k: body[k] for k in expected} == expected
    assert set(body) <= {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig"}


def test_reasoning_effort_is_a_thinking_level_for_gemini_3() -> None:
    assert from_openai({"reasoning_effort": "high"}, provider_model="gemini-3-pro-preview")["generationConfig"] == {
        "thinkingConfig": {"thinkingLevel": "high", "includeThoughts": True}
    }
    # Gemini 3 always thinks: the least it does is `minimal`.
    config = from_openai({"reasoning_effort": "none"}, provider_model="gemini-3-flash")["generationConfig"]
    assert config == {"thinkingConfig": {"thinkingLevel": "minimal"}}


def _says(*parts: dict[str, Any]) -> dict[str, Any]:
    """`messages`: one user message of these content parts."""
    return {"messages": [{"role": "user", "content": list(parts)}]}


REFUSED_FROM_OPENAI = [
    (
        _says({"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}),
        "messages[0].content[0].image_url.url",
    ),
    (
        _says({"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "high"}}),
        "messages[0].content[0].image_url.detail",
    ),
    ({"tools": [WEATHER], "parallel_tool_calls": False}, "parallel_tool_calls"),
    ({"logprobs": True}, "logprobs"),
    ({"logit_bias": {"1": 2}}, "logit_bias"),
    ({"audio": {"voice": "x"}}, "audio"),
    ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
    ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0]"),
    ({"messages": [{"role": "user", "content": "x", "name": "bob"}]}, "messages[0].name"),
    (_says({"type": "file", "file": {"file_id": "file-1"}}), "messages[0].content[0].file.file_id"),
    ({"service_tier": "flex"}, "service_tier"),
    ({"brand_new_field": 1}, "brand_new_field"),
]


@pytest.mark.parametrize(("extra", "param"), REFUSED_FROM_OPENAI)
def test_what_gemini_cannot_carry_is_a_400_naming_it_unless_dropped(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(LlmError) as caught:
        from_openai(extra)
    assert caught.value.status == 400 and caught.value.param == param
    assert f"`{param}` cannot be translated to Gemini" in caught.value.message
    from_openai(extra, LENIENT)  # dropped


def test_an_image_url_is_refused_naming_it_and_never_fetched() -> None:
    with pytest.raises(LlmError) as caught:
        from_openai(_says({"type": "image_url", "image_url": "http://169.254.169.254/x"}))
    assert "send the data as base64" in caught.value.message and "fetches none" in caught.value.message


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"messages": "hi"}, "messages"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        (
            {
                "messages": [
                    {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}]}
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
    ],
)
def test_a_malformed_openai_request_is_a_400_even_with_drop_params(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(LlmError) as caught:
        from_openai(extra, LENIENT)
    assert caught.value.status == 400 and caught.value.param == param


def test_embeddings_become_a_batch() -> None:
    assert OPENAI_TO is not None
    body = {"model": "m", "input": ["a", "b"], "dimensions": 8, "encoding_format": "base64"}
    assert OPENAI_TO.request("embeddings", body, STRICT, "gemini-embedding-001", False) == {
        "requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": t}]}, "outputDimensionality": 8}
            for t in ("a", "b")
        ]
    }
    with pytest.raises(LlmError) as caught:
        OPENAI_TO.request("embeddings", {"model": "m", "input": [[1, 2, 3]]}, STRICT, "e", False)
    assert caught.value.param == "input"


# -- Anthropic Messages -> Gemini: the request ----------------------------------------------------------------

ANTHROPIC_CASES = [
    ("plain", {}, {"contents": [USER_HI], "generationConfig": {"maxOutputTokens": 100}}),
    (
        "system blocks, cache_control left out",
        {"system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}]},
        {"systemInstruction": {"parts": [{"text": "be brief"}]}},
    ),
    (
        "images and a PDF, base64",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                        {
                            "type": "document",
                            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
                        },
                        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain"}},
                        {"type": "text", "text": "what?"},
                    ],
                }
            ]
        },
        {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"inlineData": {"mimeType": "image/png", "data": PNG}},
                        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
                        {"text": "plain"},
                        {"text": "what?"},
                    ],
                }
            ]
        },
    ),
    (
        "tools, tool_choice tool, sampling, stop sequences",
        {
            "tools": [CLAUDE_WEATHER],
            "tool_choice": {"type": "tool", "name": "get_weather"},
            "temperature": 0.5,
            "top_p": 0.8,
            "top_k": 20,
            "stop_sequences": ["END"],
        },
        {
            "tools": [{"functionDeclarations": [DECLARATION]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
            "generationConfig": {
                "maxOutputTokens": 100,
                "temperature": 0.5,
                "topP": 0.8,
                "topK": 20,
                "stopSequences": ["END"],
            },
        },
    ),
    (
        "a thinking block's signature goes to the call after it; an error result is an error",
        {
            "messages": [
                *HI,
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hmm", "signature": "sig-1"},
                        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "no such city", "is_error": True},
                        {"type": "text", "text": "try again"},
                    ],
                },
            ]
        },
        {
            "contents": [
                USER_HI,
                {
                    "role": "model",
                    "parts": [
                        {
                            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                            "thoughtSignature": "sig-1",
                        }
                    ],
                },
                {
                    "role": "user",
                    "parts": [
                        {"functionResponse": {"name": "get_weather", "response": {"error": "no such city"}}},
                        {"text": "try again"},
                    ],
                },
            ]
        },
    ),
    (
        "a thinking budget: Gemini 2.5's budget, thoughts included",
        {"thinking": {"type": "enabled", "budget_tokens": 2048}},
        {
            "generationConfig": {
                "maxOutputTokens": 100,
                "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True},
            }
        },
    ),
    (
        "adaptive thinking is Gemini's dynamic thinking",
        {"thinking": {"type": "adaptive"}},
        {
            "generationConfig": {
                "maxOutputTokens": 100,
                "thinkingConfig": {"thinkingBudget": -1, "includeThoughts": True},
            }
        },
    ),
    (
        "structured output",
        {"output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}},
        {
            "generationConfig": {
                "maxOutputTokens": 100,
                "responseMimeType": "application/json",
                "responseJsonSchema": {"type": "object"},
            }
        },
    ),
    ("metadata.user_id is not sent", {"metadata": {"user_id": "u-1"}}, {"contents": [USER_HI]}),
]


@pytest.mark.parametrize(("extra", "expected"), [c[1:] for c in ANTHROPIC_CASES], ids=[c[0] for c in ANTHROPIC_CASES])
def test_anthropic_requests_become_gemini_requests(extra: dict[str, Any], expected: dict[str, Any]) -> None:
    body = from_anthropic(extra)
    assert {k: body[k] for k in expected} == expected
    assert set(body) <= {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig"}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (
            {"tools": [CLAUDE_WEATHER], "tool_choice": {"type": "auto", "disable_parallel_tool_use": True}},
            "tool_choice.disable_parallel_tool_use",
        ),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0]"),
        (
            _says({"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}),
            "messages[0].content[0].source.url",
        ),
        (_says({"type": "image", "source": {"type": "file", "file_id": "f"}}), "messages[0].content[0].source"),
        (
            _says(
                {"type": "document", "title": "t", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}
            ),
            "messages[0].content[0].title",
        ),
        ({"container": "c"}, "container"),
        ({"speed": "fast"}, "speed"),
    ],
)
def test_what_gemini_cannot_carry_from_anthropic_is_a_400_unless_dropped(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(LlmError) as caught:
        from_anthropic(extra)
    assert caught.value.status == 400 and caught.value.param == param
    from_anthropic(extra, LENIENT)


def test_a_tool_result_must_answer_a_call() -> None:
    content = [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "x"}]
    with pytest.raises(LlmError) as caught:
        from_anthropic({"messages": [{"role": "user", "content": content}]}, LENIENT)
    assert caught.value.param == "messages[0].content[0].tool_use_id"


# -- answers ----------------------------------------------------------------------------------------------------


def _candidate(*parts: dict[str, Any], finish: str | None = "STOP", index: int = 0) -> dict[str, Any]:
    found: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)}, "index": index}
    if finish is not None:
        found["finishReason"] = finish
    return found


USAGE = {
    "promptTokenCount": 20,
    "candidatesTokenCount": 6,
    "thoughtsTokenCount": 3,
    "cachedContentTokenCount": 8,
    "totalTokenCount": 29,
}


def test_usage_metadata_keeps_cached_and_thinking_tokens_apart() -> None:
    usage = from_gemini(USAGE)
    assert usage is not None
    assert (usage.input, usage.output, usage.cache_read, usage.reasoning) == (20, 9, 8, 3)


def test_a_gemini_answer_becomes_a_chat_completion() -> None:
    assert OPENAI_TO is not None
    answer = {
        "candidates": [
            _candidate(
                {"text": "pondering", "thought": True},
                {"text": "Let me check."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "sig-9"},
            ),
            _candidate({"text": "other"}, finish="MAX_TOKENS", index=1),
        ],
        "usageMetadata": USAGE,
        "responseId": "r-1",
    }
    completion = OPENAI_TO.response("chat", answer, "gem", {})
    first, second = completion["choices"]
    assert completion["id"] == "chatcmpl-r-1" and completion["model"] == "gem"
    assert first["finish_reason"] == "tool_calls" and second["finish_reason"] == "length"
    message = first["message"]
    assert message["content"] == "Let me check." and message["reasoning_content"] == "pondering"
    call = message["tool_calls"][0]
    assert call["id"].startswith("call_") and call["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }
    assert call["extra_content"] == {"google": {"thought_signature": "sig-9"}}
    assert completion["usage"] == {
        "prompt_tokens": 20,
        "completion_tokens": 9,
        "total_tokens": 29,
        "prompt_tokens_details": {"cached_tokens": 8},
        "completion_tokens_details": {"reasoning_tokens": 3},
    }


@pytest.mark.parametrize(
    ("reason", "finish", "stop"),
    [
        ("STOP", "stop", "end_turn"),
        ("MAX_TOKENS", "length", "max_tokens"),
        ("SAFETY", "content_filter", "refusal"),
        ("RECITATION", "content_filter", "refusal"),
        ("PROHIBITED_CONTENT", "content_filter", "refusal"),
        ("BLOCKLIST", "content_filter", "refusal"),
        ("OTHER", "stop", "end_turn"),
    ],
)
def test_finish_reasons(reason: str, finish: str, stop: str) -> None:
    assert OPENAI_TO is not None and ANTHROPIC_TO is not None
    answer = {"candidates": [_candidate({"text": "x"}, finish=reason)]}
    assert OPENAI_TO.response("chat", answer, "g", {})["choices"][0]["finish_reason"] == finish
    assert ANTHROPIC_TO.response("messages", answer, "g", {})["stop_reason"] == stop


def test_a_blocked_prompt_is_a_content_filter_finish_and_a_refusal() -> None:
    assert OPENAI_TO is not None and ANTHROPIC_TO is not None
    answer = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 5}}
    choice = OPENAI_TO.response("chat", answer, "g", {})["choices"][0]
    assert choice["finish_reason"] == "content_filter" and choice["message"]["content"] is None
    message = ANTHROPIC_TO.response("messages", answer, "g", {})
    assert message["stop_reason"] == "refusal" and message["content"] == []


def test_a_gemini_answer_becomes_a_claude_message_with_signatures_in_thinking_blocks() -> None:
    assert ANTHROPIC_TO is not None
    answer = {
        "candidates": [
            _candidate(
                {"text": "pondering", "thought": True},
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "fc-1"},
                    "thoughtSignature": "sig-9",
                },
                {"text": "done", "thoughtSignature": "sig-10"},
            )
        ],
        "usageMetadata": USAGE,
    }
    message = ANTHROPIC_TO.response("messages", answer, "gem", {})
    assert message["content"] == [
        {"type": "thinking", "thinking": "pondering", "signature": "sig-9"},
        {"type": "tool_use", "id": "fc-1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "thinking", "thinking": "", "signature": "sig-10"},
        {"type": "text", "text": "done"},
    ]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"] == {
        "input_tokens": 12,
        "output_tokens": 9,
        "cache_read_input_tokens": 8,
        "cache_creation_input_tokens": 0,
        "output_tokens_details": {"thinking_tokens": 3},
    }
    # Sent back, each signature goes with the part after its thinking block.
    back = from_anthropic(
        {
            "messages": [
                *HI,
                {"role": "assistant", "content": message["content"]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "fc-1", "content": "sunny"}]},
            ]
        }
    )
    assert back["contents"][1]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "sig-9"},
        {"text": "done", "thoughtSignature": "sig-10"},
    ]


def test_a_provider_answer_that_cannot_be_read_is_a_502() -> None:
    assert OPENAI_TO is not None and ANTHROPIC_TO is not None
    broken = {"candidates": [_candidate({"functionCall": {"args": {}}})]}
    for translator, operation in ((OPENAI_TO, "chat"), (ANTHROPIC_TO, "messages")):
        with pytest.raises(LlmError) as caught:
            translator.response(operation, broken, "g", {})
        assert caught.value.status == 502


# -- streams ----------------------------------------------------------------------------------------------------


def _frames(*chunks: dict[str, Any]) -> list[bytes]:
    return [sse.encode(c) for c in chunks]


def _run(translator: Any, operation: str, frames: list[bytes], client_body: dict[str, Any]) -> list[tuple[str, Any]]:
    async def go() -> list[tuple[str, Any]]:
        async def chunks() -> Any:
            for frame in frames:
                yield frame

        out = []
        async for framed in translator.stream(operation, sse.events(chunks()), "gem", client_body):
            async for event in sse.events(_one(framed)):
                out.append((event.name, event.json() if event.data != "[DONE]" else "[DONE]"))
        return out

    return anyio.run(go)


async def _one(data: bytes) -> Any:
    yield data


def _usage(output: int) -> dict[str, int]:
    return {"promptTokenCount": 20, "candidatesTokenCount": output, "cachedContentTokenCount": 8}


STREAM = _frames(
    {
        "candidates": [_candidate({"text": "hmm", "thought": True}, finish=None)],
        "usageMetadata": _usage(1),
        "responseId": "r",
    },
    {"candidates": [_candidate({"text": "Let "}, finish=None)], "usageMetadata": _usage(2)},
    {"candidates": [_candidate({"text": "me."}, finish=None)], "usageMetadata": _usage(3)},
    {
        "candidates": [
            _candidate({"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "s1"})
        ],
        "usageMetadata": _usage(7),
    },
)


def test_gemini_chunks_become_chat_chunks_with_the_last_running_total() -> None:
    events = _run(OPENAI_TO, "chat", STREAM, {"stream_options": {"include_usage": True}})
    chunks = [data for _, data in events]
    assert chunks[-1] == "[DONE]"
    deltas = [c["choices"][0]["delta"] for c in chunks[:-2]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1:4] == [{"reasoning_content": "hmm"}, {"content": "Let "}, {"content": "me."}]
    call = deltas[4]["tool_calls"][0]
    assert call["index"] == 0 and call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert call["extra_content"] == {"google": {"thought_signature": "s1"}}
    assert chunks[-3]["choices"][0]["finish_reason"] == "tool_calls"
    # Usage is the last chunk's running total, not the sum of them all.
    assert chunks[-2]["choices"] == [] and chunks[-2]["usage"]["completion_tokens"] == 7
    assert chunks[-2]["usage"]["prompt_tokens"] == 20 and chunks[-2]["usage"]["prompt_tokens_details"] == {
        "cached_tokens": 8
    }
    assert all("usage" not in c for c in _run_chunks({}))


def _run_chunks(client_body: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for _, d in _run(OPENAI_TO, "chat", STREAM, client_body) if d != "[DONE]"]


def test_gemini_chunks_become_claude_stream_events() -> None:
    events = _run(ANTHROPIC_TO, "messages", STREAM, {})
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    blocks = [(d["index"], d["content_block"]["type"]) for n, d in events if n == "content_block_start"]
    assert blocks == [(0, "thinking"), (1, "text"), (2, "thinking"), (3, "tool_use")]
    deltas = [d["delta"] for n, d in events if n == "content_block_delta"]
    assert deltas == [
        {"type": "thinking_delta", "thinking": "hmm"},
        {"type": "text_delta", "text": "Let "},
        {"type": "text_delta", "text": "me."},
        {"type": "signature_delta", "signature": "s1"},
        {"type": "input_json_delta", "partial_json": '{"city": "Paris"}'},
    ]
    final = events[-2][1]
    assert final["delta"]["stop_reason"] == "tool_use"
    assert (final["usage"]["input_tokens"], final["usage"]["output_tokens"]) == (12, 7)


def test_a_gemini_stream_that_stops_before_finishing_ends_with_an_error() -> None:
    cut = STREAM[:2]
    openai_events = _run(OPENAI_TO, "chat", cut, {})
    assert "ended before its end" in openai_events[-1][1]["error"]["message"]
    claude_events = _run(ANTHROPIC_TO, "messages", cut, {})
    assert claude_events[-1][0] == "error" and "ended before its end" in claude_events[-1][1]["error"]["message"]


# -- configuration ------------------------------------------------------------------------------------------------


def test_gemini_and_vertex_deployments_are_checked() -> None:
    DeploymentConfig(provider="gemini", api_key="secret:k")
    DeploymentConfig(provider="vertex", project="my-project", region="global", service_account="secret:sa")
    bad: list[dict[str, Any]] = [
        {"provider": "gemini"},
        {"provider": "vertex", "project": "p-1", "region": "us-central1"},
        {"provider": "vertex", "project": "p-1", "service_account": "secret:sa"},
        {"provider": "vertex", "project": "a/../b", "region": "us-central1", "service_account": "secret:sa"},
        {"provider": "vertex", "project": "p-1", "region": "evil.com/x", "service_account": "secret:sa"},
        {"provider": "openai", "region": "us-central1"},
    ]
    for fields in bad:
        with pytest.raises(ValueError):
            DeploymentConfig(**fields)
    assert {"api_key", "service_account"} <= set(DeploymentConfig.SECRET_FIELDS)


def test_a_gemini_key_in_the_environment_serves_gemini_models() -> None:
    models = models_from_environment({"GEMINI_API_KEY": "k1", "GOOGLE_API_KEY": "k2", "OPENAI_API_KEY": "k3"})
    assert [(m.name, m.deployments[0].provider, m.deployments[0].api_key) for m in models] == [
        ("gemini-*", "gemini", "env:GEMINI_API_KEY"),
        ("*", "openai", "env:OPENAI_API_KEY"),
    ]
    (only,) = models_from_environment({"GOOGLE_API_KEY": "k2"})
    assert (only.name, only.deployments[0].api_key) == ("gemini-*", "env:GOOGLE_API_KEY")


# -- through the gateway, with the real SDKs -------------------------------------------------------------------


@dataclass
class Google:
    gemini: FakeGemini
    tokens: FakeTokenEndpoint


@pytest.fixture(scope="module")
def google() -> Iterator[Google]:
    tokens = FakeTokenEndpoint()
    gemini = FakeGemini(GEMINI_KEY, tokens)
    with serve_in_thread(tokens.app()) as token_url, serve_in_thread(gemini.app()) as gemini_url:
        tokens.url, gemini.url = token_url, gemini_url
        yield Google(gemini, tokens)


def _models(google: Google) -> list[dict[str, Any]]:
    ai_studio = {"provider": "gemini", "base_url": google.gemini.url, "api_key": "secret:gemini-key"}
    vertex = {
        "provider": "vertex",
        "base_url": google.gemini.url,
        "project": "fake-project",
        "region": "europe-west4",
        "service_account": "secret:vertex-sa",
    }
    return [
        {"name": "gemini-test", "deployments": [{**ai_studio, "model": "gemini-2.5-flash"}]},
        {"name": "gemini-3-test", "deployments": [{**ai_studio, "model": "gemini-3-pro-preview"}]},
        {"name": "gemini-lenient", "drop_params": True, "deployments": [{**ai_studio, "model": "gemini-2.5-flash"}]},
        {"name": "gemini-embed", "deployments": [{**ai_studio, "model": "gemini-embedding-001"}]},
        {"name": "vertex-test", "retries": 0, "deployments": [{**vertex, "model": "gemini-2.5-pro"}]},
    ]


def _start(tmp_path: Path, google: Google) -> Iterator[Running]:
    config = GatewayConfig.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "auth": {"enabled": True},
            "models": _models(google),
            "models_from_env": False,
        }
    )
    gateway = Gateway(config)
    gateway.vault.put("gemini-key", GEMINI_KEY)
    gateway.vault.put("vertex-sa", json.dumps(google.tokens.service_account()))
    store = gateway.identities
    store.add_consumer("alice", "payments", "acme")
    _, key = keys.issue(store, "alice")
    store.add_policy("consumer", "alice", "allow", Selector(models=("*",)), None)
    with serve_in_thread(gateway.http_app(), lifespan="on") as url:
        yield Running(url, gateway, key)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, google: Google) -> Iterator[Running]:
    yield from _start(tmp_path_factory.mktemp("gemini"), google)


@pytest.fixture
def fresh(tmp_path: Path, google: Google) -> Iterator[Running]:
    """A gateway of its own: no provider built, no token cached."""
    google.tokens.expires_in, google.tokens.delay = 3600, 0.0
    yield from _start(tmp_path, google)


def test_openai_sdk_text_with_an_ai_studio_key_in_a_header(
    running: Running, google: Google, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_gateway.models")
    reply = _openai(running).chat.completions.create(
        model="gemini-test", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    )
    assert reply.choices[0].message.content == "echo: hello" and reply.model == "gemini-test"
    assert reply.choices[0].finish_reason == "stop"
    seen = google.gemini.seen[-1]
    assert seen.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert seen.headers["x-goog-api-key"] == GEMINI_KEY and GEMINI_KEY not in seen.path
    assert running.key not in json.dumps(seen.headers) + json.dumps(seen.body)
    assert seen.body == {
        "contents": [{"role": "user", "parts": [{"text": "hello"}]}],
        "systemInstruction": {"parts": [{"text": "be brief"}]},
    }
    usage = reply.usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (13, 5, 18)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 4
    line = _usage_line(caplog)
    assert "model=gemini-test" in line and "in=13 out=5 cache_read=4 cache_write=0 reasoning=0" in line
    assert "estimated" not in line and "cost=-" not in line  # gemini-2.5-flash is priced


def test_openai_sdk_stream_counts_the_running_total_once(
    running: Running, google: Google, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_gateway.models")
    client = _openai(running)
    messages = [{"role": "user", "content": "one two three"}]
    chunks = list(
        client.chat.completions.create(
            model="gemini-test", messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    assert google.gemini.seen[-1].path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: one two three "
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    # Four chunks each carried the usage so far (1, 2, 3, then 5 output tokens): 5, not 11.
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (13, 5)
    line = _usage_line(caplog)
    assert "in=13 out=5 cache_read=4" in line and "stream=True" in line and "estimated" not in line
    # Without include_usage, no usage chunk.
    plain = list(client.chat.completions.create(model="gemini-test", messages=messages, stream=True))
    assert all(c.choices for c in plain)


def test_openai_sdk_tool_conversation_with_gemini_3_signatures(running: Running, google: Google) -> None:
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
    first = client.chat.completions.create(model="gemini-3-test", messages=messages, tools=[WEATHER])  # type: ignore[list-item]
    sent = google.gemini.seen[-1].body
    assert sent["tools"] == [{"functionDeclarations": [DECLARATION]}]
    assert sent["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": PNG}}
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    assert (call.model_extra or {})["extra_content"] == {"google": {"thought_signature": SIGNATURE}}
    # The SDK's message goes back as it came: the signature with it (the fake, like Gemini 3,
    # refuses a call without one).
    messages += [choice.message, {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21°C"}]
    final = client.chat.completions.create(model="gemini-3-test", messages=messages, tools=[WEATHER])  # type: ignore[list-item]
    assert final.choices[0].message.content == "the tool said: sunny, 21°C"
    assert google.gemini.seen[-1].body["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": SIGNATURE}
            ],
        },
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "sunny, 21°C"}}}],
        },
    ]
    # Without the signature, Gemini 3's own refusal reaches the client with its message.
    del messages[1]
    messages.insert(
        1,
        {
            "role": "assistant",
            "tool_calls": [{"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}],
        },
    )
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gemini-3-test", messages=messages, tools=[WEATHER])  # type: ignore[list-item]
    assert "missing a thought_signature" in caught.value.body["message"]  # type: ignore[index]
    assert caught.value.body["code"] == "INVALID_ARGUMENT"  # type: ignore[index]


def test_openai_sdk_tool_conversation_streamed(running: Running, google: Google) -> None:
    client = _openai(running)
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    with client.chat.completions.stream(model="gemini-3-test", messages=messages, tools=[WEATHER]) as stream:  # type: ignore[list-item]
        kinds = {event.type for event in stream}
        first = stream.get_final_completion()
    assert "tool_calls.function.arguments.done" in kinds
    message = first.choices[0].message
    call = message.tool_calls[0]  # type: ignore[index]
    assert first.choices[0].finish_reason == "tool_calls" and json.loads(call.function.arguments) == {"city": "Paris"}
    signature = (call.model_extra or {}).get("extra_content")
    messages += [
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "extra_content": signature,
                    "function": {"name": "get_weather", "arguments": call.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    chunks = list(
        client.chat.completions.create(model="gemini-3-test", messages=messages, tools=[WEATHER], stream=True)
    )  # type: ignore[list-item]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "the tool said: sunny "


def test_anthropic_sdk_tool_conversation(running: Running, google: Google, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mcp_gateway.models")
    client = _anthropic(running)
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    messages: list[Any] = [{"role": "user", "content": [image, {"type": "text", "text": "What is the weather here?"}]}]
    first = client.messages.create(
        model="gemini-3-test",
        max_tokens=200,
        system="Answer briefly.",
        messages=messages,
        tools=[CLAUDE_WEATHER],  # type: ignore[list-item]
    )
    assert google.gemini.seen[-1].body["generationConfig"] == {"maxOutputTokens": 200}
    assert first.stop_reason == "tool_use" and first.model == "gemini-3-test"
    # The call's thought signature rides in a thinking block ahead of it.
    thinking, use = first.content
    assert thinking.type == "thinking" and thinking.signature == SIGNATURE
    assert use.type == "tool_use" and (use.name, use.input) == ("get_weather", {"city": "Paris"})
    assert (first.usage.input_tokens, first.usage.cache_read_input_tokens, first.usage.output_tokens) == (9, 4, 5)
    messages += [
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21°C"}]},
    ]
    final = client.messages.create(model="gemini-3-test", max_tokens=200, messages=messages, tools=[CLAUDE_WEATHER])  # type: ignore[list-item]
    assert final.stop_reason == "end_turn" and final.content[0].text == "the tool said: sunny, 21°C"  # type: ignore[union-attr]
    assert google.gemini.seen[-1].body["contents"][1]["parts"][0]["thoughtSignature"] == SIGNATURE
    line = _usage_line(caplog)
    assert "model=gemini-3-test" in line and "in=13 out=5 cache_read=4" in line


def test_anthropic_sdk_tool_conversation_streamed_with_thinking(
    running: Running, google: Google, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_gateway.models")
    client = _anthropic(running)
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    with client.messages.stream(
        model="gemini-3-test",
        max_tokens=4000,
        messages=messages,
        tools=[CLAUDE_WEATHER],  # type: ignore[list-item]
        thinking={"type": "enabled", "budget_tokens": 2048},
    ) as stream:
        kinds = {event.type for event in stream}
        first = stream.get_final_message()
    assert google.gemini.seen[-1].body["generationConfig"]["thinkingConfig"] == {
        "thinkingLevel": "low",
        "includeThoughts": True,
    }
    assert {"message_start", "thinking", "signature", "input_json", "message_stop"} <= kinds
    # The thought summary and the call's signature make one thinking block, ahead of the call.
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    assert (first.content[0].thinking, first.content[0].signature) == (THOUGHT, SIGNATURE)  # type: ignore[union-attr]
    assert first.stop_reason == "tool_use" and first.usage.output_tokens == 7  # 5 + 2 thinking
    line = _usage_line(caplog)
    assert "in=13 out=7 cache_read=4 cache_write=0 reasoning=2" in line and "estimated" not in line
    messages += [
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": first.content[1].id, "content": "sunny"}]},  # type: ignore[union-attr]
    ]
    with client.messages.stream(model="gemini-3-test", max_tokens=200, messages=messages) as stream:
        text = "".join(stream.text_stream)
    assert text == "the tool said: sunny "


def test_json_mode_and_structured_output(running: Running, google: Google) -> None:
    from pydantic import BaseModel

    class Echo(BaseModel):
        echo: str

    client = _openai(running)
    hello = [{"role": "user", "content": "hello"}]
    answer = client.chat.completions.create(
        model="gemini-test", messages=hello, response_format={"type": "json_object"}
    )  # type: ignore[arg-type]
    assert google.gemini.seen[-1].body["generationConfig"] == {"responseMimeType": "application/json"}
    assert json.loads(answer.choices[0].message.content or "") == {"echo": "echo: hello"}
    parsed = client.chat.completions.parse(model="gemini-test", messages=hello, response_format=Echo)  # type: ignore[arg-type]
    assert parsed.choices[0].message.parsed == Echo(echo="echo: hello")
    assert google.gemini.seen[-1].body["generationConfig"]["responseJsonSchema"]["properties"] == {
        "echo": {"title": "Echo", "type": "string"}
    }
    schema = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]}
    message = _anthropic(running).messages.create(
        model="gemini-test",
        max_tokens=50,
        messages=hello,  # type: ignore[arg-type]
        output_config={"format": {"type": "json_schema", "schema": schema}},
    )
    assert json.loads(message.content[0].text) == {"echo": "echo: hello"}  # type: ignore[union-attr]


def test_count_tokens_and_embeddings(running: Running, google: Google, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mcp_gateway.models")
    counted = _anthropic(running).messages.count_tokens(
        model="gemini-test",
        system="s",
        messages=[{"role": "user", "content": "count me"}],
        tools=[CLAUDE_WEATHER],  # type: ignore[list-item]
    )
    seen = google.gemini.seen[-1]
    assert seen.path == "/v1beta/models/gemini-2.5-flash:countTokens"
    inner = seen.body["generateContentRequest"]
    assert inner["model"] == "models/gemini-2.5-flash" and inner["systemInstruction"] == {"parts": [{"text": "s"}]}
    assert counted.input_tokens == len(json.dumps(inner)) // 4
    # Vertex takes the request as it is, without a function calling mode.
    _anthropic(running).messages.count_tokens(
        model="vertex-test",
        messages=[{"role": "user", "content": "count me"}],
        tools=[CLAUDE_WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "any"},
    )
    seen = google.gemini.seen[-1]
    assert seen.path.endswith("/publishers/google/models/gemini-2.5-pro:countTokens")
    assert set(seen.body) == {"contents", "tools"}
    client = _openai(running)
    vectors = client.embeddings.create(model="gemini-embed", input=["a", "b"])  # the SDK asks for base64
    assert [d.embedding for d in vectors.data] == [VECTOR, VECTOR]
    assert google.gemini.seen[-1].path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    # Gemini counts no tokens for embeddings: the input is estimated, and there is no output.
    line = _usage_line(caplog)
    assert "model=gemini-embed" in line and " out=0 " in line and "estimated" in line and " in=0 " not in line
    floats = httpx2.post(
        running.v1 + "/embeddings",
        json={"model": "gemini-embed", "input": "a", "encoding_format": "float"},
        headers={"Authorization": f"Bearer {running.key}"},
    ).json()
    assert floats["data"][0]["embedding"] == VECTOR
    packed = base64.b64encode(struct.pack("<3f", *VECTOR)).decode()
    as_base64 = httpx2.post(
        running.v1 + "/embeddings",
        json={"model": "gemini-embed", "input": "a", "encoding_format": "base64"},
        headers={"Authorization": f"Bearer {running.key}"},
    ).json()
    assert as_base64["data"][0]["embedding"] == packed


def test_a_429_is_retried_after_the_delay_gemini_asks_for(running: Running, google: Google) -> None:
    for headers, details in (
        ({"Retry-After": "1"}, []),
        ({}, [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}]),
    ):
        body = {
            "error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED", "details": details}
        }
        google.gemini.script.append(Misbehave(status=429, headers=headers, body=body))
        before = len(google.gemini.seen)
        started = time.monotonic()
        reply = _openai(running).chat.completions.create(model="gemini-test", messages=HI)  # type: ignore[arg-type]
        assert reply.choices[0].message.content == "echo: hi"
        assert len(google.gemini.seen) - before == 2 and time.monotonic() - started >= 0.9


def test_a_400_reaches_each_client_with_geminis_message(running: Running, google: Google) -> None:
    body = {
        "error": {"code": 400, "message": "* GenerationConfig.temperature: must be <= 2", "status": "INVALID_ARGUMENT"}
    }
    google.gemini.script.append(Misbehave(status=400, body=body))
    with pytest.raises(openai.BadRequestError) as caught:
        _openai(running).chat.completions.create(model="gemini-test", messages=HI, temperature=9)  # type: ignore[arg-type]
    assert caught.value.body["message"] == "* GenerationConfig.temperature: must be <= 2"  # type: ignore[index]
    assert caught.value.body["code"] == "INVALID_ARGUMENT"  # type: ignore[index]
    google.gemini.script.append(Misbehave(status=400, body=body))
    with pytest.raises(anthropic.BadRequestError) as refused:
        _anthropic(running).messages.create(model="gemini-test", max_tokens=5, messages=HI)  # type: ignore[arg-type]
    assert refused.value.body == {  # type: ignore[comparison-overlap]
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "* GenerationConfig.temperature: must be <= 2"},
    }


def test_a_field_gemini_cannot_carry_is_refused_before_any_call(running: Running, google: Google) -> None:
    before = len(google.gemini.seen)
    with pytest.raises(openai.BadRequestError) as caught:
        _openai(running).chat.completions.create(
            model="gemini-test",
            messages=HI,
            tools=[WEATHER],
            parallel_tool_calls=False,  # type: ignore[arg-type,list-item]
        )
    assert caught.value.body["param"] == "parallel_tool_calls"  # type: ignore[index]
    image = {"type": "image", "source": {"type": "url", "url": "http://127.0.0.1:1/private.png"}}
    with pytest.raises(anthropic.BadRequestError) as refused:
        _anthropic(running).messages.create(
            model="gemini-test", max_tokens=5, messages=[{"role": "user", "content": [image]}]
        )  # type: ignore[list-item]
    assert "send the data as base64" in refused.value.body["error"]["message"]  # type: ignore[index]
    assert len(google.gemini.seen) == before
    _openai(running).chat.completions.create(
        model="gemini-lenient",
        messages=HI,
        tools=[WEATHER],
        parallel_tool_calls=False,  # type: ignore[arg-type,list-item]
    )
    assert len(google.gemini.seen) == before + 1


def test_a_stream_that_breaks_ends_with_an_error_in_the_clients_format(running: Running, google: Google) -> None:
    google.gemini.script.append(Misbehave(break_after=2))
    stream = _openai(running).chat.completions.create(
        model="gemini-test", messages=[{"role": "user", "content": "one two three four"}], stream=True
    )
    with pytest.raises(openai.APIError) as caught:
        for _ in stream:
            pass
    assert "broke off" in str(caught.value)
    google.gemini.script.append(Misbehave(break_after=2))
    with (
        pytest.raises(anthropic.APIStatusError) as broken,
        _anthropic(running).messages.stream(
            model="gemini-test", max_tokens=10, messages=[{"role": "user", "content": "one two three four"}]
        ) as events,
    ):
        for _ in events:
            pass
    assert "broke off" in str(broken.value)


# -- Vertex AI -------------------------------------------------------------------------------------------------


def test_vertex_fetches_one_token_for_twenty_concurrent_calls(fresh: Running, google: Google) -> None:
    google.tokens.delay = 0.3  # the first callers all wait for the same fetch
    before = google.tokens.fetches

    def ask(number: int) -> str | None:
        reply = _openai(fresh).chat.completions.create(
            model="vertex-test", messages=[{"role": "user", "content": f"call {number}"}]
        )
        return reply.choices[0].message.content

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(ask, range(20)))
    assert answers == [f"echo: call {n}" for n in range(20)]
    assert google.tokens.fetches - before == 1
    seen = [s for s in google.gemini.seen if "/projects/" in s.path][-20:]
    assert {s.path for s in seen} == {
        "/v1/projects/fake-project/locations/europe-west4/publishers/google/models/gemini-2.5-pro:generateContent"
    }
    assert len({s.headers["authorization"] for s in seen}) == 1


def test_vertex_refreshes_a_token_near_its_expiry_without_blocking_the_gateway(fresh: Running, google: Google) -> None:
    google.tokens.expires_in = 302  # fresh for the gateway for 2 seconds (it replaces tokens 300 s early)
    client = _openai(fresh)
    client.chat.completions.create(model="vertex-test", messages=HI)  # type: ignore[arg-type]
    first = google.gemini.seen[-1].headers["authorization"]
    client.chat.completions.create(model="vertex-test", messages=HI)  # type: ignore[arg-type]
    assert google.gemini.seen[-1].headers["authorization"] == first
    time.sleep(2.2)
    google.tokens.delay = 2.0
    before = google.tokens.fetches

    def listed() -> float:
        started = time.monotonic()
        httpx2.get(fresh.v1 + "/models", headers={"Authorization": f"Bearer {fresh.key}"}, timeout=10)
        return time.monotonic() - started

    with ThreadPoolExecutor(2) as pool:
        call = pool.submit(client.chat.completions.create, model="vertex-test", messages=HI)
        time.sleep(0.3)  # the token fetch is under way, in a worker thread
        assert pool.submit(listed).result() < 1.0  # the event loop is free meanwhile
        call.result()
    assert google.tokens.fetches - before == 1
    assert google.gemini.seen[-1].headers["authorization"] not in (first, "")


def _vertex_text(client: openai.OpenAI, stream: bool) -> str:
    if stream:
        chunks = client.chat.completions.create(model="vertex-test", messages=HI, stream=True)  # type: ignore[arg-type]
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    return client.chat.completions.create(model="vertex-test", messages=HI).choices[0].message.content or ""  # type: ignore[arg-type]


@pytest.mark.parametrize("stream", [False, True])
def test_vertex_replaces_a_revoked_token_and_retries_the_call_once(
    fresh: Running, google: Google, caplog: pytest.LogCaptureFixture, stream: bool
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_gateway.models")
    client = _openai(fresh)
    assert _vertex_text(client, False) == "echo: hi"
    first = google.gemini.seen[-1].headers["authorization"]
    fetches, seen = google.tokens.fetches, len(google.gemini.seen)
    google.tokens.revoke()  # still fresh by the gateway's clock; Vertex answers 401 for it
    assert _vertex_text(client, stream) == "echo: hi"
    # The refused token was dropped: one new token, and the same deployment asked again with it.
    assert google.tokens.fetches - fetches == 1
    tried = [s.headers["authorization"] for s in google.gemini.seen[seen:]]
    assert len(tried) == 2 and tried[0] == first and tried[1] != first
    lines = [r.getMessage() for r in caplog.records if r.name == "mcp_gateway.models"]
    assert "status=401" in lines[-2] and "retries=0" in lines[-2]
    assert "status=200" in lines[-1] and "retries=1" in lines[-1]


def test_vertex_a_late_401_for_an_old_token_keeps_the_new_one(fresh: Running, google: Google) -> None:
    _vertex_text(_openai(fresh), False)
    google.tokens.revoke()
    fetches, seen = google.tokens.fetches, len(google.gemini.seen)
    google.gemini.script.append(Misbehave(delay=1.0))  # the slow call's 401 comes after the other's retry
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(_vertex_text, _openai(fresh), False)
        deadline = time.monotonic() + 5
        while len(google.gemini.seen) == seen and time.monotonic() < deadline:
            time.sleep(0.01)  # its request, with the old token, is in
        assert _vertex_text(_openai(fresh), False) == "echo: hi"  # refused, a new token, served
        assert slow.result() == "echo: hi"
    # The late 401 named the old token: the new one stays, and serves the slow call's retry.
    assert google.tokens.fetches - fetches == 1
    tried = [s.headers["authorization"] for s in google.gemini.seen[seen:]]
    assert len(tried) == 4 and len(set(tried)) == 2


@pytest.mark.parametrize("stream", [False, True])
def test_vertex_refusing_every_token_gives_the_client_one_401(fresh: Running, google: Google, stream: bool) -> None:
    _vertex_text(_openai(fresh), False)
    fetches, seen = google.tokens.fetches, len(google.gemini.seen)
    google.gemini.refuse_tokens = True
    try:
        with pytest.raises(openai.AuthenticationError) as caught:
            _vertex_text(_openai(fresh), stream)
    finally:
        google.gemini.refuse_tokens = False
    # Once more with a new token, then the 401 is the client's: no loop.
    assert len(google.gemini.seen) - seen == 2 and google.tokens.fetches - fetches == 1
    second = google.gemini.seen[-1].headers["authorization"].removeprefix("Bearer ")
    # Vertex's message, with the token it quotes scrubbed.
    assert "Request had invalid authentication credentials: Bearer [REDACTED]" in caught.value.message
    assert second not in caught.value.message


def test_vertex_token_failure_is_a_clear_error(fresh: Running, google: Google) -> None:
    fresh.gateway.vault.put("vertex-sa", json.dumps({**google.tokens.service_account(), "client_email": "x@y"}))
    anyio.run(fresh.gateway.refresh_credentials)
    with pytest.raises(openai.APIStatusError) as caught:
        _openai(fresh).chat.completions.create(model="vertex-test", messages=HI)  # type: ignore[arg-type]
    assert caught.value.status_code == 502
    assert "no access token for the service account" in caught.value.message
    fresh.gateway.vault.put("vertex-sa", "{not json")
    anyio.run(fresh.gateway.refresh_credentials)
    with pytest.raises(openai.APIStatusError) as broken:
        _openai(fresh).chat.completions.create(model="vertex-test", messages=HI)  # type: ignore[arg-type]
    assert "service_account: the secret is not a JSON service account key" in broken.value.message


def test_keys_tokens_and_the_private_key_never_reach_a_response_or_a_log(
    fresh: Running, google: Google, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    account = google.tokens.service_account()
    body_of_key = "".join(line for line in account["private_key"].splitlines() if "-----" not in line)
    client = _openai(fresh)
    client.chat.completions.create(model="vertex-test", messages=HI)  # type: ignore[arg-type]
    token = google.gemini.seen[-1].headers["authorization"].removeprefix("Bearer ")
    # A provider that quotes the credentials it got (and the private key) in an error.
    leaks = {
        "vertex-test": f"token {token} key {account['private_key']} one line {body_of_key}",
        "gemini-test": f"api key {GEMINI_KEY}",
    }
    answers = []
    for model, leak in leaks.items():
        for stream in (False, True):
            google.gemini.script.append(
                Misbehave(status=400, body={"error": {"code": 400, "message": leak, "status": "INVALID_ARGUMENT"}})
            )
            answers.append(
                httpx2.post(
                    fresh.v1 + "/chat/completions",
                    json={"model": model, "messages": HI, "stream": stream},
                    headers={"Authorization": f"Bearer {fresh.key}"},
                ).text
            )
    # A wrong AI Studio key, echoed by the provider.
    fresh.gateway.vault.put("gemini-key", "AIzaSy-wrong-key-echoed-1234567")
    anyio.run(fresh.gateway.refresh_credentials)
    for stream in (False, True):
        refused = _anthropic(fresh).messages.with_raw_response
        with pytest.raises(anthropic.APIStatusError) as caught:
            refused.create(model="gemini-test", max_tokens=5, messages=HI, stream=stream)  # type: ignore[arg-type,call-overload]
        answers.append(json.dumps(caught.value.body))
    assert all("[REDACTED]" in a for a in answers) and "API key not valid" in answers[-1]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for text in (*answers, logged):
        for secret in (token, account["private_key"], body_of_key, GEMINI_KEY, "AIzaSy-wrong-key-echoed-1234567"):
            assert secret not in text


def test_models_test_probes_gemini_and_vertex_deployments(fresh: Running, google: Google) -> None:
    from mcp_gateway.llm.probe import probe_deployment

    async def probe(name: str) -> Any:
        model = fresh.gateway.models.find(name)
        assert model is not None
        return await probe_deployment(model, model.deployments[0], fresh.gateway.vault.resolve, "test")

    import anyio

    for name, path in (
        ("gemini-test", "gemini-2.5-flash:generateContent"),
        ("vertex-test", "gemini-2.5-pro:generateContent"),
    ):
        result = anyio.run(probe, name)
        assert result.ok and result.status == 200, result
        seen = google.gemini.seen[-1]
        assert seen.path.endswith(path) and seen.body["generationConfig"] == {"maxOutputTokens": 1}
