"""Sign-in brute-force protection: failures counted per (email, IP) and per IP.

SIGNIN_MAX_FAILURES failures for one email from one IP lock that pair out for
SIGNIN_LOCKOUT_SECONDS, even with the right password; the same user from another
address, and other users behind the same address (an office, a NAT), still sign in.
SIGNIN_MAX_FAILURES_PER_IP failures from one IP across emails lock the IP out (one
address guessing many accounts). The IP comes from console/client_ip.py. Emails are
hashed into cache keys so no address lands in Redis in clear.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _counters(username: str, ip: str | None) -> list[tuple[str, int]]:
    """(cache key, failures allowed) for each counter this attempt adds to."""
    email = username.strip().lower()
    counters = [("signin:pair:" + _hash(f"{email}\n{ip or '-'}"), settings.SIGNIN_MAX_FAILURES)]
    if ip:
        counters.append(("signin:ip:" + ip, settings.SIGNIN_MAX_FAILURES_PER_IP))
    return counters


def is_locked(username: str, ip: str | None) -> bool:
    return any(cache.get(key + ":locked") for key, _ in _counters(username, ip))


def record_failure(username: str, ip: str | None) -> bool:
    """Count a failed attempt; True when this failure locks the pair or the IP."""
    locked_now = False
    window = settings.SIGNIN_LOCKOUT_SECONDS
    for key, allowed in _counters(username, ip):
        if cache.add(key, 1, timeout=window):
            count = 1
        else:
            try:
                count = cache.incr(key)
            except ValueError:  # expired between add() and incr()
                cache.set(key, 1, timeout=window)
                count = 1
        if count >= allowed and cache.add(key + ":locked", 1, timeout=window):
            locked_now = True
    return locked_now


def clear_failures(username: str, ip: str | None) -> None:
    # Only the pair's count: a success must not wipe an IP's record of guessing others.
    cache.delete(_counters(username, ip)[0][0])
