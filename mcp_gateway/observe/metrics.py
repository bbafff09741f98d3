"""Prometheus metrics: one more meter for call records, an observer of the core's events, and
the `/metrics` exposition.

Label values come only from the catalog and the config (API, tool, model, provider, deployment,
limit and budget names) or from small fixed sets (status classes, token types, error kinds): a
caller cannot create a series. A tool call reaches the pipeline only for a served tool, a model
call is recorded only for a configured model. Consumers become a label only when
`metrics.consumer_labels` is on.

With `serve --workers N`, `PROMETHEUS_MULTIPROC_DIR` is set by the parent before the workers
start (observe/multiprocess.py): every worker writes its values there and `/metrics`, in
whichever worker answers, sums them with prometheus-client's MultiProcessCollector.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import anyio
import anyio.to_thread
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.requests import Request
from starlette.responses import Response

from mcp_gateway.metering.hooks import Observer, Refuser, Why
from mcp_gateway.metering.records import CallRecord

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SAMPLE_SECONDS = 1.0  # how often gauges read from the process (the ledger's backlog) are refreshed
# Model calls take seconds to minutes; the default buckets stop at 10 s.
LLM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
TOKEN_TYPES = ("input", "output", "cache_read", "cache_write", "reasoning")


def multiprocess_dir() -> str | None:
    """The shared directory of `--workers N`, or None in a single process."""
    return os.environ.get(MULTIPROC_ENV) or None


def status_class(status: int) -> str:
    """`2xx`..`5xx` for an upstream's HTTP status; `none` when the call never got an answer."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "none"


def upstream_error(record: CallRecord) -> str | None:
    """The kind of upstream failure a record shows (a transport failure's kind, `http_429`,
    `http_5xx`), or None when the upstream answered without one."""
    if record.error_kind is not None:
        return record.error_kind
    if record.status == 429:
        return "http_429"
    if record.status >= 500:
        return "http_5xx"
    return None


class PrometheusMeter(Observer):
    """Counters and histograms of every call record (a `Meter`), of refusals, retries, fallbacks
    and budget spend (an `Observer`), and of the HTTP front doors (observe/requests.py)."""

    def __init__(self, *, consumer_labels: bool = False, registry: CollectorRegistry | None = None) -> None:
        self.consumer_labels = consumer_labels
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._samplers: list[tuple[Gauge, Callable[[], float]]] = []
        who = ("consumer",) if consumer_labels else ()
        r = self.registry

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
            return Counter(name, doc, labels, namespace="mcp_gateway", registry=r)

        def histogram(name: str, doc: str, labels: tuple[str, ...], buckets: Any = Histogram.DEFAULT_BUCKETS) -> Any:
            return Histogram(name, doc, labels, namespace="mcp_gateway", registry=r, buckets=buckets)

        self.requests = counter("http_requests", "HTTP requests by front door (mcp, llm, admin, other)",
                                ("door", "method", "status"))  # fmt: skip
        self.request_seconds = histogram("http_request_duration_seconds", "HTTP request time by front door",
                                         ("door",), LLM_BUCKETS)  # fmt: skip
        self.tool_calls = counter("tool_calls", "Tool calls by API, tool and upstream status class",
                                  ("api", "tool", "status", *who))  # fmt: skip
        self.tool_seconds = histogram("tool_call_duration_seconds", "Tool call time by API", ("api",))
        self.tool_cost = counter("tool_cost_usd", "What tool calls cost, USD, by API", ("api",))
        self.llm_calls = counter("llm_calls", "Model calls (each attempt) by model, provider and status class",
                                 ("model", "provider", "status", *who))  # fmt: skip
        self.llm_seconds = histogram("llm_call_duration_seconds", "Model call time (a stream: to its end)",
                                     ("model", "provider"), LLM_BUCKETS)  # fmt: skip
        self.ttft = histogram("llm_time_to_first_token_seconds", "Time to the provider's first byte",
                              ("model", "provider"), TTFT_BUCKETS)  # fmt: skip
        self.tokens = counter("llm_tokens", "Tokens by model and type", ("model", "provider", "type"))
        self.llm_cost = counter("llm_cost_usd", "What model calls cost, USD", ("model", "provider"))
        self.upstream_errors = counter("upstream_errors", "Failed upstream and provider requests by kind",
                                       ("door", "kind"))  # fmt: skip
        self.retries = counter("llm_retries", "Model call attempts made again, by the error's kind",
                               ("model", "reason"))  # fmt: skip
        self.fallbacks = counter("llm_fallbacks", "Model calls sent on to a fallback model", ("model", "to"))
        self.refusals = counter("refusals", "Calls refused by a rate limit or a budget",
                                ("by", "why", "rule", "kind"))  # fmt: skip
        self.budget_spent = counter("budget_spent_usd", "Spend settled on each budget, USD", ("budget", "scope"))
        self.ledger_queue = Gauge("ledger_queue_depth", "Call records waiting to be written to the ledger",
                                  namespace="mcp_gateway", registry=r, multiprocess_mode="livesum")  # fmt: skip
        # Label lookups cost a lock and a dict each: the children of a label set are kept here.
        self._tool_children: dict[tuple[str, ...], tuple[Any, Any]] = {}
        self._llm_children: dict[tuple[str, ...], tuple[Any, ...]] = {}

    # -- Meter ------------------------------------------------------------------------------

    def record(self, record: CallRecord) -> None:
        """Count one call record (returns at once: memory, or an mmap'd file with workers)."""
        if record.kind == "tool":
            self._tool(record)
        else:
            self._model(record)
        kind = upstream_error(record)
        if kind is not None:
            self.upstream_errors.labels("mcp" if record.kind == "tool" else "llm", kind).inc()

    def _tool(self, record: CallRecord) -> None:
        api = record.api or ""
        key: tuple[str, ...] = (api, record.tool or "", status_class(record.status))
        if self.consumer_labels:
            key += (record.consumer or "",)
        children = self._tool_children.get(key)
        if children is None:
            children = self._tool_children[key] = (self.tool_calls.labels(*key), self.tool_seconds.labels(api))
        calls, seconds = children
        calls.inc()
        seconds.observe(record.latency_ms / 1000)
        if record.cost:
            self.tool_cost.labels(api).inc(float(record.cost))

    def _model(self, record: CallRecord) -> None:
        model, provider = record.model or "", record.provider or ""
        key: tuple[str, ...] = (model, provider, status_class(record.status))
        if self.consumer_labels:
            key += (record.consumer or "",)
        children = self._llm_children.get(key)
        if children is None:
            children = self._llm_children[key] = (
                self.llm_calls.labels(*key),
                self.llm_seconds.labels(model, provider),
                self.ttft.labels(model, provider),
                *(self.tokens.labels(model, provider, kind) for kind in TOKEN_TYPES),
            )
        calls, seconds, ttft, *tokens = children
        calls.inc()
        seconds.observe(record.latency_ms / 1000)
        if record.ttft_ms is not None:
            ttft.observe(record.ttft_ms / 1000)
        u = record.usage
        for child, count in zip(tokens, (u.input, u.output, u.cache_read, u.cache_write, u.reasoning), strict=True):
            if count:
                child.inc(count)
        if record.cost:
            self.llm_cost.labels(model, provider).inc(float(record.cost))

    # -- Observer ---------------------------------------------------------------------------

    def refused(self, by: Refuser, why: Why, rule: str, kind: str) -> None:
        self.refusals.labels(by, why, rule, kind).inc()

    def spent(self, budget: str, scope: str, usd: Decimal) -> None:
        self.budget_spent.labels(budget, scope).inc(float(usd))

    def retried(self, model: str, reason: str) -> None:
        self.retries.labels(model, reason).inc()

    def fell_back(self, model: str, to: str) -> None:
        self.fallbacks.labels(model, to).inc()

    # -- gauges and exposition ---------------------------------------------------------------

    def sample_from(self, gauge: Gauge, read: Callable[[], float]) -> None:
        """Keep `gauge` at what `read` says: at each scrape, and every SAMPLE_SECONDS (`run`) so that
        other workers' values are fresh when one of them answers `/metrics`."""
        self._samplers.append((gauge, read))

    def sample(self) -> None:
        """Read every sampled gauge now."""
        for gauge, read in self._samplers:
            gauge.set(read())

    async def run(self) -> None:
        """Refresh the sampled gauges until cancelled (only needed with workers)."""
        if multiprocess_dir() is None:
            return
        while True:
            self.sample()
            await anyio.sleep(SAMPLE_SECONDS)

    def exposition(self) -> bytes:
        """The Prometheus text format: this process's registry, or every worker's values summed."""
        self.sample()
        shared = multiprocess_dir()
        if shared is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=shared)
        return generate_latest(registry)

    async def endpoint(self, request: Request) -> Response:
        """`GET /metrics`."""
        if multiprocess_dir() is None:
            body = self.exposition()
        else:  # reads one file per worker and metric type
            body = await anyio.to_thread.run_sync(self.exposition)
        return Response(body, media_type=CONTENT_TYPE_LATEST)
