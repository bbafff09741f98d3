"""An OpenAI client (chat completions, embeddings) served by a Gemini deployment (AI Studio or Vertex AI).

The request: system and developer messages become `systemInstruction` (hoisted, in order);
user turns `user` and assistant turns `model` contents; tool messages `functionResponse` parts
(`{"output": <text>}`), named after the call they answer; images (base64 `data:` URLs, or gs://
and Files API URIs), audio (`input_audio`) and files (`file_data`) become media parts. Tools
become `functionDeclarations` with the JSON Schema as it is, `tool_choice` Gemini's function
calling mode (`auto`/`none`/`required`/a function/`allowed_tools` -> AUTO/NONE/ANY/ANY with
`allowedFunctionNames`); a `strict` tool asks for validated calls (mode VALIDATED). `stop` is
`stopSequences`, `n` `candidateCount`, `max_completion_tokens` (or `max_tokens`)
`maxOutputTokens`; `temperature`, `top_p`, `top_k` (an extra field), `seed`, `presence_penalty`
and `frequency_penalty` keep their meaning. `response_format` `json_object` is
`responseMimeType: application/json`, `json_schema` adds `responseJsonSchema`.
`reasoning_effort` is a thinking budget or level with thoughts included. A tool call's thought
signature travels as Google's own OpenAI compatibility carries it,
`extra_content.google.thought_signature`, and is sent back with the call. `user` and
`safety_identifier` identify the end user to OpenAI; Gemini has no such field and they change
nothing in the answer, so they are accepted and not sent.

The answer: one choice per candidate: text, thoughts as `reasoning_content`, function calls as
tool calls; finish reasons and usage (thinking tokens as reasoning tokens) in OpenAI's terms;
a prompt Gemini blocked is a `content_filter` finish with no content. Embeddings go to
`batchEmbedContents` (`dimensions` as `outputDimensionality`), floats or base64 as asked.
"""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from mcp_gateway.config.models import ModelConfig
from mcp_gateway.llm import sse
from mcp_gateway.llm.translate import gemini_wire as gw
from mcp_gateway.llm.translate.fields import (
    OPENAI_ONLY,
    Fields,
    as_dict,
    as_int,
    as_list,
    as_str,
    items,
    malformed,
)
from mcp_gateway.llm.translate.mappings import openai_usage, unreadable
from mcp_gateway.llm.translate.openai_chunks import ChatChunks
from mcp_gateway.llm.translate.openai_request import (
    function_tools,
    image_url,
    include_usage,
    openai_messages,
    tool_calls,
)
from mcp_gateway.llm.translate.relay import MALFORMED, relay, stream_error
from mcp_gateway.llm.usage import Usage, estimate_tokens, from_gemini

TARGET = gw.TARGET
_CHOICE_MODES = {"auto": None, "none": "NONE", "required": "ANY"}


class OpenAIToGemini:
    """OpenAI `chat` and `embeddings` requests to Gemini, and the answers back."""

    def operation(self, client_operation: str) -> str | None:
        """Chat completions are served by generateContent, embeddings by batchEmbedContents."""
        return {"chat": "generate", "embeddings": "batch_embed"}.get(client_operation)

    def request(
        self, operation: str, body: dict[str, Any], model: ModelConfig, provider_model: str, stream: bool
    ) -> dict[str, Any]:
        """The Gemini body for an OpenAI chat completions (or embeddings) body."""
        fields = Fields(body, model, TARGET)
        fields.pop("model")
        if operation == "embeddings":
            return _embed_request(fields, provider_model)
        fields.pop("stream")
        out: dict[str, Any] = {}
        system, contents = _contents(fields.pop("messages"), fields)
        out["contents"] = contents
        if system:
            out["systemInstruction"] = {"parts": system}
        options = fields.pop("stream_options")
        if options is not None:
            fields.unknown_keys(
                as_dict(options, "stream_options"), ("include_usage", "include_obfuscation"), "stream_options"
            )
        _tools(fields, out)
        config = _generation(fields, provider_model)
        if config:
            out["generationConfig"] = config
        for name in ("user", "safety_identifier"):
            if (value := fields.pop(name)) is not None:
                as_str(value, name)  # an end-user id: Gemini has none, and it changes nothing
        fields.neutral("service_tier", "auto", "default")
        fields.neutral("logprobs", False)
        fields.neutral("top_logprobs", 0)
        fields.neutral("logit_bias", {})
        fields.neutral("store", False)
        fields.neutral("metadata", {})
        fields.neutral("modalities", ["text"])
        fields.absent(*OPENAI_ONLY)
        fields.finish()
        return out

    def response(
        self, operation: str, body: dict[str, Any], asked: str, client_body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The OpenAI chat completion (or embeddings list) for a Gemini answer."""
        try:
            if operation == "embeddings":
                return _embeddings(body, asked, client_body)
            return _completion(body, asked)
        except MALFORMED as exc:
            raise unreadable(exc) from None

    def stream(
        self, operation: str, events: AsyncIterator[sse.Event], asked: str, client_body: Mapping[str, Any]
    ) -> AsyncIterator[bytes]:
        """OpenAI chat completion chunks for Gemini's SSE chunks."""
        return relay(events, _Chunks(asked, include_usage(client_body)), "openai")


# -- the request ------------------------------------------------------------------------------------


def _contents(messages: Any, fields: Fields) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(systemInstruction parts, contents)."""
    system: list[dict[str, Any]] = []
    contents = gw.Contents()
    for path, role, message in openai_messages(messages, fields):
        content = message.get("content")
        if role in ("system", "developer"):
            system += _parts(content, f"{path}.content", fields, media=False)
        elif role == "user":
            contents.add("user", _parts(content, f"{path}.content", fields, media=True))
        elif role == "tool":
            call_id = as_str(message.get("tool_call_id"), f"{path}.tool_call_id")
            output = "".join(p["text"] for p in _parts(content, f"{path}.content", fields, media=False))
            contents.add("user", [contents.answer(call_id, f"{path}.tool_call_id", output)])
        else:
            contents.add("model", _assistant(message, path, fields, contents))
    return system, contents.finish()


def _parts(content: Any, path: str, fields: Fields, *, media: bool) -> list[dict[str, Any]]:
    """A string or content parts -> text parts, and media parts where `media`."""
    if isinstance(content, str):
        return [{"text": content}]
    if content is None:
        return []
    parts: list[dict[str, Any]] = []
    for where, part in items(content, path):
        kind = part.get("type")
        found: dict[str, Any] | None = None
        if kind == "text":
            fields.unknown_keys(part, ("type", "text"), where)
            found = {"text": as_str(part.get("text"), f"{where}.text")}
        elif kind == "image_url" and media:
            found = _image(part, where, fields)
        elif kind == "input_audio" and media:
            found = _audio(part, where, fields)
        elif kind == "file" and media:
            found = _file(part, where, fields)
        else:
            fields.refuse(where, f"{TARGET} takes {'text and media' if media else 'text only'} here, not {kind!r}")
        if found is not None:
            parts.append(found)
    return parts


def _image(part: dict[str, Any], path: str, fields: Fields) -> dict[str, Any] | None:
    return gw.media_part(image_url(part, path, fields), f"{path}.image_url.url", fields)


def _audio(part: dict[str, Any], path: str, fields: Fields) -> dict[str, Any] | None:
    fields.unknown_keys(part, ("type", "input_audio"), path)
    audio = as_dict(part.get("input_audio"), f"{path}.input_audio")
    fields.unknown_keys(audio, ("data", "format"), f"{path}.input_audio")
    form = audio.get("format")
    if form not in gw.AUDIO_TYPES:
        raise malformed(f"{path}.input_audio.format", "wav or mp3")
    data = as_str(audio.get("data"), f"{path}.input_audio.data")
    return {"inlineData": {"mimeType": gw.AUDIO_TYPES[form], "data": data}}


def _file(part: dict[str, Any], path: str, fields: Fields) -> dict[str, Any] | None:
    fields.unknown_keys(part, ("type", "file"), path)
    file = as_dict(part.get("file"), f"{path}.file")
    fields.unknown_keys(file, ("file_data", "filename", "file_id"), f"{path}.file")
    if file.get("file_data") is None:
        fields.refuse(f"{path}.file.file_id", f"{TARGET} cannot read OpenAI's uploaded files: send file_data")
        return None
    return gw.media_part(as_str(file["file_data"], f"{path}.file.file_data"), f"{path}.file.file_data", fields, "file")


def _assistant(message: dict[str, Any], path: str, fields: Fields, contents: gw.Contents) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    content = message.get("content")
    if isinstance(content, str):
        if content:
            parts.append({"text": content})
    elif content is not None:
        for where, part in items(content, f"{path}.content"):
            if part.get("type") == "refusal":
                parts.append({"text": as_str(part.get("refusal"), f"{where}.refusal")})
            elif part.get("type") == "text":
                fields.unknown_keys(part, ("type", "text"), where)
                parts.append({"text": as_str(part.get("text"), f"{where}.text")})
            else:
                fields.refuse(where, f"a model turn in {TARGET} holds text, not {part.get('type')!r}")
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        parts.append({"text": message["refusal"]})
    for where, call, name, args in tool_calls(message, path, fields):
        parts.append(contents.call(as_str(call.get("id"), f"{where}.id"), name, args, _signature(call, where)))
    return parts


def _signature(call: dict[str, Any], path: str) -> str | None:
    """The thought signature of a tool call, as Google's OpenAI compatibility carries it."""
    extra = call.get("extra_content")
    if extra is None:
        return None
    google = as_dict(as_dict(extra, f"{path}.extra_content").get("google") or {}, f"{path}.extra_content.google")
    signature = google.get("thought_signature")
    return as_str(signature, f"{path}.extra_content.google.thought_signature") if signature is not None else None


def _tools(fields: Fields, out: dict[str, Any]) -> None:
    tools = fields.pop("tools")
    choice = fields.pop("tool_choice")
    parallel = fields.pop("parallel_tool_calls")
    declarations = []
    strict = False
    for path, _tool, function, name in function_tools(tools, fields):
        declarations.append(gw.declaration(name, function.get("description"), function.get("parameters"), path))
        strict = strict or function.get("strict") is True
    if declarations:
        out["tools"] = [{"functionDeclarations": declarations}]
    mode, names = ("VALIDATED" if strict else None), None
    if choice is not None:
        if isinstance(choice, str) and choice in _CHOICE_MODES:
            mode = _CHOICE_MODES[choice] or mode
        elif isinstance(choice, dict) and choice.get("type") == "function":
            function = as_dict(choice.get("function"), "tool_choice.function")
            mode, names = "ANY", [as_str(function.get("name"), "tool_choice.function.name")]
        elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
            allowed = as_dict(choice.get("allowed_tools"), "tool_choice.allowed_tools")
            names = []
            for where, tool in items(allowed.get("tools"), "tool_choice.allowed_tools.tools"):
                names.append(as_str(as_dict(tool.get("function"), f"{where}.function").get("name"), f"{where}.name"))
            # Gemini limits the functions called only in its ANY and VALIDATED modes.
            mode = "ANY" if allowed.get("mode") == "required" else "VALIDATED"
        elif isinstance(choice, dict | str):
            fields.refuse("tool_choice", f"{TARGET} takes auto, none, required or functions, not {choice!r}")
        else:
            raise malformed("tool_choice", "a string or an object")
    if parallel is False and declarations:
        fields.refuse("parallel_tool_calls", f"{TARGET} has no way to keep the model to one call at a time")
    elif parallel not in (None, True, False):
        raise malformed("parallel_tool_calls", "a boolean")
    if declarations and (config := gw.tool_config(mode, names)) is not None:
        out["toolConfig"] = config


def _generation(fields: Fields, provider_model: str) -> dict[str, Any]:
    """generationConfig: sampling, limits, stop sequences, candidates, JSON output, thinking."""
    config: dict[str, Any] = {}
    for name, key in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if (value := fields.pop(name)) is not None:
            config[key] = value
    limit, legacy = fields.pop("max_completion_tokens"), fields.pop("max_tokens")
    if limit is not None:
        config["maxOutputTokens"] = as_int(limit, "max_completion_tokens")
    elif legacy is not None:
        config["maxOutputTokens"] = as_int(legacy, "max_tokens")
    if (stop := fields.pop("stop")) is not None:
        config["stopSequences"] = [stop] if isinstance(stop, str) else as_list(stop, "stop")
    if (n := fields.pop("n")) is not None and as_int(n, "n") != 1:
        config["candidateCount"] = n
    form = fields.pop("response_format")
    if form is not None:
        form = as_dict(form, "response_format")
        kind = form.get("type")
        if kind == "json_schema":
            spec = as_dict(form.get("json_schema"), "response_format.json_schema")
            fields.unknown_keys(spec, ("name", "description", "schema", "strict"), "response_format.json_schema")
            config["responseMimeType"] = "application/json"
            config["responseJsonSchema"] = as_dict(spec.get("schema"), "response_format.json_schema.schema")
        elif kind == "json_object":
            config["responseMimeType"] = "application/json"
        elif kind != "text":
            raise malformed("response_format.type", "text, json_object or json_schema")
    if (effort := fields.pop("reasoning_effort")) is not None:
        if not isinstance(effort, str) or (effort != "none" and effort not in gw.THINKING_BUDGET):
            raise malformed("reasoning_effort", f"one of {gw.efforts()}")
        config["thinkingConfig"] = gw.thinking_for_effort(effort, provider_model)
    return config


def _embed_request(fields: Fields, provider_model: str) -> dict[str, Any]:
    raw = fields.pop("input")
    texts = [raw] if isinstance(raw, str) else as_list(raw, "input")
    if not texts or not all(isinstance(t, str) for t in texts):
        fields.refuse("input", f"{TARGET} embeds text (a string or strings), not token arrays")
    dimensions = fields.pop("dimensions")
    form = fields.pop("encoding_format")
    if form not in (None, "float", "base64"):
        raise malformed("encoding_format", "float or base64")
    if (user := fields.pop("user")) is not None:
        as_str(user, "user")  # an end-user id: Gemini has none, and it changes nothing
    fields.finish()
    model = "models/" + provider_model.removeprefix("models/")
    requests = []
    for text in texts if all(isinstance(t, str) for t in texts) else ():
        request: dict[str, Any] = {"model": model, "content": {"parts": [{"text": text}]}}
        if dimensions is not None:
            request["outputDimensionality"] = as_int(dimensions, "dimensions")
        requests.append(request)
    return {"requests": requests}


# -- the answer -------------------------------------------------------------------------------------


def _call(piece: gw.Piece, index: int | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {} if index is None else {"index": index}
    call |= {
        "id": piece.id,
        "type": "function",
        "function": {"name": piece.name, "arguments": json.dumps(piece.args, ensure_ascii=False)},
    }
    if piece.signature:
        call["extra_content"] = {"google": {"thought_signature": piece.signature}}
    return call


def _completion(body: dict[str, Any], asked: str) -> dict[str, Any]:
    """The OpenAI chat completion for a generateContent answer (KeyError and the like when malformed)."""
    choices = []
    for number, candidate in enumerate(body.get("candidates") or ()):
        text: list[str] = []
        reasoning: list[str] = []
        calls: list[dict[str, Any]] = []
        for piece in gw.pieces(candidate):
            if piece.kind == "call":
                calls.append(_call(piece))
            elif piece.kind == "thought":
                reasoning.append(piece.text)
            else:
                text.append(piece.text)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text else None, "refusal": None}
        if calls:
            message["tool_calls"] = calls
        if reasoning:
            message["reasoning_content"] = "".join(reasoning)
        finish = gw.finish_reason(candidate.get("finishReason") or "STOP", bool(calls))
        choices.append(
            {"index": candidate.get("index", number), "message": message, "finish_reason": finish, "logprobs": None}
        )
    if not choices:  # the prompt was blocked (or nothing came back): no content, and why
        finish = "content_filter" if gw.blocked(body) else "stop"
        empty = {"role": "assistant", "content": None, "refusal": None}
        choices.append({"index": 0, "message": empty, "finish_reason": finish, "logprobs": None})
    return {
        "id": gw.response_id(body, "chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": asked,
        "choices": choices,
        "usage": openai_usage(from_gemini(body.get("usageMetadata")) or Usage()),
        "system_fingerprint": None,
    }


def _embeddings(body: dict[str, Any], asked: str, client_body: Mapping[str, Any]) -> dict[str, Any]:
    vectors = [e["values"] for e in body["embeddings"]]
    base64_wanted = client_body.get("encoding_format") == "base64"
    data = []
    for index, values in enumerate(vectors):
        encoded: Any = values
        if base64_wanted:  # little-endian float32, as OpenAI encodes them
            encoded = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    # Gemini reports no tokens for embeddings: the count is the gateway's estimate, as its meter's.
    raw = client_body.get("input")
    texts = [raw] if isinstance(raw, str) else list(raw or ())
    tokens = sum(estimate_tokens(len(t)) for t in texts if isinstance(t, str))
    return {"object": "list", "model": asked, "data": data, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


# -- the stream --------------------------------------------------------------------------------------


class _Chunks(ChatChunks):
    """Gemini SSE chunks in, OpenAI chat completion chunks out, for one stream."""

    def __init__(self, asked: str, include_usage: bool) -> None:
        super().__init__(asked, include_usage)
        self.started: set[int] = set()  # candidates whose first chunk went out
        self.calls: dict[int, int] = {}  # candidate -> tool calls so far
        self.finished = False

    def feed(self, data: dict[str, Any]) -> list[bytes]:
        """The chunks for one Gemini chunk (its usage is a running total: the last one counts)."""
        if isinstance(data.get("error"), dict):
            self.done = True
            return [stream_error("openai", str(data["error"].get("message") or "the provider's stream failed"))]
        if self.id == "chatcmpl-gateway":
            self.id = gw.response_id(data, "chatcmpl-")
        self.usage = from_gemini(data.get("usageMetadata")) or self.usage
        out: list[bytes] = []
        if gw.blocked(data):
            self.finished = True
            return [self.chunk({"role": "assistant", "content": None}, "content_filter")]
        for number, candidate in enumerate(data.get("candidates") or ()):
            index = candidate.get("index", number)
            if index not in self.started:
                self.started.add(index)
                out.append(self.chunk({"role": "assistant", "content": ""}, index=index))
            for piece in gw.pieces(candidate):
                if piece.kind == "call":
                    number_of_call = self.calls.get(index, 0)
                    self.calls[index] = number_of_call + 1
                    out.append(self.chunk({"tool_calls": [_call(piece, number_of_call)]}, index=index))
                elif piece.kind == "thought" and piece.text:
                    out.append(self.chunk({"reasoning_content": piece.text}, index=index))
                elif piece.text:
                    out.append(self.chunk({"content": piece.text}, index=index))
            if (reason := candidate.get("finishReason")) is not None:
                self.finished = True
                out.append(self.chunk({}, gw.finish_reason(reason, bool(self.calls.get(index))), index))
        return out

    def close(self, marked: bool) -> list[bytes] | None:
        """Gemini's stream simply ends after the chunk that finishes: then the usage chunk (when
        asked for) and `[DONE]`. A stream that ends before any finish is incomplete."""
        if not self.finished:
            return None
        return self.ending()
