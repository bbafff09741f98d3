"""Which models are served: from the config file, from run-time registrations, else from the
environment's provider keys.

- Config-file models come first, in file order; registered ones follow, oldest first (a request
  is served by an exact name, else by the first glob that matches). A registered model with the
  name of a config-file model is shadowed: the config file wins, as for APIs.
- The environment's models (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`) are the one-command start's:
  they are served only while neither the config file nor the store has a model. Registering the
  first model replaces them; removing the last registered one brings them back.
- Registered deployments name their keys as vault references (`secret:NAME`) only, and carry no
  credential in `headers`: the store is not encrypted, and `env:` would let whoever holds the
  admin token send the gateway's environment (its master key among it) to a URL of their choosing.
  The config file may use both, as for APIs.

Running gateways apply changes made by another process (the CLI, a replica) within one store
poll (`refresh`); the router keeps the health and connections of deployments that did not change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import anyio.to_thread

from mcp_gateway.config.base import PLAIN_HIDDEN, SECRET_REF
from mcp_gateway.config.models import ModelConfig
from mcp_gateway.llm.router import ModelRouter
from mcp_gateway.store.models import ModelRegistration, ModelStore

logger = logging.getLogger(__name__)

Origin = Literal["config", "registered", "environment"]
# Header names that carry credentials: refused in registrations, hidden when shown.
_CREDENTIAL_HEADER_WORDS = ("authorization", "key", "token", "secret", "cookie", "password")


class ModelRegistrationError(Exception):
    """A registration that was refused; `status` is the HTTP status the admin API answers with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def _credential_header(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _CREDENTIAL_HEADER_WORDS)


def registration_problems(model: ModelConfig) -> list[str]:
    """Why a run-time registration is refused: secrets must be vault references, headers free of
    credentials (see the module's docstring)."""
    problems: list[str] = []
    for index, deployment in enumerate(model.deployments):
        where = f"deployments[{index}]"
        for name in deployment.SECRET_FIELDS:
            value = getattr(deployment, name)
            if isinstance(value, str) and not value.startswith("secret:"):
                problems.append(f"{where}.{name} must be a vault reference (secret:NAME) in a registration")
        for header in deployment.headers:
            if _credential_header(header):
                problems.append(
                    f"{where}.headers.{header} looks like a credential: the store keeps headers in plain text; "
                    "put the provider's key in api_key as secret:NAME"
                )
    return problems


def public_model(model: ModelConfig) -> dict[str, Any]:
    """A model's config as JSON for display (admin API, CLI): references (`secret:NAME`, `env:NAME`)
    as they are, since they reveal nothing; plain-text keys and credential headers hidden."""
    data = model.model_dump(mode="json", exclude_defaults=True)
    for deployment, shown in zip(model.deployments, data["deployments"], strict=True):
        for name in deployment.SECRET_FIELDS:
            value = getattr(deployment, name)
            if isinstance(value, str) and not SECRET_REF.match(value):
                shown[name] = PLAIN_HIDDEN
        for header in deployment.headers:
            if _credential_header(header):
                shown["headers"][header] = PLAIN_HIDDEN
    return data


@dataclass(frozen=True, slots=True)
class ServedModel:
    """A model the router serves, where it comes from, and (registered) when it was registered."""

    config: ModelConfig
    origin: Origin
    created_at: float | None = None
    updated_at: float | None = None


class ModelRegistry:
    """Keeps the router's models in line with the config file, the store and the environment."""

    def __init__(
        self,
        router: ModelRouter,
        store: ModelStore | None,
        config_models: list[ModelConfig],
        environment: list[ModelConfig],
    ) -> None:
        self.router = router
        self.store = store
        self.config_models = {m.name: m for m in config_models}
        self.environment = environment
        self.served: dict[str, ServedModel] = {}
        self.shadowed: list[str] = []  # registered names the config file also defines
        self._revision = -1
        # One reload at a time: a poll that read the store before an admin write must not apply
        # its older view after the write's.
        self._reloading = anyio.Lock()

    async def load(self) -> None:
        """Read the store and serve what it says (at start)."""
        await self._reload()

    async def refresh(self) -> bool:
        """Apply registrations changed by other processes; True if the served models changed."""
        if self.store is None:
            return False
        if await anyio.to_thread.run_sync(self.store.revision) == self._revision:
            return False
        return await self._reload()

    async def _reload(self) -> bool:
        async with self._reloading:
            registrations: list[ModelRegistration] = []
            if self.store is not None:
                store = self.store

                def read() -> tuple[int, list[ModelRegistration]]:
                    # The revision first: a write after it is seen at the next poll.
                    return store.revision(), store.list()

                self._revision, registrations = await anyio.to_thread.run_sync(read)
            return await self._serve(registrations)

    async def _serve(self, registrations: list[ModelRegistration]) -> bool:
        served = {name: ServedModel(m, "config") for name, m in self.config_models.items()}
        shadowed = []
        for reg in registrations:
            if reg.config.name in served:
                shadowed.append(reg.config.name)
                continue
            served[reg.config.name] = ServedModel(reg.config, "registered", reg.created_at, reg.updated_at)
        if not served:
            served = {m.name: ServedModel(m, "environment") for m in self.environment}
        for name in sorted(set(shadowed) - set(self.shadowed)):
            logger.warning("registered model %s is shadowed by the config file", name)
        was_environment = any(s.origin == "environment" for s in self.served.values())
        is_environment = any(s.origin == "environment" for s in served.values())
        if is_environment and not was_environment:
            logger.info(
                "models from the environment: %s",
                ", ".join(f"{m.name} -> {m.deployments[0].provider} ({(m.deployments[0].api_key or '')[4:]})"
                          for m in self.environment),
            )  # fmt: skip
        elif was_environment and not is_environment:
            logger.info("models are registered now: the environment's provider keys serve none any more")
        self.served, self.shadowed = served, shadowed
        changed = self.router.update(s.config for s in served.values())
        await self.router.sweep()
        if changed:
            logger.info("serving %d models: %s", len(served), ", ".join(served) or "none")
        return changed

    async def register(self, config: ModelConfig, *, replace: bool) -> bool:
        """Persist and serve a model; True when it replaced one. Without `replace`, a name already
        registered is refused (409)."""
        if config.name in self.config_models:
            raise ModelRegistrationError(f"model {config.name!r} is defined in the config file; change it there", 409)
        problems = registration_problems(config)
        if problems:
            raise ModelRegistrationError("; ".join(problems))
        if self.store is None:
            raise ModelRegistrationError("this gateway has no store to register models in", 501)
        store = self.store

        def write() -> bool | None:
            if not replace and store.get(config.name) is not None:
                return None
            return store.put(config)

        replaced = await anyio.to_thread.run_sync(write)
        if replaced is None:
            raise ModelRegistrationError(
                f"a model named {config.name!r} is already registered: PUT /admin/models/{config.name} replaces it",
                409,
            )
        await self._reload()
        return replaced

    async def unregister(self, name: str) -> ModelRegistration | None:
        """Stop serving a registered model and forget it; returns what was removed."""
        if name in self.config_models:
            raise ModelRegistrationError(f"model {name!r} is defined in the config file; remove it there", 409)
        if self.store is None:
            return None
        gone = await anyio.to_thread.run_sync(self.store.delete, name)
        if gone is not None:
            await self._reload()
        return gone
