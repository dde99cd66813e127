"""Per-token ingest quotas: a rate limit and a limit on how many new series a token creates.

Both keep their counters in Django's cache (``CACHES["default"]``). With
``TELLTALE_CACHE_URL`` pointing at Redis, every gunicorn worker and every machine serving
ingest shares one bucket per token, so the limit is the limit whatever the load balancer
does; the embedded profile's single process uses process memory and needs no service.
An in-process bucket would have been simpler and lock-free, but with N workers a token
would get N times its rate, depending on where its requests happen to land.

Rate: a token bucket in its GCRA form. The cache holds one integer per token, the
"theoretical arrival time" in microseconds; each sample or log line (plus one per request)
pushes it forward by ``1 / rate`` seconds, and a request is refused while it lies more
than ``burst / rate`` seconds ahead of now. Charging is one atomic ``incr`` (atomic in
Redis and in the local-memory cache), so concurrent requests of one token never lose each
other's charges; only the reset of an idle bucket is a plain ``set``, which at worst
forgets charges made in the same instant by a token that was under its rate anyway. A
request is admitted or refused before its body is read and charged once it is decoded,
so an admitted request is stored whole (one request may overdraw the bucket; the next
ones wait) and a refused one stores nothing.

New series: a counter per token and fixed window. Series the store already has are never
counted and never refused, so a token at its limit keeps sending what it sent before;
only series it has never sent are refused, with a rejection that names the limit.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from ingest.admission import fresh_series
from ingest.remote_write import short
from ingest.types import MetricBatch, Rejection, SeriesSamples
from webapp.core.tokens import AuthenticatedToken

_RATE_KEY = "telltale:ingest:rate:{}"
_SERIES_KEY = "telltale:ingest:new-series:{}:{}"
_RATE_KEY_TTL = 24 * 3600
_US = 1_000_000
_EXISTS_CHUNK = 5_000  # ids per query: SQLite allows 32 766 parameters


@dataclass(frozen=True, slots=True)
class RateLimit:
    rate: int  # items per second; 0 = unlimited
    burst: int  # items

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0


class RateLimited(Exception):
    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


def rate_limit_for(token: AuthenticatedToken) -> RateLimit:
    default_rate = settings.TELLTALE_INGEST_RATE_LIMIT
    rate = default_rate if token.rate_limit is None else token.rate_limit
    burst = settings.TELLTALE_INGEST_RATE_BURST
    if token.rate_limit is not None and default_rate and burst:
        # An override scales the burst with it: the same number of seconds of traffic.
        burst = math.ceil(burst * rate / default_rate)
    elif not burst or not default_rate:
        burst = 10 * rate  # ten seconds' worth
    return RateLimit(rate=rate, burst=max(burst, 1))


def _rate_key(token: AuthenticatedToken) -> str:
    return _RATE_KEY.format(token.quota_key or token.id)


def check_rate(token: AuthenticatedToken, now_us: int | None = None) -> None:
    """Raise RateLimited while the token's bucket is overdrawn; otherwise charge the request."""
    limit = rate_limit_for(token)
    if limit.unlimited:
        return
    now_us = time.time_ns() // 1000 if now_us is None else now_us
    tat = cache.get(_rate_key(token))
    ahead = (tat - now_us) if isinstance(tat, int) else 0
    allowance = limit.burst * _US // limit.rate
    if ahead > allowance:
        wait = math.ceil((ahead - allowance) / _US)
        raise RateLimited(
            f"token {token.name!r} is over its rate limit of {limit.rate} samples or log lines "
            f"per second (burst {limit.burst}); retry after {wait} s",
            retry_after=max(wait, 1),
        )
    charge(token, 1, now_us=now_us)


def charge(token: AuthenticatedToken, items: int, now_us: int | None = None) -> None:
    """Take ``items`` from the token's bucket (after decoding, when the cost is known)."""
    limit = rate_limit_for(token)
    if limit.unlimited or items <= 0:
        return
    now_us = time.time_ns() // 1000 if now_us is None else now_us
    cost = math.ceil(items * _US / limit.rate)
    key = _rate_key(token)
    if cache.add(key, now_us + cost, timeout=_RATE_KEY_TTL):
        return
    try:
        tat = cache.incr(key, cost)
    except ValueError:  # expired between add and incr
        cache.set(key, now_us + cost, timeout=_RATE_KEY_TTL)
        return
    if tat - cost < now_us:
        # The bucket had been full for a while: idle time does not pile up beyond the burst.
        cache.set(key, now_us + cost, timeout=_RATE_KEY_TTL)


# --- new series ----------------------------------------------------------------------------
def new_series_limit_for(token: AuthenticatedToken) -> int:
    limit = token.max_new_series
    return settings.TELLTALE_INGEST_MAX_NEW_SERIES if limit is None else limit


def unknown_series(batch: MetricBatch, fresh: list[SeriesSamples] | None = None) -> list[int]:
    """Indices of ``batch.series`` that the store does not have yet.

    ``fresh``: the series this process has not stored before (admission.fresh_series), when
    the caller has them already; only those can be new to the store.
    """
    from webapp.telemetry import identity
    from webapp.telemetry.models import Series

    if fresh is None:
        fresh = fresh_series(batch)
    if not fresh:
        return []  # the steady state: every series was seen before by this process
    wanted = {id(s) for s in fresh}
    candidates: dict[int, int] = {}  # series id -> first index
    for index, series in enumerate(batch.series):
        if id(series) in wanted:
            candidates.setdefault(identity.series_id(series.labels), index)
    ids = list(candidates)
    existing: set[int] = set()
    for start in range(0, len(ids), _EXISTS_CHUNK):
        chunk = ids[start : start + _EXISTS_CHUNK]
        existing.update(Series.objects.filter(id__in=chunk).values_list("id", flat=True))
    return sorted(index for sid, index in candidates.items() if sid not in existing)


def enforce_new_series_limit(
    token: AuthenticatedToken,
    batch: MetricBatch,
    now: float | None = None,
    fresh: list[SeriesSamples] | None = None,
) -> int:
    """Refuse the series of ``batch`` that would take the token past its new-series limit.

    Refused series leave the batch and become one Rejection naming the limit; series the
    store already has always stay. Returns the number of series refused.
    """
    limit = new_series_limit_for(token)
    if limit <= 0 or not batch.series:
        return 0
    new = unknown_series(batch, fresh)
    if not new:
        return 0
    window = settings.TELLTALE_INGEST_NEW_SERIES_WINDOW_SECONDS
    now = time.time() if now is None else now
    key = _SERIES_KEY.format(token.quota_key or token.id, int(now // window))
    cache.add(key, 0, timeout=window + 60)
    try:
        used = cache.incr(key, len(new))
    except ValueError:
        cache.set(key, len(new), timeout=window + 60)
        used = len(new)
    over = used - limit
    if over <= 0:
        return 0
    refused = new[-min(over, len(new)) :]
    with contextlib.suppress(ValueError):  # expired meanwhile: nothing to give back
        cache.decr(key, len(refused))  # refused series do not use up the quota
    refused_set = set(refused)
    dropped = [batch.series[i] for i in refused]
    batch.series = [s for i, s in enumerate(batch.series) if i not in refused_set]
    first = ",".join(f"{k}={v}" for k, v in dropped[0].labels)
    # First, so that a long list of other problems cannot push it out of the answer.
    batch.rejected.insert(
        0,
        Rejection(
            "timeseries",
            f"{len(dropped)} new series refused: token {token.name!r} reached its limit of "
            f"{limit} new series per {window} s (TELLTALE_INGEST_MAX_NEW_SERIES); series it "
            f"has sent before are still accepted (first refused: {{{short(first, 120)}}})",
            sum(len(s.timestamps_ms) for s in dropped),
        ),
    )
    return len(dropped)
