"""Readiness checks of the two things Telltale cannot work without."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import connections


def check_database() -> str | None:
    """None when the database answers, else the error in one line."""
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "not ready"
        return f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
    return None


def check_broker() -> str | None:
    url = settings.CELERY_BROKER_URL
    if not url:
        return None  # tasks run in-process: nothing to reach
    if url.startswith("filesystem://"):
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        return None if folder.is_dir() else f"queue folder {folder} is missing"
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
    return None


def queue_depth() -> int | None:
    url = settings.CELERY_BROKER_URL
    if not url:
        return 0
    if url.startswith("filesystem://"):
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        return sum(1 for _ in folder.glob("*.msg")) if folder.is_dir() else None
    if url.startswith(("redis://", "rediss://")):
        import redis

        try:
            client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
            return int(client.llen("celery"))
        except Exception:
            return None
    return None
