"""Counters in Redis: every replica sharing one Redis enforces one limit, exactly.

A call's check is ONE round trip: a Lua script (EVALSHA; EVAL when Redis has lost its script
cache, e.g. after a restart) that reads every counter of the call, decides, and charges all or
none, atomically (Redis runs one script at a time). Time is Redis's own (`TIME`), so every
replica agrees on where a window starts whatever its clock says.

- A window counter is a hash {s: window start (ms), n: count}; a new window overwrites it, and
  it expires a second after its window ends. Token settlements change `n` only while `s` is
  still the window they were charged in.
- A concurrency counter is a sorted set of call ids scored by their lease's end. Expired
  leases are dropped before counting, so a replica that dies frees its slots within
  `concurrency_lease_seconds`; a live one renews its calls' leases every third of that.

Every key carries the hash tag `{limits}`, so a call's keys share one cluster slot. Each
command is bounded by `redis_timeout`; no retries. After a failure Redis is left alone for
`RETRY_SECONDS` (calls get the failure mode at once, not a timeout each), then tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlparse

import anyio
from redis.asyncio import BlockingConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry

from mcp_gateway.config.limits import LimitsConfig
from mcp_gateway.metering.limits import BackendDown, Counter, CounterUse, Rule, State

logger = logging.getLogger("mcp_gateway.limits")

RETRY_SECONDS = 1.0
MAX_CONNECTIONS = 64

# KEYS: the call's counters. ARGV: call id, lease (ms), then per counter: limit, window (ms; 0 for
# concurrency), amount. Returns {admitted, then per counter: remaining, reset (ms), start (ms), refused}.
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id, lease = ARGV[1], tonumber(ARGV[2])
local used, starts, resets, refused = {}, {}, {}, {}
local admitted = 1
for i = 1, #KEYS do
  local a = 2 + (i - 1) * 3
  local limit, window, amount = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  if window > 0 then
    local start = now - (now % window)
    local found = redis.call('HMGET', KEYS[i], 's', 'n')
    used[i], starts[i], resets[i] = 0, start, start + window - now
    if tonumber(found[1]) == start then used[i] = tonumber(found[2]) or 0 end
  else
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    used[i], starts[i], resets[i] = redis.call('ZCARD', KEYS[i]), 0, 0
  end
  refused[i] = 0
  if used[i] + amount > limit then
    refused[i] = 1
    admitted = 0
  end
end
local out = {admitted}
for i = 1, #KEYS do
  local a = 2 + (i - 1) * 3
  local limit, window, amount = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local charged = 0
  if admitted == 1 then
    charged = amount
    if window == 0 then
      redis.call('ZADD', KEYS[i], now + lease, id)
      redis.call('PEXPIRE', KEYS[i], lease)
    elseif used[i] == 0 then
      redis.call('HSET', KEYS[i], 's', string.format('%d', starts[i]), 'n', amount)
      redis.call('PEXPIRE', KEYS[i], resets[i] + 1000)
    else
      redis.call('HINCRBY', KEYS[i], 'n', amount)
    end
  end
  out[#out + 1] = math.max(0, limit - used[i] - charged)
  out[#out + 1] = resets[i]
  out[#out + 1] = starts[i]
  out[#out + 1] = refused[i]
end
return out
"""

# KEYS: the call's counters. ARGV: call id, then per counter: window start (0: a concurrency
# slot, freed), token delta (settled while the counter is still in that window).
RELEASE = """
local id = ARGV[1]
for i = 1, #KEYS do
  local start, delta = ARGV[2 * i], tonumber(ARGV[2 * i + 1])
  if start == '0' then
    redis.call('ZREM', KEYS[i], id)
  elseif delta ~= 0 and redis.call('HGET', KEYS[i], 's') == start then
    redis.call('HINCRBY', KEYS[i], 'n', delta)
  end
end
return 0
"""

# KEYS: concurrency counters; ARGV: lease (ms), then the call id held in each.
RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', now + lease, ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], lease)
end
return 0
"""


# KEYS: counters to read; ARGV: each one's window (ms; 0 for concurrency). Returns per counter:
# used in its current window (or slots held), ms until the window ends (0 for concurrency).
USAGE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 1, #KEYS do
  local window = tonumber(ARGV[i])
  if window > 0 then
    local start = now - (now % window)
    local found = redis.call('HMGET', KEYS[i], 's', 'n')
    local used = 0
    if tonumber(found[1]) == start then used = tonumber(found[2]) or 0 end
    out[#out + 1] = used
    out[#out + 1] = start + window - now
  else
    out[#out + 1] = redis.call('ZCOUNT', KEYS[i], now, '+inf')
    out[#out + 1] = 0
  end
end
return out
"""
USAGE_BATCH = 500  # counters read per script run (a listing must not block Redis for long)


class Script:
    """A Lua script run by its SHA1 (EVALSHA), loaded again with EVAL when Redis lacks it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # Redis names scripts by their SHA1

    async def __call__(self, client: Redis, keys: Sequence[str], args: Sequence[str | int]) -> object:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)


_ACQUIRE, _RELEASE, _RENEW, _USAGE = Script(ACQUIRE), Script(RELEASE), Script(RENEW), Script(USAGE)


class RedisLink:
    """One Redis, for counters: a connection pool made on first use, each script run bounded in
    time, and a failure turned into BackendDown (its message free of the URL's password), after
    which Redis is left alone for `RETRY_SECONDS`."""

    def __init__(self, config: LimitsConfig) -> None:
        assert config.redis_url is not None
        self.url = config.redis_url
        self.timeout = config.redis_timeout
        self._password = urlparse(self.url).password
        self._client: Redis | None = None
        self._down_until = 0.0

    def _redis(self) -> Redis:
        # Made on first use, on the event loop that serves calls (a pool belongs to one loop).
        if self._client is None:
            pool = BlockingConnectionPool.from_url(
                self.url,
                max_connections=MAX_CONNECTIONS,
                timeout=self.timeout,  # waiting for a free connection
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0),  # a failure goes to the failure mode, not to a retry
            )
            self._client = Redis(connection_pool=pool)
        return self._client

    def _down(self, exc: BaseException) -> BackendDown:
        """Note a failure; the error to raise, its message free of the URL's password."""
        self._down_until = time.monotonic() + RETRY_SECONDS
        text = f"Redis is unreachable ({type(exc).__name__}: {exc})"
        if self._password:
            text = text.replace(self._password, "***")
        return BackendDown(text)

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[str | int]) -> object:
        """Run `script`; BackendDown when Redis cannot be reached in time."""
        if time.monotonic() < self._down_until:
            raise BackendDown("Redis is unreachable (it failed less than a second ago)")
        try:
            with anyio.fail_after(self.timeout * 3):  # connect + command, each bounded; this bounds the rest
                return await script(self._redis(), keys, args)
        except (RedisError, OSError, TimeoutError) as exc:
            if isinstance(exc, RedisConnectionError | OSError):
                await self._renew_connections()
            raise self._down(exc) from None

    async def _renew_connections(self) -> None:
        """A connection failed: the pool's others likely point at the same dead server (a Redis
        restart). Idle ones are closed now and busy ones when released, so each is made anew on
        next use; else every stale one would fail one call after Redis is back, each failure
        pausing Redis for `RETRY_SECONDS` again."""
        if self._client is None:
            return
        pool = self._client.connection_pool
        try:
            with anyio.move_on_after(self.timeout):
                await pool.update_active_connections_for_reconnect()
                await pool.disconnect(inuse_connections=False)
        except (RedisError, OSError):
            pass  # closing a broken socket may fail; it is closed either way

    async def keys(self, prefix: str) -> list[str]:
        """Every key that starts with `prefix`, without it (SCAN: for listings, never on a call's
        path; each command bounded by the timeout). BackendDown when Redis cannot be reached."""
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
        found: list[str] = []
        try:
            async for key in self._redis().scan_iter(match=pattern, count=1000):
                found.append((key.decode() if isinstance(key, bytes) else str(key)).removeprefix(prefix))
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._down(exc) from None
        return found

    async def aclose(self) -> None:
        """Close the connections."""
        if self._client is not None:
            await self._client.aclose()
            await self._client.connection_pool.disconnect()
            self._client = None


class Renewer:
    """A lease renewer: one task, started when a lease is taken and none runs (it ends by itself when
    nothing is held any more), cancelled at close. The limits' concurrency slots and the budgets'
    reservations each have one."""

    def __init__(self, renew: Callable[[], Awaitable[None]]) -> None:
        self._renew = renew
        self._task: asyncio.Task[None] | None = None

    def ensure(self) -> None:
        """Run the renewer unless it runs already."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._renew())

    async def stop(self) -> None:
        """Cancel the renewer and wait for it."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class RedisCounters:
    """Counters in Redis, shared by every replica pointed at it (see the module's docstring)."""

    remote = True

    def __init__(self, config: LimitsConfig, link: RedisLink | None = None) -> None:
        self.link = link or RedisLink(config)
        self.prefix = config.redis_prefix + "{limits}:"
        self.lease_ms = int(config.concurrency_lease_seconds * 1000)
        self._held: dict[str, set[str]] = {}  # call id -> its concurrency keys, renewed while held
        self._renewer = Renewer(self._renew)

    def _key(self, counter: Counter) -> str:
        rule = counter.rule
        # The window is part of the key: a rule renamed from per-minute to concurrent never
        # meets its old counter (another Redis type).
        return f"{self.prefix}{rule.name}:{rule.window or 'c'}:{counter.value}"

    async def acquire(self, counters: Sequence[Counter], amounts: Sequence[int], call_id: str) -> list[State]:
        """One script: check every counter, charge all or none (see Backend.acquire)."""
        keys = [self._key(c) for c in counters]
        args: list[str | int] = [call_id, self.lease_ms]
        for counter, amount in zip(counters, amounts, strict=True):
            args += [counter.rule.limit, counter.rule.window * 1000, amount]
        reply = await self.link.run(_ACQUIRE, keys, args)
        assert isinstance(reply, list)
        states = [
            State(counter, int(reply[1 + 4 * i]), int(reply[2 + 4 * i]) / 1000, int(reply[3 + 4 * i]),
                  bool(reply[4 + 4 * i]))
            for i, counter in enumerate(counters)
        ]  # fmt: skip
        if reply[0] == 1:
            slots = {k for k, c in zip(keys, counters, strict=True) if not c.rule.window}
            if slots:
                self._held[call_id] = slots
                self._renew_soon()
        return states

    async def release(self, states: Sequence[State], deltas: Sequence[int], call_id: str) -> None:
        """One script: free the call's slots, settle its tokens (see Backend.release)."""
        self._held.pop(call_id, None)
        keys, args = [], [call_id]
        for state, delta in zip(states, deltas, strict=True):
            if state.counter.rule.window and not delta:
                continue
            keys.append(self._key(state.counter))
            args += [str(state.start) if state.counter.rule.window else "0", delta]
        if keys:
            await self.link.run(_RELEASE, keys, args)

    def _renew_soon(self) -> None:
        self._renewer.ensure()

    async def _renew(self) -> None:
        """Renew the leases of this process's calls in flight, every third of a lease, while there are any."""
        while self._held:
            await asyncio.sleep(self.lease_ms / 3000)
            pairs = [(key, call_id) for call_id, keys in list(self._held.items()) for key in keys]
            if not pairs:
                continue
            try:
                await self.link.run(_RENEW, [k for k, _ in pairs], [self.lease_ms, *(i for _, i in pairs)])
            except BackendDown as exc:
                logger.warning("limits: could not renew %d concurrency slot(s): %s", len(pairs), exc)

    async def usage(self, rules: Sequence[Rule]) -> list[CounterUse]:
        """See Backend.usage: the counters' keys by SCAN, then their current windows read by a script
        per batch."""
        by_key = {(rule.name, str(rule.window or "c")): rule for rule in rules}
        found: list[tuple[str, Rule, str]] = []
        for key in await self.link.keys(self.prefix):
            name, window, value = [*key.split(":", 2), "", ""][:3]
            rule = by_key.get((name, window))
            if rule is not None:
                found.append((self.prefix + key, rule, value))
        out: list[CounterUse] = []
        for at in range(0, len(found), USAGE_BATCH):
            batch = found[at : at + USAGE_BATCH]
            reply = await self.link.run(_USAGE, [k for k, _, _ in batch], [r.window * 1000 for _, r, _ in batch])
            assert isinstance(reply, list)
            for n, (_, rule, value) in enumerate(batch):
                used, reset = int(reply[2 * n]), int(reply[2 * n + 1])
                if used:
                    out.append(CounterUse(rule, value, used, reset / 1000))
        return out

    async def aclose(self) -> None:
        """Stop renewing; close the connections."""
        await self._renewer.stop()
        await self.link.aclose()
