"""Budget alerts: when an account's spend reaches a threshold (50, 80, 100% of its cap by
default), a log line and, with `budgets.alerts.webhook_url`, a signed webhook POST.

Each threshold of each account fires once per period (the backend decides, atomically: across
replicas with Redis; after a restart, thresholds the ledger's spend had reached count as sent).
`crossed` only logs and queues; a background task delivers, never on a call's path, retrying
with exponential backoff. The body is JSON; `X-Signature: sha256=<hex>` is the HMAC-SHA256 of
the exact body bytes under `webhook_secret` (from the vault), so a receiver can check both who
sent it and that it is whole. `id` is the same for every delivery of one alert: a receiver that
saw it already can drop the repeat.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections import deque
from collections.abc import Callable

import anyio
import anyio.to_thread
import httpx2

from mcp_gateway.config.budgets import AlertsConfig
from mcp_gateway.metering.budgets import Balance, decimal_text, moment

logger = logging.getLogger("mcp_gateway.budgets")

MAX_QUEUED = 10_000
PARALLEL = 8  # deliveries at once
RETRY_STATUSES = frozenset((408, 425, 429))  # and every 5xx


def signature(secret: str, body: bytes) -> str:
    """The `X-Signature` value of `body`: `sha256=` and the hex HMAC-SHA256 under `secret`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def alert_body(balance: Balance, percent: int, now: float | None = None) -> bytes:
    """The JSON an alert is POSTed as."""
    account = balance.account
    budget = account.budget
    data = {
        "type": "budget.threshold",
        "id": f"{account.key}:{percent}",
        "budget": budget.name,
        "scope": budget.scope,
        "subject": account.value,
        "period": budget.period,
        "period_start": moment(account.start) if account.end else None,
        "period_end": moment(account.end) if account.end else None,
        "threshold_percent": percent,
        "cap_usd": decimal_text(budget.cap),
        "spent_usd": decimal_text(balance.spent),
        "at": moment(int(time.time() if now is None else now)),
    }
    return json.dumps(data, separators=(",", ":")).encode()


class Alerts:
    """The Alerter of the budgets: a log line per alert, and webhook deliveries in the background."""

    def __init__(self, config: AlertsConfig, resolve: Callable[[str], str], user_agent: str = "mcp-gateway") -> None:
        self.config = config
        self.resolve = resolve  # blocking: reads the vault
        self.user_agent = user_agent
        self.delivered = 0
        self.given_up = 0
        self.dropped = 0
        self._queue: deque[bytes] = deque()
        self._wake = anyio.Event()

    @property
    def pending(self) -> int:
        """Alerts waiting to be delivered."""
        return len(self._queue)

    def crossed(self, balance: Balance, percent: int) -> None:
        """An account's spend reached `percent` of its cap: log it, queue its webhook. Returns at once."""
        account = balance.account
        budget = account.budget
        logger.warning(
            "budget alert: budget %r (%s for %s) reached %d%%: USD %s spent%s",
            budget.name, budget.describe(), account.whose(), percent, decimal_text(balance.spent),
            f"; the period ends at {moment(account.end)}" if account.end else "",
        )  # fmt: skip
        if self.config.webhook_url is None:
            return
        if len(self._queue) >= MAX_QUEUED:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(alert_body(balance, percent))
        self._wake.set()

    async def run(self) -> None:
        """Deliver queued alerts until cancelled (several at once, each with its retries)."""
        if self.config.webhook_url is None:
            return
        slots = anyio.Semaphore(PARALLEL)
        async with (
            httpx2.AsyncClient(
                timeout=self.config.timeout, follow_redirects=False, headers={"User-Agent": self.user_agent}
            ) as client,
            anyio.create_task_group() as tg,
        ):
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                while self._queue:
                    await slots.acquire()
                    tg.start_soon(self._deliver, client, self._queue.popleft(), slots)

    async def _deliver(self, client: httpx2.AsyncClient, body: bytes, slots: anyio.Semaphore) -> None:
        url = self.config.webhook_url
        assert url is not None
        try:
            wait = self.config.backoff_seconds
            why = ""
            for attempt in range(self.config.attempts):
                if attempt:
                    await anyio.sleep(wait)
                    wait *= 2
                headers = {"Content-Type": "application/json"}
                if self.config.webhook_secret:
                    try:  # read each time: a rotated secret is used from the next delivery on
                        secret = await anyio.to_thread.run_sync(self.resolve, self.config.webhook_secret)
                    except Exception as exc:
                        why = f"its secret cannot be read ({exc})"
                        continue
                    headers["X-Signature"] = signature(secret, body)
                try:
                    response = await client.post(url, content=body, headers=headers)
                except httpx2.HTTPError as exc:
                    why = f"{type(exc).__name__}"
                    continue
                if 200 <= response.status_code < 300:
                    self.delivered += 1
                    return
                why = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code not in RETRY_STATUSES:
                    break  # the receiver refuses it: asking again will not help
            self.given_up += 1
            logger.error("budget alert: the webhook did not take an alert (%s); given up", why)
        finally:
            slots.release()
