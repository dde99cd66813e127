"""Failed-login counting in Django's cache: per user name and per client address.

After ``max_failures`` failures inside ``window`` seconds, the name (or the address) is
locked for ``lockout`` seconds and every attempt is refused before the password is even
checked, so a locked account cannot be guessed at all. The counters live in the cache
(``CACHES["default"]``), so all web processes share them when that cache is shared.

Settings (all optional): ``TELLTALE_LOGIN_MAX_FAILURES`` (per name, default 5),
``TELLTALE_LOGIN_MAX_FAILURES_PER_IP`` (default 30: several people behind one NAT may
mistype), ``TELLTALE_LOGIN_WINDOW_SECONDS`` and ``TELLTALE_LOGIN_LOCKOUT_SECONDS`` (both
900), ``TELLTALE_TRUSTED_PROXY_HOPS``: how many proxies in front of gunicorn append to
X-Forwarded-For. Default 0 (the client is REMOTE_ADDR), or 1 when TRUST_X_FORWARDED_PROTO
says a TLS proxy is in front: otherwise every client would share the proxy's address and
one address's lockout would lock everybody out.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

USER, IP = "user", "ip"


@dataclass(frozen=True, slots=True)
class Limits:
    max_failures: int
    max_failures_per_ip: int
    window: int
    lockout: int


def limits() -> Limits:
    return Limits(
        max_failures=getattr(settings, "TELLTALE_LOGIN_MAX_FAILURES", 5),
        max_failures_per_ip=getattr(settings, "TELLTALE_LOGIN_MAX_FAILURES_PER_IP", 30),
        window=getattr(settings, "TELLTALE_LOGIN_WINDOW_SECONDS", 900),
        lockout=getattr(settings, "TELLTALE_LOGIN_LOCKOUT_SECONDS", 900),
    )


def client_ip(request) -> str:
    """REMOTE_ADDR, or the address the last trusted proxy saw: the client can prepend
    anything to X-Forwarded-For, so only entries added by our own proxies count."""
    default = 1 if getattr(settings, "SECURE_PROXY_SSL_HEADER", None) else 0
    hops = getattr(settings, "TELLTALE_TRUSTED_PROXY_HOPS", default)
    remote = request.META.get("REMOTE_ADDR", "") or "unknown"
    if hops <= 0:
        return remote
    chain = [p.strip() for p in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    chain = [p for p in chain if p]
    return chain[-hops] if len(chain) >= hops else remote


def _key(kind: str, scope: str, value: str) -> str:
    # Hashed: user names may hold characters that memcached keys cannot.
    digest = hashlib.sha256(value.strip().lower().encode()).hexdigest()[:32]
    return f"telltale:login:{kind}:{scope}:{digest}"


def locked_for(username: str, ip: str) -> tuple[str, int] | None:
    """(scope, seconds left) when the name or the address is locked, else None."""
    now = time.time()
    for scope, value in ((USER, username), (IP, ip)):
        until = cache.get(_key("lock", scope, value))
        if until is not None and until > now:
            return scope, max(1, math.ceil(until - now))
    return None


def count_failure(username: str, ip: str) -> list[tuple[str, int]]:
    """Count one failure; return the scopes that this failure locked, with their counts."""
    current = limits()
    newly_locked = []
    for scope, value, most in (
        (USER, username, current.max_failures),
        (IP, ip, current.max_failures_per_ip),
    ):
        key = _key("fail", scope, value)
        cache.add(key, 0, timeout=current.window)  # the window starts at the first failure
        try:
            failures = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=current.window)
            failures = 1
        if failures >= most:
            cache.set(_key("lock", scope, value), time.time() + current.lockout, current.lockout)
            cache.delete_many([key, _key("refused", scope, value)])
            newly_locked.append((scope, failures))
    return newly_locked


def first_refusal(scope: str, value: str) -> bool:
    """True once per lock period, so a flood of refused attempts writes one audit row."""
    return cache.add(_key("refused", scope, value), 1, timeout=limits().lockout)


def clear_user(username: str) -> None:
    """A successful login forgets the name's failures. The address keeps its count, so
    one valid account cannot be used to reset the budget for guessing others."""
    cache.delete_many([_key(kind, USER, username) for kind in ("fail", "lock", "refused")])
