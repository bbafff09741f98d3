"""Wiring: one `Gateway` holds the catalog, registry, pipeline and MCP server.

The front doors (stdio, HTTP) are built from it; nothing below imports it.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route

from mcp_gateway.auth.connections import Connections, OAuthApp
from mcp_gateway.auth.introspection import Introspector
from mcp_gateway.auth.jwt import JwtVerifier
from mcp_gateway.auth.outbound import user_oauth_app, warn_plain_secrets
from mcp_gateway.auth.service import AccessControl
from mcp_gateway.catalog import Catalog
from mcp_gateway.config import ConfigError, GatewayConfig
from mcp_gateway.config.models import models_from_environment
from mcp_gateway.drift.monitor import DriftMonitor
from mcp_gateway.heap import HeapKeeper
from mcp_gateway.llm.call import ModelCaller
from mcp_gateway.llm.registrations import ModelRegistry
from mcp_gateway.llm.router import ModelRouter
from mcp_gateway.metering import Meter, Meters
from mcp_gateway.metering.alerts import Alerts
from mcp_gateway.metering.budgets import LedgerSpend, budgets_for
from mcp_gateway.metering.costs import ToolCosts
from mcp_gateway.metering.hooks import NOBODY, Observer
from mcp_gateway.metering.ledger import Ledger
from mcp_gateway.metering.limits import limiter_for
from mcp_gateway.observe.access_log import AccessLog
from mcp_gateway.observe.metrics import PrometheusMeter
from mcp_gateway.observe.requests import RequestMetrics
from mcp_gateway.observe.trace_context import TraceHeaders, current_trace_id, tracing_on
from mcp_gateway.pipeline import Stage, compose
from mcp_gateway.pipeline.invoke import UpstreamPool
from mcp_gateway.pipeline.stages import budget_calls, limit_calls, meter_calls, price_calls, validate_arguments
from mcp_gateway.registry import Registry
from mcp_gateway.server.admin import admin_guard
from mcp_gateway.server.admin_budgets import budget_routes, limit_usage_routes
from mcp_gateway.server.admin_models import model_routes
from mcp_gateway.server.admin_rules import rule_routes
from mcp_gateway.server.admin_usage import usage_routes
from mcp_gateway.server.connect import connect_routes
from mcp_gateway.server.http import create_app
from mcp_gateway.server.llm import ModelDoors
from mcp_gateway.server.mcp import GatewayMCP
from mcp_gateway.server.views import CatalogView
from mcp_gateway.store.connections import ConnectionStore
from mcp_gateway.store.database import Database
from mcp_gateway.store.drift import DriftStore
from mcp_gateway.store.identities import IdentityStore
from mcp_gateway.store.ledger import LedgerStore
from mcp_gateway.store.logouts import LogoutStore
from mcp_gateway.store.models import ModelStore
from mcp_gateway.store.registrations import RegistrationStore
from mcp_gateway.store.rules import R, RuleStore, budget_store, limit_store
from mcp_gateway.ui import Services, console_routes
from mcp_gateway.vault import Vault

if TYPE_CHECKING:
    from mcp_gateway.observe.traces import Traces

logger = logging.getLogger(__name__)

LEDGER_UPKEEP_SECONDS = 300.0  # rollups and pruning; an hour is rolled 2 hours after it ends
STORE_POLL_SECONDS = 2.0


def _import_lazy_dependencies() -> None:
    """Import here, on the starting thread, what worker threads would otherwise import on first
    use: openapi-core (drift checks) and genai-prices (model prices). Two threads importing
    overlapping packages at once can deadlock on Python's per-module import locks, which Python
    breaks by handing one of them a partially initialized module (an ImportError, seen now and
    then under load). CLI commands that never serve do not pay for these imports."""
    import genai_prices  # noqa: F401

    import mcp_gateway.drift.check
    import mcp_gateway.openapi.documents  # noqa: F401


class Gateway:
    """Everything one gateway process serves."""

    def __init__(self, config: GatewayConfig, *, own_process: bool = False) -> None:
        """`own_process`: this gateway is what the process is for (`serve`, `stdio`, a worker), so it
        may tune the process-wide garbage collector (see heap.py)."""
        self.config = config
        self.catalog = Catalog()
        self.db = Database(config.database)
        self.store = RegistrationStore(self.db)
        self.identities = IdentityStore(self.db)
        # Upstream credentials (and the introspection client's secret) are sealed in the vault.
        self.vault = Vault.open(self.db, config.data_dir)
        # Traces: only set up (and the SDK only imported) when switched on, by config or OTEL_* variables.
        self.traces: Traces | None = None
        if tracing_on(config.traces):
            from mcp_gateway.observe.traces import setup_traces

            self.traces = setup_traces(config.traces)
        # With content capture, what is captured is scrubbed of every secret resolved.
        resolve = self.traces.remembering(self.vault.resolve) if self.traces is not None else self.vault.resolve
        # Read before anything reads a secret: a change made any time later is seen at the next poll.
        self._secrets_revision = self.vault.revision()
        jwt = JwtVerifier(config.auth, user_agent=config.user_agent) if config.auth.issuers else None
        introspects = any(i.introspection_endpoint for i in config.auth.issuers)
        introspector = (
            Introspector(config.auth, self.vault.resolve, user_agent=config.user_agent) if introspects else None
        )
        self.access = AccessControl(self.identities, enabled=config.auth.enabled, jwt=jwt, introspector=introspector)
        self.registry = Registry(self.catalog, self.store, config.apis)
        # Upstream credentials: operator secrets and consumers' own tokens, both sealed by the vault.
        self.connections = Connections(ConnectionStore(self.db, self.vault), config.public_url, self._oauth_app)
        for api in config.apis:
            warn_plain_secrets(api)
        # Drift: sampled responses checked against the spec off the hot path; findings in the store.
        self.drift_store = DriftStore(self.db)
        self.drift = DriftMonitor(self.drift_store, self.catalog, self._uploaded_spec)
        self.pool = UpstreamPool(
            user_agent=config.user_agent,
            resolve=resolve,
            user_tokens=self.connections,
            revision=self.vault.revision,
            observer_for=self.drift.observer_for,
            spans=self.traces.upstream_span if self.traces is not None else None,
        )
        self.catalog.subscribe(self.pool.on_change)
        self.catalog.subscribe(self.drift.on_change)
        self.heap = HeapKeeper(own_process)
        self.catalog.subscribe(self.heap.on_change)
        # Models (/v1): the config file's and the registered ones; with neither, those the
        # environment's provider keys serve. Loaded at start, then at each store poll.
        self.models = ModelRouter([], resolve, config.user_agent, revision=self.vault.revision)
        environment = models_from_environment() if config.models_from_env and not config.models else []
        self.model_registry = ModelRegistry(self.models, ModelStore(self.db), config.models, environment)
        self.ledger_store = LedgerStore(self.db)
        self.ledger = Ledger(self.ledger_store, flush_interval=config.metering.flush_seconds)
        # Metrics: one more meter of call records, and the observer of refusals, retries and spend.
        self.metrics: PrometheusMeter | None = None
        if config.metrics.enabled:
            self.metrics = PrometheusMeter(consumer_labels=config.metrics.consumer_labels)
            self.metrics.sample_from(self.metrics.ledger_queue, lambda: self.ledger.pending)
        self.access_log = AccessLog()
        meters: list[Meter] = [self.access_log]
        meters += [self.metrics] if self.metrics is not None else []
        meters += [self.ledger] if config.metering.ledger else []
        self.meter = Meters(*meters)
        self.observer: Observer = self.metrics if self.metrics is not None else NOBODY
        self.model_caller = ModelCaller(self.models, self.meter)
        self.model_caller.observer = self.observer
        self.model_caller.traces = self.traces
        # Rate limits: counted in this process, or in Redis when replicas share them; None without rules.
        # The config file's rules and those added at run time (CLI, admin API), read at each poll.
        # With Redis, limits and budgets share one connection pool, so one outage is seen once.
        link = None
        if config.limits.redis_url:
            from mcp_gateway.metering.redis import RedisLink

            link = RedisLink(config.limits)
        self.limiter = limiter_for(config.limits, link)
        self.limiter.observer = self.observer
        self.limit_store = limit_store(self.db)
        # Budgets: accounts where the limits' counters are, spend rebuilt from the ledger; the config
        # file's and those added at run time, as the limits.
        self.budget_store = budget_store(self.db)
        self.logouts = LogoutStore(self.db)  # the console's ended sessions, shared by replicas
        self._rule_revisions: dict[str, int] = {}
        self.alerts = Alerts(config.budgets.alerts, self.vault.resolve, config.user_agent)
        source = LedgerSpend(self.ledger_store) if config.metering.ledger else None
        self.budgets = budgets_for(config.budgets, config.limits, source, self.alerts, link)
        self.budgets.observer = self.observer
        self.tool_costs = ToolCosts()
        # Limits after validation (a malformed call costs no quota), budgets after limits (a refusal
        # there reserves nothing).
        stages: list[Stage] = [
            *([self.traces.trace_calls] if self.traces is not None else []),
            meter_calls(self.meter, current_trace_id),
            validate_arguments,
            limit_calls(self.limiter),
            budget_calls(self.budgets, self.tool_costs),
            price_calls(self.tool_costs),
        ]
        self.handler = compose(stages, self.pool)
        self.mcp = GatewayMCP(self.catalog, self.handler, config.server, access=self.access)
        # Virtual servers: the same catalog, pipeline and policies, a curated view each.
        self.virtual = {
            v.name: GatewayMCP(
                self.catalog,
                self.handler,
                config.server.model_copy(update={"discovery": v.discovery}),
                access=self.access,
                view=CatalogView(v.name, v.tools),
                name=f"mcp-gateway/{v.name}",
            )
            for v in config.servers
        }
        # A caller's trace context becomes that of its request span (traced: before the SDK's own
        # OpenTelemetry middleware), or of the call record and upstream request (untraced: instead
        # of the SDK's middleware, whose spans would all be no-ops, only reading `_meta` matters).
        for server in (self.mcp, *self.virtual.values()):
            if self.traces is not None:
                server.server.middleware.insert(0, self.traces.middleware())
            else:
                server.server.middleware[:] = [TraceHeaders(from_meta=True)]

    def _uploaded_spec(self, api: str) -> str | None:
        """The spec text of a registered API whose spec was uploaded (blocking)."""
        registration = self.store.get(api)
        return registration.spec_text if registration is not None else None

    def _oauth_app(self, api: str) -> OAuthApp | None:
        """The per-user OAuth app of a served API (blocking: resolves the client secret)."""
        entry = self.catalog.snapshot.apis.get(api)
        if entry is None:
            return None
        ingest = entry.ingest
        return user_oauth_app(
            entry.config, ingest.security_schemes, ingest.base_url, self.vault.resolve, self.config.user_agent
        )

    async def start(self) -> None:
        """Ingest and serve every configured and registered API; load identities and policies."""
        _import_lazy_dependencies()
        await self.access.reload()
        await self.registry.load_all()
        await self.model_registry.load()
        await self._rebuild_budgets()
        await self.refresh_rules()
        await anyio.to_thread.run_sync(self.logouts.load)
        self._warn_unpriced()
        snapshot = self.catalog.snapshot
        logger.info(
            "serving %d tools from %d APIs (access control %s)",
            len(snapshot.tools), len(snapshot.apis), "on" if self.access.enabled else "off",
        )  # fmt: skip
        self.heap.start()

    async def _rebuild_budgets(self) -> None:
        """Counters in this process start from the ledger's spend of the current periods (in Redis
        they outlive the process, and missing ones are rebuilt on first use)."""
        if not self.budgets.active:
            return
        if not self.config.metering.ledger:
            logger.warning("budgets: the ledger is off (metering.ledger: false): spend does not survive a restart")
        elif not self.budgets.backend.remote:
            accounts = await self.budgets.rebuild()
            logger.info("budgets: spend of %d account(s) rebuilt from the ledger", accounts)

    def _warn_unpriced(self) -> None:
        """Budgets, and models no price is known for: say what becomes of their calls."""
        if not self.budgets.active:
            return
        router = self.models
        unpriced = [m.name for m in router.models if not m.is_glob and router.max_cost(m, m.name, 1, 1) is None]
        if unpriced:
            fate = "refused under a budget" if self.config.budgets.unpriced_models == "refuse" else "free under budgets"
            logger.warning(
                "budgets: no price is known for model(s) %s: their calls are %s (set a price on their deployments)",
                ", ".join(unpriced), fate,
            )  # fmt: skip

    def unservable(self) -> str | None:
        """Why this gateway must not run: APIs were configured and none of them could be loaded.
        None when something is served, or when nothing was configured (registrations may follow)."""
        failures = self.registry.config_failures
        if self.catalog.snapshot.apis or not failures or len(failures) < len(self.registry.config_apis):
            return None
        lines = "\n".join(f"  {f.api}: {f.error}" for f in failures)
        return f"no API can be served; every configured API failed to load:\n{lines}"

    async def run_as_local_consumer(self) -> None:
        """stdio: run as `auth.stdio_consumer`, under its policies (required when access control is on)."""
        consumer = self.config.auth.stdio_consumer
        if consumer is not None:
            principal = await self.access.local_principal(consumer)
            for server in (self.mcp, *self.virtual.values()):
                server.local_principal = principal
        elif self.access.enabled:
            raise ConfigError("auth is enabled: set auth.stdio_consumer to the consumer stdio runs as")

    async def background(self) -> None:
        """What runs beside the front doors until cancelled: the store watcher, the ledger's writer
        and the budget alerts' deliveries."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.ledger.run)
            tg.start_soon(self.keep_ledger)
            tg.start_soon(self.watch_store)
            tg.start_soon(self.alerts.run)
            tg.start_soon(self.heap.run)
            if self.metrics is not None:
                tg.start_soon(self.metrics.run)

    async def keep_ledger(self) -> None:
        """Every few minutes, roll finished hours of the ledger into hourly totals and prune raw rows
        past `metering.retention_days` (in small batches, in a worker thread), until cancelled."""
        keep = self.config.metering.retention_days * 86400
        while True:
            try:
                await anyio.to_thread.run_sync(self.ledger_store.rollup, time.time())
                if keep:
                    await anyio.to_thread.run_sync(self.ledger_store.prune, time.time(), keep)
            except Exception:  # a failed round must not end the loop (the database may be restarting)
                logger.exception("rolling up or pruning the ledger failed")
            await anyio.sleep(LEDGER_UPKEEP_SECONDS)

    async def refresh_rules(self) -> None:
        """Apply the rate limits and budgets added at run time, with the config file's, when they changed."""
        limits = await self._changed_rules(self.limit_store, self.config.limits.rules)
        if limits is not None:
            self.limiter.set_rules(limits)
        budgets = await self._changed_rules(self.budget_store, self.config.budgets.rules)
        if budgets is not None:
            await self.budgets.set_rules(budgets)

    async def _changed_rules(self, store: RuleStore[R], configured: list[R]) -> list[R] | None:
        """The config file's rules and `store`'s, when the store changed since the last call; else None."""

        def read() -> tuple[int, list[R]]:
            return store.revision(), [entry.rule for entry in store.list()]  # the revision first

        revision = await anyio.to_thread.run_sync(store.revision)
        if revision == self._rule_revisions.get(store.kind):
            return None
        revision, stored = await anyio.to_thread.run_sync(read)
        rules = list(configured)
        taken = {rule.name for rule in rules}
        for rule in stored:
            if rule.name in taken:  # the CLI and admin API refuse it; a config edit may still cause it
                logger.error("%s %r is in the config file and in the store: the config file's applies",
                             store.kind, rule.name)  # fmt: skip
                continue
            rules.append(rule)
        self._rule_revisions[store.kind] = revision
        return rules

    async def watch_store(self) -> None:
        """Pick up registrations and identity changes made by other processes until cancelled."""
        while True:
            await anyio.sleep(STORE_POLL_SECONDS)
            try:
                await self.registry.retry_failed()
                await self.registry.refresh()
                await self.model_registry.refresh()
                await self.models.sweep()
                await self.access.refresh()
                await self.refresh_credentials()
                await self.refresh_rules()
                await anyio.to_thread.run_sync(self.logouts.load)
            except Exception:  # a bad poll must not end the watcher
                logger.exception("refreshing from the store failed")

    async def refresh_credentials(self) -> None:
        """Secrets changed (here or in another process): rebuild upstreams that read older ones, forget
        the introspection client secrets; drop cached user tokens that changed."""
        revision = await anyio.to_thread.run_sync(self.vault.revision)
        await self.pool.secrets_changed(revision)
        await self.models.secrets_changed(revision)
        if revision != self._secrets_revision:
            self._secrets_revision = revision
            if self.access.introspector is not None:
                self.access.introspector.forget_secrets()
        await self.connections.refresh_cache()

    def http_app(self) -> Starlette:
        """The HTTP front door (`/mcp`, `/healthz`, `/readyz`, `/admin`) of this gateway."""
        return create_app(
            self.mcp,
            self.registry,
            self.config.server,
            admin_token=self.config.admin_token,
            access=self.access,
            on_start=self.start,
            on_stop=self.aclose,
            background=self.background,
            key_grace=self.config.auth.key_rotation_grace_seconds,
            virtual=self.virtual,
            vault=self.vault,
            connections=self.connections,
            drift=self.drift_store,
            extra_routes=[
                *connect_routes(self.connections, self.access.authenticate if self.access.enabled else None),
                *self._admin_routes(),
                *self._metrics_routes(),
                *self._console_routes(),
            ],
            outer=[Middleware(RequestMetrics, meter=self.metrics)] if self.metrics is not None else [],
            front_doors=[
                Middleware(
                    ModelDoors,
                    caller=self.model_caller,
                    access=self.access,
                    max_body=self.config.server.max_model_request_bytes,
                    ledger=self.ledger_store,
                    limiter=self.limiter,
                    budgets=self.budgets,
                    traces=self.traces,
                )
            ],
        )

    def _metrics_routes(self) -> list[Route]:
        """`GET /metrics`: open with `metrics.public`, else behind the admin token (and, like `/admin`,
        not served at all without one: 404)."""
        if self.metrics is None:
            return []
        if self.config.metrics.public:
            return [Route("/metrics", self.metrics.endpoint, methods=["GET"])]
        token = self.config.admin_token
        if not token:
            return []
        return [Route("/metrics", admin_guard(token, self.access)(self.metrics.endpoint), methods=["GET"])]

    def _admin_routes(self) -> list[Route]:
        """`/admin/models`, `/admin/usage`, `/admin/limits` and `/admin/budgets` (with the rest of
        `/admin`, only when an admin token is set)."""
        token = self.config.admin_token
        if not token:
            return []
        guard = admin_guard(token, self.access)
        return [
            *model_routes(self.model_registry, self.vault.resolve, self.config.user_agent, guard),
            *usage_routes(self.ledger_store, guard),
            *limit_usage_routes(self.limiter, guard),
            *rule_routes("/admin/limits", self.limit_store, self.config.limits.rules, guard),
            *rule_routes("/admin/budgets/rules", self.budget_store, self.config.budgets.rules, guard),
            *budget_routes(self.budgets, guard),
        ]

    def _console_routes(self) -> list[BaseRoute]:
        """The web console at `/ui` (only when an admin token is set: it is how operators log in)."""
        token = self.config.admin_token
        if not token:
            return []
        services = Services(
            ledger=self.ledger_store, registry=self.registry, models=self.model_registry, access=self.access,
            budgets=self.budgets, limiter=self.limiter, limit_store=self.limit_store,
            limit_rules=self.config.limits.rules,
            budget_store=self.budget_store, budget_rules=self.config.budgets.rules, logouts=self.logouts,
            key_grace=self.config.auth.key_rotation_grace_seconds,
        )  # fmt: skip
        return console_routes(token, services)

    async def aclose(self) -> None:
        """Close upstream pools, the drift worker, the JWKS client and the store."""
        await self.pool.aclose()
        await self.models.aclose()
        await self.drift.aclose()
        await self.access.aclose()
        await self.limiter.aclose()
        await self.budgets.aclose()
        await self.ledger.flush()  # what the writer had not written yet (a clean stop loses nothing)
        self.access_log.flush()  # and the access lines not yet made
        self.db.close()
