"""Bearer-token authentication for ingest and read-API clients."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

from django.utils import timezone

from webapp.core.models import IngestToken
from webapp.core.services import hash_token

_CACHE_SECONDS = 10.0  # revocation takes effect within this time
_cache: dict[str, tuple[float, AuthenticatedToken | None]] = {}
_last_used_written: dict[int, float] = {}


@dataclass(frozen=True, slots=True)
class AuthenticatedToken:
    id: int
    name: str
    scopes: frozenset[str]
    # Quota overrides (None: the settings' default, 0: unlimited) and a key for the quota
    # counters that a new token with a reused id never inherits.
    rate_limit: int | None = None
    max_new_series: int | None = None
    quota_key: str = ""


def raw_token_from_request(request) -> str | None:
    """Bearer tokens, or HTTP Basic with the token as password (as Grafana Agent sends)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer" and value.strip():
        return value.strip()
    if scheme == "basic" and value.strip():
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        _, _, password = decoded.partition(":")
        return password or None
    return None


def authenticate(raw: str | None) -> AuthenticatedToken | None:
    if not raw:
        return None
    key = hash_token(raw)
    now = time.monotonic()
    cached = _cache.get(key)
    if cached and now - cached[0] < _CACHE_SECONDS:
        return cached[1]
    row = (
        IngestToken.objects.filter(token_hash=key, revoked_at__isnull=True)
        .only("id", "name", "scopes", "rate_limit", "max_new_series")
        .first()
    )
    result = (
        AuthenticatedToken(
            row.id,
            row.name,
            frozenset(row.scopes),
            rate_limit=row.rate_limit,
            max_new_series=row.max_new_series,
            quota_key=key[:16],
        )
        if row
        else None
    )
    if len(_cache) > 10_000:
        _cache.clear()
    _cache[key] = (now, result)
    if result and now - _last_used_written.get(result.id, 0.0) > 60:
        _last_used_written[result.id] = now
        IngestToken.objects.filter(pk=result.id).update(last_used_at=timezone.now())
    return result


def forget_cached_tokens() -> None:
    _cache.clear()
    _last_used_written.clear()
