"""The one upstream HTTP client of this process: an aiohttp session made lazily (daphne
sends no lifespan events), one per event loop.

aiohttp, not httpx: under 32 concurrent requests httpcore's pool spends most of the CPU
choosing a connection (DESIGN section 8). No cookie jar (a shared jar leaks one
user's cookies to another), no decompression (bodies pass through byte for byte), no
redirects followed, no proxy from the environment, no default headers added.
"""

from __future__ import annotations

import asyncio

import aiohttp

CONNECT_TIMEOUT = 10.0
# Between two reads from the upstream; SSE and long polls send something more often than this.
READ_TIMEOUT = 300.0
POOL_LIMIT = 512
# Below the typical 60 s idle timeout of in-sandbox dev servers, so we rarely reuse a dead one.
KEEPALIVE_SECONDS = 30.0

_sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}


def session() -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    current = _sessions.get(loop)
    if current is None or current.closed:
        for old_loop in [old for old in _sessions if old.is_closed()]:
            del _sessions[old_loop]
        connector = aiohttp.TCPConnector(
            limit=POOL_LIMIT,
            limit_per_host=0,
            keepalive_timeout=KEEPALIVE_SECONDS,
            enable_cleanup_closed=False,
            use_dns_cache=True,
        )
        current = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            trust_env=False,
            timeout=aiohttp.ClientTimeout(
                total=None, connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT
            ),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            raise_for_status=False,
        )
        _sessions[loop] = current
    return current


def timeout() -> aiohttp.ClientTimeout:
    # Read at call time, so an operator (or a test) can change the module's numbers.
    return aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT)


async def close() -> None:
    current = _sessions.pop(asyncio.get_running_loop(), None)
    if current is not None:
        await current.close()
