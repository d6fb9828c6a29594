"""Sign-in brute-force protection: failures counted per username and per IP in the cache.

After SIGNIN_MAX_FAILURES failures within the lockout window, that username (or IP)
is refused for SIGNIN_LOCKOUT_SECONDS, even with the right password. Usernames are
hashed into cache keys so no address lands in Redis in clear.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache


def _keys(username: str, ip: str | None) -> list[str]:
    keys = ["signin:user:" + hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]]
    if ip:
        keys.append("signin:ip:" + ip)
    return keys


def is_locked(username: str, ip: str | None) -> bool:
    return any(cache.get(key + ":locked") for key in _keys(username, ip))


def record_failure(username: str, ip: str | None) -> bool:
    """Count a failed attempt; True when this failure locks the username or the IP."""
    locked_now = False
    window = settings.SIGNIN_LOCKOUT_SECONDS
    for key in _keys(username, ip):
        if cache.add(key, 1, timeout=window):
            count = 1
        else:
            try:
                count = cache.incr(key)
            except ValueError:  # expired between add() and incr()
                cache.set(key, 1, timeout=window)
                count = 1
        if count >= settings.SIGNIN_MAX_FAILURES and cache.add(key + ":locked", 1, timeout=window):
            locked_now = True
    return locked_now


def clear_failures(username: str) -> None:
    # Only the username's count: a success must not wipe an IP's record of guessing others.
    cache.delete(_keys(username, None)[0])
