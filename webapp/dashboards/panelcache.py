"""A short-lived, shared cache for what dashboard pages compute from telemetry.

Why: the pages people keep open (the overview on a wall screen, a node page on auto-refresh,
a week in explore) ask the store the same questions many times a minute, and answering one
costs a few hundred milliseconds of CPU. Thirty people refreshing on a 2-core box then queue
for seconds. Here a computed panel is reused for ``TELLTALE_PANEL_CACHE_SECONDS`` (default
10 s, the shortest auto-refresh interval; 0 turns caching off) by everyone asking the same
question, as a query front-end in front of Prometheus does.

- Relative ranges ("last hour") are keyed by their preset, not by "now", so people
  opening the same preset share one answer and its age bounds how far "now" has moved;
  absolute ranges are keyed by value.
- Once a panel is older than the period, one request recomputes it (holding a short lock)
  while the others keep getting the previous answer, so a popular page never stalls
  everyone at once; a panel nobody has computed yet is computed by one request while the
  others wait for it (if it fails, the next one takes over; after ``WAIT_SECONDS`` they
  compute it themselves).
- What people change (annotations, anomaly labels) bumps a generation that is part of the
  keys of the panels showing it, so their own change shows on the next load.

The cache is Django's ``panels`` alias (pages' ``{% panel %}`` blocks use it too): Redis when
``TELLTALE_CACHE_URL`` is set, otherwise files under var/, so every web process of the host
sees the same panels and the same invalidations.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from django.conf import settings
from django.core.cache import caches
from django.db import transaction

T = TypeVar("T")

WAIT_SECONDS = 30.0
_POLL_SECONDS = 0.05
_LOCK_SECONDS = 60
# Entries outlive their freshness so a stale answer can be served while one is recomputed.
_KEEP_FACTOR = 6


def _cache():
    return caches["panels"]


def period_seconds() -> int:
    return int(getattr(settings, "TELLTALE_PANEL_CACHE_SECONDS", 10))


def generation(topic: str) -> int:
    """A number that changes whenever ``bump(topic)`` is called."""
    if period_seconds() <= 0:
        return 0
    return _cache().get(f"panelgen:{topic}", 0)


def bump(topic: str) -> None:
    """Something shown on pages changed: panels keyed on ``topic`` are computed again.
    Bumped now and again when the surrounding transaction commits, so a page rendered
    between the two (still seeing the old rows) is not the one kept."""
    key = f"panelgen:{topic}"
    _cache().set(key, time.time_ns(), None)
    transaction.on_commit(lambda: _cache().set(key, time.time_ns(), None))


def range_key(tr) -> tuple:
    """The part of a key that stands for a page's time range. Not "now" for a relative
    range: a key that changed every period would find nothing stale to serve while one
    request recomputes, and everyone would wait for it (5.5 s p95 under mixed load)."""
    if tr.preset:
        return ("rel", tr.preset)
    return ("abs", tr.start_ms, tr.end_ms)


def key_for(name: str, parts: Iterable) -> str:
    digest = hashlib.blake2b(repr(tuple(parts)).encode(), digest_size=16).hexdigest()
    return f"panel:{name}:{digest}"


def get_or_build(name: str, parts: Iterable, build: Callable[[], T], topics=()) -> T:
    """``build()``'s value for this name and key parts, computed at most once per period."""
    period = period_seconds()
    if period <= 0:
        return build()
    key = key_for(name, (*parts, *(generation(t) for t in topics)))
    entry = _cache().get(key)
    now = time.time()
    if entry is not None:
        fresh_until, value = entry
        if now < fresh_until or not _cache().add(f"{key}:lock", 1, _LOCK_SECONDS):
            return value
        return _build_and_store(key, build, period)
    deadline = now + WAIT_SECONDS
    while True:
        # Whoever holds the lock computes; if it fails, the lock is released and the next
        # waiter takes over, so a failing panel never leaves everyone waiting out the limit.
        if _cache().add(f"{key}:lock", 1, _LOCK_SECONDS):
            return _build_and_store(key, build, period)
        time.sleep(_POLL_SECONDS)
        entry = _cache().get(key)
        if entry is not None:
            return entry[1]
        if time.time() > deadline:  # the holder died without releasing its lock
            return build()


def _build_and_store(key: str, build: Callable[[], T], period: int) -> T:
    try:
        value = build()
        _cache().set(key, (time.time() + period, value), period * _KEEP_FACTOR)
        return value
    finally:
        _cache().delete(f"{key}:lock")


def page_context(request, tr=None, *extra, topics=()) -> dict:
    """``panel_key`` for a page's ``{% panel %}`` blocks (templatetags/telltale.py): the key
    stands for everything such a block may show — the path and query (filters, paging),
    the viewer's role (role-dependent controls), the time range's cache period, what
    ``extra`` the view adds, and the generations of ``topics``. Blocks hold no CSRF token
    and nothing else that is personal."""
    from webapp.core.roles import role_of

    query = sorted(
        (k, v) for k, values in request.GET.lists() for v in values if k not in ("from", "to")
    )
    parts = (
        request.path,
        query,
        role_of(request.user),
        range_key(tr) if tr is not None else None,
        extra,
        tuple(generation(t) for t in topics),
    )
    return {"panel_key": key_for("page", parts)}
