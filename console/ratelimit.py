"""Token buckets kept in the cache: one per API key, shared by HTTP requests and
WebSocket starts and messages, across every server process on the same Redis.

A bucket holds up to `burst` tokens and refills at `per_minute / 60` tokens a second;
each request or frame takes one. It is stored as GCRA's single "theoretical arrival
time" (the moment the bucket will be full again), so one atomic step decides: a Lua
script on Redis (its own clock, so servers with skewed clocks agree), a lock around
the in-process cache otherwise (which is per process anyway).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

# KEYS[1] = the bucket; ARGV = interval (ms per token), burst. Returns ms to wait, 0 if taken.
_GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local allowed_at = tat + interval - burst * interval
if now < allowed_at then return allowed_at - now end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now + 1000)
return 0
"""

_local_lock = threading.Lock()


@dataclass(frozen=True)
class Bucket:
    per_minute: int
    burst: int

    @property
    def interval_ms(self) -> int:
        return max(1, math.ceil(60_000 / self.per_minute))


def take(name: str, bucket: Bucket) -> float:
    """Take one token from bucket `name`: 0.0 when taken, else the seconds until one is."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        key = backend.make_and_validate_key(f"bucket:{name}")
        client = backend._cache.get_client(key, write=True)
        wait_ms = int(client.eval(_GCRA_LUA, 1, key, bucket.interval_ms, bucket.burst))
        return wait_ms / 1000
    return _take_local(f"bucket:{name}", bucket)


def _take_local(name: str, bucket: Bucket) -> float:
    cache = caches["default"]
    now = time.time() * 1000
    with _local_lock:
        tat = max(float(cache.get(name) or 0), now)
        allowed_at = tat + bucket.interval_ms - bucket.burst * bucket.interval_ms
        if now < allowed_at:
            return (allowed_at - now) / 1000
        new_tat = tat + bucket.interval_ms
        cache.set(name, new_tat, timeout=math.ceil((new_tat - now) / 1000) + 1)
    return 0.0
