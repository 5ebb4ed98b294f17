"""Per fleet: every tenant's bucket in Redis, one atomic Lua step per round trip.

The script is `rates.gcra` in Lua: read the tenant's arrival time, decide, write it back, all
inside Redis, so two hosts deciding at once can never both spend the same payloads (no
read-then-write race). It runs on the Redis server's clock (`TIME`), not the caller's: the
processes of a fleet sit on hosts whose clocks differ by NTP's tens of milliseconds (more after
a VM pause), and a bucket filled on one clock and drained on another gains or loses that skew
times the rate. One clock, the server's, is the one every caller sees.

A round trip asks for a *block*: at least what this collection needs, and up to `block`
payloads if the bucket holds them, which the caller then spends without asking again
(`rates.fleet`). This module makes round trips and knows nothing of blocks' bookkeeping,
failures or fallbacks; each call is bounded by the client's socket timeouts and raises
`redis.RedisError` (or `OSError`) when Redis does not answer in time.
"""

from __future__ import annotations

from typing import NamedTuple

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from rates.limiter import slot_name

PREFIX = "mailroom:rate:"

# KEYS[1]: the tenant's key. ARGV: rate, burst, need, block, op ("take" or "give").
# take: when the bucket holds `need`, take at least `need` and up to `block` of what it holds:
#   {granted, 0, level_millis}; else nothing taken: {0, wait_micros, level_millis}.
# give: put `need` back: {0, 0, level_millis}. Numbers go back as integers (Redis truncates
# Lua's), the arrival time is kept as text with microseconds (Lua's tostring keeps 14 digits).
SCRIPT = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local need = tonumber(ARGV[3])
local block = tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local level = burst - (tat - now) * rate
local granted = 0
if ARGV[5] == 'give' then
  tat = math.max(now, tat - need / rate)
elseif level + 1e-9 < need then
  return {0, math.ceil((need - level) / rate * 1000000), math.floor(level * 1000)}
else
  granted = math.max(need, math.min(block, math.floor(level + 1e-9)))
  tat = tat + granted / rate
end
local ttl = math.ceil((tat - now) * 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.6f', tat), 'PX', ttl)
return {granted, 0, math.floor((burst - (tat - now) * rate) * 1000)}
"""


class Grant(NamedTuple):
    """One round trip's answer."""

    granted: int  # payloads now the caller's to spend (0: refused)
    wait: float  # refused: seconds until the bucket holds what was needed
    level: float  # payloads left in the fleet's bucket after this step


def connect(url: str, timeout: float) -> redis.Redis:
    """A client whose every call gives up after `timeout` seconds, connecting included, and
    never retries by itself (redis-py would retry 3-10 times with backoff by default): how
    often to try again is the caller's decision, not the client's."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_error=[],
        health_check_interval=0,
        socket_keepalive=True,
    )


class RedisBuckets:
    """The fleet's buckets for one rate and burst. Safe from any thread (the client's pool)."""

    def __init__(self, client: redis.Redis, rate: float, burst: int, prefix: str = PREFIX) -> None:
        self.rate = rate
        self.burst = burst
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(SCRIPT)

    def ping(self) -> None:
        """Does Redis answer (within the client's timeout)? Raises the client's error if not."""
        self._client.ping()

    def take(self, tenant: str | None, need: int, block: int) -> Grant:
        """Take `need` payloads (and up to `block`, when the bucket holds them), or none."""
        granted, wait_micros, level_millis = self._run(tenant, need, block, "take")
        return Grant(int(granted), wait_micros / 1e6, level_millis / 1000)

    def give(self, tenant: str | None, payloads: int) -> None:
        """Put back payloads taken earlier and not spent."""
        self._run(tenant, payloads, 0, "give")

    def _run(self, tenant: str | None, need: int, block: int, op: str) -> list[int]:
        key = self._prefix + slot_name(tenant)
        return self._script(keys=[key], args=[self.rate, self.burst, need, block, op])
