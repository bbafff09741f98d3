"""Which APIs are served: from the config file and from run-time registrations.

Ingest is CPU work and may fetch URLs, so it runs in a worker thread; the
catalog is only touched on the event loop. A spec that fails to load is
reported (file and JSON pointer) and skipped; every other API keeps serving.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import anyio.to_thread

from mcp_gateway.catalog import ApiEntry, Catalog, Origin
from mcp_gateway.config import ApiConfig, registration_secret_problems
from mcp_gateway.definitions import SpecError
from mcp_gateway.openapi.tools import IngestResult, ingest_api
from mcp_gateway.store.registrations import RegistrationStore

logger = logging.getLogger(__name__)


class RegistrationError(Exception):
    """A registration that was refused (conflict with the config file, bad spec)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class LoadFailure:
    """An API that is configured or registered but could not be served."""

    api: str
    error: str
    attempts: int = 1
    retry_at: float = 0.0  # monotonic time of the next attempt (config-file APIs)


# A config-file API that failed to load (a spec URL that was down at start, a file being fixed) is
# tried again: after 10 s, then twice as long each time, at most every 5 minutes.
RETRY_FIRST = 10.0
RETRY_MAX = 300.0


async def ingest_in_thread(config: ApiConfig, spec_text: str | None = None) -> IngestResult:
    """Ingest off the event loop."""
    return await anyio.to_thread.run_sync(lambda: ingest_api(config, text=spec_text))


class Registry:
    """Keeps the catalog in line with the config file and the registration store."""

    def __init__(self, catalog: Catalog, store: RegistrationStore | None, config_apis: list[ApiConfig]) -> None:
        self.catalog = catalog
        self.store = store
        self.config_apis = {api.name: api for api in config_apis}
        self.failures: dict[str, LoadFailure] = {}
        self._store_revision = -1
        self._seen: dict[str, float] = {}  # registered API name -> updated_at we serve

    async def _entry(
        self, config: ApiConfig, origin: Origin, rank: tuple[int, float], spec_text: str | None = None
    ) -> ApiEntry | None:
        try:
            result = await ingest_in_thread(config, spec_text)
        except SpecError as exc:
            previous = self.failures.get(config.name)
            attempts = previous.attempts + 1 if previous is not None else 1
            delay = min(RETRY_MAX, RETRY_FIRST * 2 ** (attempts - 1))
            self.failures[config.name] = LoadFailure(config.name, str(exc), attempts, time.monotonic() + delay)
            if origin == "config":
                logger.error("API %s not served: %s (trying again in %.0f s)", config.name, exc, delay)
            else:
                logger.error("API %s not served: %s", config.name, exc)
            return None
        self.failures.pop(config.name, None)
        for issue in result.issues:
            logger.warning("API %s: %s", config.name, issue)
        logger.info("API %s: %d tools from %s", config.name, len(result.tools), result.source)
        return ApiEntry(config, result, origin, rank)

    @property
    def config_failures(self) -> list[LoadFailure]:
        """Config-file APIs that are not served because they failed to load."""
        return [f for name, f in sorted(self.failures.items()) if name in self.config_apis]

    async def retry_failed(self) -> bool:
        """Try again the config-file APIs whose retry time has come. True if one is now served."""
        now = time.monotonic()
        served = False
        for failure in self.config_failures:
            if failure.retry_at > now:
                continue
            config = self.config_apis[failure.api]
            index = list(self.config_apis).index(failure.api)
            entry = await self._entry(config, "config", (0, float(index)))
            if entry is not None:
                await self.catalog.put(entry)
                served = True
        return served

    async def load_all(self) -> None:
        """Ingest every configured and registered API and serve them as one change."""
        entries: list[ApiEntry] = []
        for index, config in enumerate(self.config_apis.values()):
            entry = await self._entry(config, "config", (0, float(index)))
            if entry is not None:
                entries.append(entry)
        if self.store is not None:
            self._store_revision = await anyio.to_thread.run_sync(self.store.revision)
            for reg in await anyio.to_thread.run_sync(self.store.list):
                if reg.config.name in self.config_apis:
                    logger.warning("registered API %s is shadowed by the config file", reg.config.name)
                    continue
                self._seen[reg.config.name] = reg.updated_at
                entry = await self._entry(reg.config, "registered", (1, reg.created_at), reg.spec_text)
                if entry is not None:
                    entries.append(entry)
        await self.catalog.replace_all(entries)

    async def register(
        self, config: ApiConfig, spec_text: str | None = None, *, replace: bool = True
    ) -> tuple[ApiEntry, bool]:
        """Ingest, persist and serve an API; returns the entry and whether it replaced one.
        With `replace=False` an existing registration of that name is a 409, not replaced."""
        if config.name in self.config_apis:
            raise RegistrationError(f"API {config.name!r} is defined in the config file; change it there", 409)
        if not replace and config.name in self.catalog.snapshot.apis:
            raise RegistrationError(
                f"an API named {config.name!r} is already registered: PUT /admin/apis/{config.name} replaces it", 409
            )
        problems = registration_secret_problems(config)
        if problems:
            raise RegistrationError("; ".join(problems))
        try:
            result = await ingest_in_thread(config, spec_text)
        except SpecError as exc:
            raise RegistrationError(str(exc)) from None
        replaced = config.name in self.catalog.snapshot.apis
        created_at = time.time()
        if self.store is not None:
            await anyio.to_thread.run_sync(lambda: self.store.put(config, spec_text))  # type: ignore[union-attr]
            reg = await anyio.to_thread.run_sync(lambda: self.store.get(config.name))  # type: ignore[union-attr]
            if reg is not None:
                self._seen[config.name] = reg.updated_at
                created_at = reg.created_at
        entry = ApiEntry(config, result, "registered", (1, created_at))
        self.failures.pop(config.name, None)
        await self.catalog.put(entry)
        return entry, replaced

    async def unregister(self, name: str) -> bool:
        """Stop serving a registered API and forget it."""
        if name in self.config_apis:
            raise RegistrationError(f"API {name!r} is defined in the config file; remove it there", 409)
        stored = False
        if self.store is not None:
            stored = await anyio.to_thread.run_sync(lambda: self.store.delete(name))  # type: ignore[union-attr]
        self._seen.pop(name, None)
        self.failures.pop(name, None)
        removed = await self.catalog.remove(name)
        return stored or removed is not None

    async def refresh(self) -> bool:
        """Apply registrations changed by other processes (CLI, replicas). True if anything changed."""
        if self.store is None:
            return False
        revision = await anyio.to_thread.run_sync(self.store.revision)
        if revision == self._store_revision:
            return False
        self._store_revision = revision
        regs = {r.config.name: r for r in await anyio.to_thread.run_sync(self.store.list)}
        changed = False
        for name in list(self._seen):
            if name not in regs:
                self._seen.pop(name)
                await self.catalog.remove(name)
                changed = True
        for name, reg in regs.items():
            if name in self.config_apis or self._seen.get(name) == reg.updated_at:
                continue
            self._seen[name] = reg.updated_at
            entry = await self._entry(reg.config, "registered", (1, reg.created_at), reg.spec_text)
            if entry is not None:
                await self.catalog.put(entry)
                changed = True
        return changed
