"""Budget accounts in Redis: every replica sharing one Redis enforces one cap, exactly.

A call's check is ONE round trip: a Lua script that reads every account of the call, decides,
and reserves on all or none, atomically; its settlement is one more. An account is a hash:
spent and reserved, and a flag per alert threshold already sent. Lua numbers are doubles,
exact only up to 2**53, which picodollars pass at USD 9,007: each amount is kept as two
integers, whole microdollars and the picodollars beyond them, and added with a carry.

Reservations are held per replica: an account has one field per replica with calls in flight
(`r:<holder>`, what they reserved), and each replica keeps a lease key alive (set by each
reservation and renewed every third of `limits.concurrency_lease_seconds` while it holds any).
A replica that dies (kill -9, a lost host) stops renewing; once its lease lapses the next script
to read the account drops its reservations, so they do not hold a cap for the rest of the period.

Accounts are created only from the ledger: a call that meets an account Redis does not hold
(a new period; a Redis that was restarted without persistence) is told so by the script,
the gateway sums the account's spend from the ledger, creates it (unless another replica just
did) and checks again. An account expires a day after its period ends; one for `total` never.
The connection, its timeouts and failure handling are the rate limits' (metering/redis.py).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence

from mcp_gateway.config.limits import LimitsConfig
from mcp_gateway.metering.budgets import Account, Balance, Crossed, Missing
from mcp_gateway.metering.limits import BackendDown
from mcp_gateway.metering.redis import RedisLink, Renewer, Script

logger = logging.getLogger("mcp_gateway.budgets")

MICRO = 1_000_000  # picodollars per microdollar: the split of every amount
KEPT_AFTER_END = 86400  # seconds an ended period's accounts stay (for calls that straddled its end)

_LIB = """
local M = 1000000
local function add(ah, al, bh, bl)
  local l = al + bl
  return ah + bh + math.floor(l / M), l % M
end
local function sub0(ah, al, bh, bl)
  local l = al - bl
  local h = ah - bh + math.floor(l / M)
  if h < 0 then return 0, 0 end
  return h, l % M
end
local function less(ah, al, bh, bl)
  return ah < bh or (ah == bh and al < bl)
end
local function int(x)
  return string.format('%d', x)
end
"""

# What the replicas with a live lease hold reserved on an account (dropping the reservations of
# those whose lease lapsed), and what this replica holds on it.
_HELD = """
local function mine(key, me)
  local v = redis.call('HGET', key, 'r:' .. me)
  if not v then return 0, 0 end
  local h, l = string.match(v, '(%d+):(%d+)')
  return tonumber(h), tonumber(l)
end
local function held(key, me, leases)
  local fields = redis.call('HGETALL', key)
  local rh, rl = 0, 0
  for j = 1, #fields, 2 do
    local f = fields[j]
    if string.sub(f, 1, 2) == 'r:' then
      local holder = string.sub(f, 3)
      if holder == me or redis.call('EXISTS', leases .. holder) == 1 then
        local h, l = string.match(fields[j + 1], '(%d+):(%d+)')
        rh, rl = add(rh, rl, tonumber(h), tonumber(l))
      else
        redis.call('HDEL', key, f)
      end
    end
  end
  return rh, rl
end
"""

# KEYS: the call's accounts. ARGV: amount (micro, pico), mode (r: reserve, p: peek), this
# replica's holder id, its lease key and lease (ms), the prefix of lease keys, then per account
# its cap (micro, pico). Returns {status, then per account: spent (micro, pico), reserved
# (micro, pico), refused (or missing)}; status 1 admitted, 0 refused, -1 missing.
RESERVE = (
    _LIB
    + _HELD
    + """
local ah, al, mode = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local me, lease, lease_ms, leases = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local values, out = {}, {1}
local missing = 0
for i = 1, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 'sh', 'sl')
  if not v[1] then
    missing = 1
    values[i] = {0, 0, 0, 0, 1}
  else
    local rh, rl = held(KEYS[i], me, leases)
    values[i] = {tonumber(v[1]), tonumber(v[2]), rh, rl, 0}
  end
end
if missing == 1 then
  out[1] = -1
else
  for i = 1, #KEYS do
    local x = values[i]
    local ch, cl = tonumber(ARGV[6 + 2 * i]), tonumber(ARGV[7 + 2 * i])
    local uh, ul = add(x[1], x[2], x[3], x[4])
    local nh, nl = add(uh, ul, ah, al)
    if less(ch, cl, nh, nl) or not less(uh, ul, ch, cl) then
      x[5] = 1
      out[1] = 0
    end
  end
  if out[1] == 1 and mode == 'r' and (ah > 0 or al > 0) then
    redis.call('SET', lease, 1, 'PX', lease_ms)
    for i = 1, #KEYS do
      local x = values[i]
      x[3], x[4] = add(x[3], x[4], ah, al)
      local mh, ml = mine(KEYS[i], me)
      mh, ml = add(mh, ml, ah, al)
      redis.call('HSET', KEYS[i], 'r:' .. me, int(mh) .. ':' .. int(ml))
    end
  end
end
for i = 1, #KEYS do
  local x = values[i]
  for j = 1, 5 do out[#out + 1] = x[j] end
end
return out
"""
)

# KEYS: the call's accounts. ARGV: reserved (micro, pico), spent (micro, pico), this replica's
# holder id, then per account its alert thresholds: a count, and per threshold (percent, amount
# micro, amount pico). Returns the thresholds reached first: per one, {account index, percent,
# spent micro, pico}.
SETTLE = (
    _LIB
    + _HELD
    + """
local rh0, rl0, sh0, sl0 = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local me = ARGV[5]
local a, out = 6, {}
for i = 1, #KEYS do
  local n = tonumber(ARGV[a])
  a = a + 1
  local v = redis.call('HMGET', KEYS[i], 'sh', 'sl')
  if v[1] then
    local sh, sl = add(tonumber(v[1]), tonumber(v[2]), sh0, sl0)
    local mh, ml = mine(KEYS[i], me)
    mh, ml = sub0(mh, ml, rh0, rl0)
    redis.call('HSET', KEYS[i], 'sh', int(sh), 'sl', int(sl))
    if mh == 0 and ml == 0 then
      redis.call('HDEL', KEYS[i], 'r:' .. me)
    else
      redis.call('HSET', KEYS[i], 'r:' .. me, int(mh) .. ':' .. int(ml))
    end
    for j = 1, n do
      local p, th, tl = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
      if not less(sh, sl, th, tl) and redis.call('HSETNX', KEYS[i], 'a' .. p, 1) == 1 then
        out[#out + 1] = i
        out[#out + 1] = tonumber(p)
        out[#out + 1] = sh
        out[#out + 1] = sl
      end
      a = a + 3
    end
  else
    a = a + 3 * n
  end
end
return out
"""
)

# KEYS: accounts to create. ARGV per account: spent (micro, pico), expiry (epoch ms; 0: none),
# the alert percentages already reached (comma-separated). An account that exists is left alone.
SEED = (
    _LIB
    + """
for i = 1, #KEYS do
  local a = 4 * (i - 1)
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('HSET', KEYS[i], 'sh', ARGV[a + 1], 'sl', ARGV[a + 2])
    for p in string.gmatch(ARGV[a + 4], '[^,]+') do
      redis.call('HSET', KEYS[i], 'a' .. p, 1)
    end
    if ARGV[a + 3] ~= '0' then
      redis.call('PEXPIREAT', KEYS[i], ARGV[a + 3])
    end
  end
end
return 0
"""
)

# KEYS: this replica's lease key. ARGV: the lease (ms).
RENEW = """
redis.call('SET', KEYS[1], 1, 'PX', ARGV[1])
return 0
"""

_RESERVE, _SETTLE, _SEED, _RENEW = Script(RESERVE), Script(SETTLE), Script(SEED), Script(RENEW)


def split(pusd: int) -> tuple[int, int]:
    """Picodollars as (whole microdollars, picodollars beyond them)."""
    return divmod(pusd, MICRO)


class RedisSpend:
    """Budget accounts in Redis, shared by every replica pointed at it (see the module's docstring)."""

    remote = True

    def __init__(self, config: LimitsConfig, link: RedisLink | None = None) -> None:
        self.link = link or RedisLink(config)
        self.prefix = config.redis_prefix + "{budgets}:"
        self.holder = secrets.token_hex(8)  # this process, in the accounts' reservation fields
        self.leases = config.redis_prefix + "{budgets}lease:"  # the same hash tag, outside the accounts' prefix
        self.lease_ms = int(config.concurrency_lease_seconds * 1000)
        self._holding = 0  # reservations in flight: the lease is renewed while there are any
        self._renewer = Renewer(self._renew)

    def _keys(self, accounts: Sequence[Account]) -> list[str]:
        return [self.prefix + a.key for a in accounts]

    async def _run(self, accounts: Sequence[Account], amount: int, mode: str) -> list[Balance]:
        args: list[str | int] = [*split(amount), mode, self.holder, self.leases + self.holder, self.lease_ms]
        args.append(self.leases)
        for account in accounts:
            args += split(account.budget.cap)
        reply = await self.link.run(_RESERVE, self._keys(accounts), args)
        assert isinstance(reply, list)
        balances = []
        for i, account in enumerate(accounts):
            sh, sl, rh, rl, flag = (int(v) for v in reply[1 + 5 * i : 6 + 5 * i])
            balances.append(Balance(account, sh * MICRO + sl, rh * MICRO + rl, bool(flag)))
        if reply[0] == -1:
            raise Missing([b.account for b in balances if b.refused])
        return balances

    async def reserve(self, accounts: Sequence[Account], amount: int) -> list[Balance]:
        """One script: check every account, reserve on all or none (see SpendBackend.reserve)."""
        balances = await self._run(accounts, amount, "r")
        if amount and not any(b.refused for b in balances):
            self._holding += 1
            self._renewer.ensure()
        return balances

    async def _renew(self) -> None:
        """Keep this replica's lease alive while it holds reservations (every third of a lease)."""
        while self._holding > 0:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                await self.link.run(_RENEW, [self.leases + self.holder], [self.lease_ms])
            except BackendDown as exc:
                logger.warning("budgets: could not renew this replica's reservations: %s", exc)

    async def balances(self, accounts: Sequence[Account]) -> list[Balance]:
        """One script, reading only (see SpendBackend.balances)."""
        return await self._run(accounts, 0, "p")

    async def settle(self, accounts: Sequence[Account], reserved: int, spent: int) -> list[Crossed]:
        """One script: reservation back, spend on, thresholds reached (see SpendBackend.settle)."""
        if reserved:
            self._holding = max(0, self._holding - 1)
        args: list[str | int] = [*split(reserved), *split(spent), self.holder]
        for account in accounts:
            amounts = account.budget.alert_amounts()
            args.append(len(amounts))
            for percent, amount in amounts:
                args += [percent, *split(amount)]
        reply = await self.link.run(_SETTLE, self._keys(accounts), args)
        assert isinstance(reply, list)
        return [
            (accounts[int(reply[j]) - 1], int(reply[j + 1]), int(reply[j + 2]) * MICRO + int(reply[j + 3]))
            for j in range(0, len(reply), 4)
        ]

    async def seed(self, accounts: Sequence[Account], spent: Sequence[int]) -> None:
        """One script: create the accounts Redis lacks (see SpendBackend.seed)."""
        args: list[str | int] = []
        for account, amount in zip(accounts, spent, strict=True):
            expiry = (account.end + KEPT_AFTER_END) * 1000 if account.end else 0
            reached = ",".join(str(p) for p in account.budget.reached(amount))
            args += [*split(amount), expiry, reached]
        await self.link.run(_SEED, self._keys(accounts), args)

    async def known(self) -> list[str]:
        """The keys of every account in Redis (SCAN: for the admin listing, not on calls' paths)."""
        return await self.link.keys(self.prefix)

    async def aclose(self) -> None:
        """Stop renewing; close the connections."""
        await self._renewer.stop()
        await self.link.aclose()
