"""`models test`: one minimal request to each deployment of a model, straight to its provider.

A 1-token chat completion (OpenAI and compatible servers, Azure), message (Anthropic),
generateContent (Gemini, Vertex AI) or Converse call (Bedrock, signed as a real call is), with
the deployment's own provider class, URL and key from the vault: what a real call would send,
minus routing, retries and fallbacks. It says whether the provider answers, with which HTTP
status or failure, and how fast. Run by the CLI (from the machine it runs on) and by a gateway
(`POST /admin/models/{name}/test`, from the gateway's host). The probe's providers are its own,
closed at once: it does not count in the router's health.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import anyio
import anyio.to_thread

from mcp_gateway.config.models import DeploymentConfig, ModelConfig
from mcp_gateway.llm.providers import Provider, Resolve, build_provider
from mcp_gateway.upstream.client import UpstreamError
from mcp_gateway.upstream.scrub import scrubber

PROBE_TIMEOUT = 30.0
MAX_ANSWER_BYTES = 64 * 1024
MAX_MESSAGE_CHARS = 300
_PROMPT = [{"role": "user", "content": "ping"}]
# The probe's request, per format.
_OPERATIONS = {"openai": "chat", "anthropic": "messages", "gemini": "generate", "bedrock": "converse"}


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """How one deployment answered the probe."""

    model: str
    deployment: str  # its label: `name`, else provider/model
    provider: str
    ok: bool
    status: int | None = None  # the provider's HTTP status, when it answered
    failure: str | None = None  # why not ok: `http` (see status), connect-refused, dns, read-timeout..., setup, skipped
    latency_ms: float | None = None
    message: str | None = None  # the provider's error message (its keys scrubbed), or why it was skipped

    def public(self) -> dict[str, Any]:
        """As JSON (admin API, `models test --json`)."""
        return asdict(self)


async def probe_model(
    model: ModelConfig, resolve: Resolve, user_agent: str, *, ask: str | None = None, timeout: float = PROBE_TIMEOUT
) -> list[ProbeResult]:
    """Probe every deployment of `model`, at once. `ask`: the model name to ask a glob model for."""
    results: list[ProbeResult | None] = [None] * len(model.deployments)

    async def one(index: int, deployment: DeploymentConfig) -> None:
        results[index] = await probe_deployment(model, deployment, resolve, user_agent, ask=ask, timeout=timeout)

    async with anyio.create_task_group() as tg:
        for index, deployment in enumerate(model.deployments):
            tg.start_soon(one, index, deployment)
    return [r for r in results if r is not None]


async def probe_deployment(
    model: ModelConfig,
    deployment: DeploymentConfig,
    resolve: Resolve,
    user_agent: str,
    *,
    ask: str | None = None,
    timeout: float = PROBE_TIMEOUT,
) -> ProbeResult:
    """Send one 1-token request to `deployment` and say how it went."""
    asked = ask or model.name
    label = deployment.label(asked)
    result = {"model": model.name, "deployment": label, "provider": deployment.provider}
    if model.is_glob and ask is None and deployment.model in (None, "*"):
        why = f"{model.name} is a glob and this deployment takes the model id from the request: name a model to ask for"
        return ProbeResult(**result, ok=False, failure="skipped", message=why)
    # The probe waits no longer than `timeout`, whatever the deployment allows a real call.
    bounded = deployment.model_copy(
        update={
            "timeout": min(timeout, deployment.timeout),
            "first_byte_timeout": min(timeout, deployment.first_byte_timeout),
            "connect_timeout": min(timeout, deployment.connect_timeout),
            "max_connections": 1,
        }
    )
    try:
        provider = await anyio.to_thread.run_sync(build_provider, bounded, resolve, user_agent)
    except Exception as exc:  # a missing secret, say: named, never a value
        return ProbeResult(**result, ok=False, failure="setup", message=f"cannot be set up: {exc}")
    clean = scrubber(provider.secrets)
    if not provider.supports(_OPERATIONS.get(provider.wire, "")):
        await provider.aclose()
        why = f"the probe speaks {' and '.join(_OPERATIONS)}; this deployment speaks {provider.wire}"
        return ProbeResult(**result, ok=False, failure="skipped", message=why)
    try:
        started = time.perf_counter()
        status, answer = await _send(provider, deployment.model_for(asked))
        latency = round((time.perf_counter() - started) * 1000, 1)
    except UpstreamError as exc:
        return ProbeResult(**result, ok=False, failure=exc.kind, message=clean.text(str(exc)))
    finally:
        await provider.aclose()
    if 200 <= status < 300:
        return ProbeResult(**result, ok=True, status=status, latency_ms=latency)
    message = clean.text(_message(answer))[:MAX_MESSAGE_CHARS]  # cut after scrubbing: no key half left
    return ProbeResult(**result, ok=False, status=status, failure="http", latency_ms=latency, message=message)


def _request(wire: str, model: str) -> tuple[str, dict[str, Any]]:
    """The probe's operation and body in a provider's format: one output token at most."""
    text = _PROMPT[0]["content"]
    if wire == "bedrock":
        return "converse", {
            "messages": [{"role": "user", "content": [{"text": text}]}],
            "inferenceConfig": {"maxTokens": 1},
        }
    if wire == "gemini":
        return "generate", {"contents": [{"role": "user", "parts": [{"text": text}]}],
                            "generationConfig": {"maxOutputTokens": 1}}  # fmt: skip
    if wire == "anthropic":
        return "messages", {"model": model, "max_tokens": 1, "messages": _PROMPT}
    return "chat", {"model": model, "max_tokens": 1, "messages": _PROMPT}


async def _send(provider: Provider, model: str) -> tuple[int, bytes]:
    operation, body = _request(provider.wire, model)
    status, answer = await _post(provider, operation, model, body)
    if provider.wire == "openai" and status == 400 and b"max_completion_tokens" in answer:
        # OpenAI's reasoning models refuse max_tokens and say what they take instead.
        body = {"model": model, "max_completion_tokens": 1, "messages": _PROMPT}
        return await _post(provider, operation, model, body)
    return status, answer


async def _post(provider: Provider, operation: str, model: str, body: dict[str, Any]) -> tuple[int, bytes]:
    request = provider.request(operation, model, json.dumps(body).encode(), False, {})
    response = await provider.send(request)
    return response.status, await response.read(MAX_ANSWER_BYTES)


def _message(answer: bytes) -> str:
    """The error message in a provider's answer (OpenAI's, Anthropic's or AWS's shape), else its start."""
    try:
        data = json.loads(answer)
    except ValueError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        text = error["message"]
    elif isinstance(data, dict) and isinstance(data.get("message"), str):  # AWS
        text = data["message"]
    else:
        text = answer.decode("utf-8", errors="replace").strip() or "(no message)"
    return text
